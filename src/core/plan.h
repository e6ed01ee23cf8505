// The execution plan (docs/design.md): which blocks run, in which order, which of them are deleted
// (shortcut only), how their residual branch is scaled, and which branches carry gradient back.
// Every experiment is "the same weights under another plan". Torch-free value object.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "core/block_info.h"

namespace unravel {

// Which branches of a block pass gradient backward (the forward pass is never changed).
enum class Gate { Both, ResidualOnly, ShortcutOnly, None };

const char* gate_name(Gate g);  // "both", "residual", "shortcut", "none"

struct Step {
  int block = 0;                ///< 1-based index of the block that runs at this position
  bool deleted = false;         ///< forward runs the shortcut only: y = post(shortcut(x))
  double residual_scale = 1.0;  ///< forward multiplies the residual branch by this
  Gate gate = Gate::Both;       ///< backward routing through this step

  bool operator==(const Step& o) const {
    return block == o.block && deleted == o.deleted && residual_scale == o.residual_scale &&
           gate == o.gate;
  }
  bool operator!=(const Step& o) const { return !(*this == o); }
};

// Text form (parse and str): clauses separated by spaces, tabs, line breaks or ';', applied left
// to right.
//   intact                      the network as trained
//   order=1-3,5,4,6-20          the sequence of blocks to run (ranges a-b allowed; repeats duplicate)
//   swap=4:5,7:9                exchange the positions of blocks 4 and 5, then of 7 and 9
//   duplicate=4                 block 4 runs twice in a row
//   delete=3,17                 blocks 3 and 17 run their shortcut only
//   scale=3:0.5,4:0.25          residual branch of block 3 multiplied by 0.5, ...
//   gate=3:residual,4:shortcut  backward gradient through that branch only (or none / both)
// Limits of the text form, checked before anything is expanded: at most kMaxPlanTextBytes bytes,
// no control bytes other than tab / CR / LF (an error names the offset), every index within the
// network's blocks, every clause value non-empty, and at most max_steps(n_blocks) steps in the
// resulting plan. Parsing takes time linear in the text plus the plan. Errors quote at most ~60
// characters of the offending clause.
constexpr std::size_t kMaxPlanTextBytes = 64 * 1024;

class Plan {
 public:
  Plan() = default;
  static Plan intact(int n_blocks);
  // Throws UserError naming the text and the bad clause or index.
  static Plan parse(const std::string& text, int n_blocks);
  // The clauses applied to `base` (e.g. a trained net's default_plan() with its test-time
  // residual scales), so that "delete=3" keeps the scales of the other blocks.
  static Plan parse(const std::string& text, const Plan& base);
  // The most steps a parsed plan may hold: 4 x n_blocks, and at least 64.
  static std::size_t max_steps(int n_blocks);

  int n_blocks() const { return n_blocks_; }
  const std::vector<Step>& steps() const { return steps_; }
  std::vector<Step>& steps() { return steps_; }

  // Edits (return *this for chaining); indices are 1-based block indices.
  Plan& remove(const std::vector<int>& blocks);  // mark deleted
  Plan& swap(int a, int b);                      // exchange positions of blocks a and b
  Plan& duplicate(int block);                    // run block twice in a row
  Plan& set_order(const std::vector<int>& order);
  Plan& scale(int block, double s);
  Plan& gate(int block, Gate g);

  bool is_intact() const;
  std::vector<int> deleted_blocks() const;  // sorted, unique
  std::vector<int> order() const;           // block index per step

  // Canonical text, "intact" for the unedited plan. parse(str()) == *this.
  std::string str() const;
  std::size_t hash() const;

  // Checks indices and that shapes chain: block at step s must accept the output of step s-1,
  // and the last step must produce what the head expects. Throws UserError naming the plan.
  void validate(const std::vector<BlockInfo>& blocks) const;

  bool operator==(const Plan& o) const { return n_blocks_ == o.n_blocks_ && steps_ == o.steps_; }
  bool operator!=(const Plan& o) const { return !(*this == o); }

 private:
  int check_index(int block, const char* what) const;
  int n_blocks_ = 0;
  std::vector<Step> steps_;
};

// Bounds of an index list, checked on each number (both ends of a range) BEFORE a range is
// expanded, so that "1-1000000" costs nothing when it is refused.
struct IndexListLimits {
  int lo = -1000000;               ///< smallest index accepted
  int hi = 1000000;                ///< largest index accepted
  std::size_t max_items = 100000;  ///< most indices the expanded list may hold
};

// "3,17,20-22" -> {3,17,20,21,22}, "6-4" -> {6,5,4}; throws UserError starting with `what` on bad
// syntax, an empty list or item, an index outside the limits or too many indices.
std::vector<int> parse_index_list(const std::string& text, const std::string& what,
                                  const IndexListLimits& limits = {});
// {1,2,3,5} -> "1-3,5"
std::string format_index_list(const std::vector<int>& v);

// Kendall rank correlation between an order of blocks and the identity order (tau-a over the
// distinct blocks present, E4). 1 for the intact order, -1 for the reversed one.
double kendall_tau(const std::vector<int>& order);

}  // namespace unravel
