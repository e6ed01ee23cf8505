// The plans of the lesion studies (E1-E4, E9, docs/experiments.md): single deletions, k random
// deletions, k random swaps of same-shape blocks, k random block replacements ("duplicates") and
// plans read from a file. Torch-free; the same seed gives the same sets on every platform.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/block_info.h"
#include "core/plan.h"

namespace unravel::lesion {

// One lesion: an edit of the intact network, and that edit applied to the network's default plan
// (which carries test-time residual scales, e.g. of stochastic depth).
struct Lesion {
  std::string sweep;  ///< "single", "delete-random", "swap-random", "duplicate-random", "plans"
  std::string kind;   ///< "delete", "swap", "duplicate", "custom"
  int k = 0;          ///< blocks deleted, pairs swapped, positions replaced; custom: steps changed
  Plan edit;          ///< the edit on Plan::intact(n); edit.str() is the "plan" column
  Plan plan;          ///< rebase(edit, default plan), validated: what is evaluated
  std::vector<int> blocks;                 ///< sorted: deleted / swapped / replaced blocks
  std::vector<std::pair<int, int>> pairs;  ///< swap: (a, b); duplicate: (position, block run there)
  double kendall_tau = 1.0;                ///< of plan.order() against the identity (E4)
  int line = 0;                            ///< plans file: 1-based line number
};

// The blocks (1-based indices) grouped by (in_shape, out_shape): only blocks of one group may take
// each other's place. Each group ascending, the groups ordered by their smallest index.
std::vector<std::vector<int>> shape_groups(const std::vector<BlockInfo>& blocks);
// Disjoint pairs of same-shape blocks (sum over shape groups of size / 2): the most swaps one
// order can make, so the largest k of random_swaps.
int disjoint_swap_pairs(const std::vector<BlockInfo>& blocks);

// "K" or "K1:K2" (inclusive). UserError naming `flag` unless 1 <= K1 <= K2.
std::pair<int, int> parse_k_range(const std::string& text, const std::string& flag);

// The edit applied to `base`: each step of `edit` keeps its block, deletion and gate, and its
// residual scale is multiplied by the scale `base` gives that block (1 when `base` is intact).
// Used for the generated sweeps, whose edits carry no scales; plan files are applied instead with
// Plan::parse(line, base), so that their text means what `unravel eval --plan` means.
Plan rebase(const Plan& edit, const Plan& base);

// E1/E2/E9: every block deleted alone, in index order (k = 1).
std::vector<Lesion> single_deletions(const Plan& base, const std::vector<BlockInfo>& blocks);

// E3: for each k in [k_lo, k_hi], `samples` sets of k distinct blocks drawn uniformly (samples are
// independent; a set can repeat, and identical plans are evaluated once by the prefix engine).
// UserError if k_hi exceeds the number of blocks.
std::vector<Lesion> random_deletions(const Plan& base, const std::vector<BlockInfo>& blocks,
                                     int k_lo, int k_hi, int samples, uint64_t seed);

// E4: for each k, `samples` orders made by k swaps of disjoint pairs of blocks with the same input
// and output shape (pairs drawn uniformly among the eligible pairs of still unused blocks), with
// the Kendall tau of the order. UserError if k exceeds the disjoint pairs available.
std::vector<Lesion> random_swaps(const Plan& base, const std::vector<BlockInfo>& blocks, int k_lo,
                                 int k_hi, int samples, uint64_t seed);

// Block duplication by replacement (the authors' lesion code could also duplicate blocks): k
// distinct positions each run a copy of another block of the same input and output shape, which
// still runs at its own position, so that block runs twice and the replaced one not at all; the
// depth is unchanged. Targets are drawn uniformly one by one among the positions whose shape
// group keeps at least one untouched block, sources uniformly among the untouched blocks of the
// group. UserError if k exceeds sum over shape groups of (size - 1). Running a block twice in a
// row (depth + 1) is `duplicate=B` in --plans.
std::vector<Lesion> random_duplicates(const Plan& base, const std::vector<BlockInfo>& blocks,
                                      int k_lo, int k_hi, int samples, uint64_t seed);

// Plans, one a line, in the text form of Plan::parse (--delete / --order syntax: "delete=3,17",
// "order=1-3,5,4,6-20", "swap=4:5", ...); '#' starts a comment; blank lines are skipped.
// Bad lines throw UserError "NAME:LINE: ..."; a missing file or one without plans names the file.
// Each line is applied to `base` (the default plan) as `unravel eval --plan` applies it: the
// trained scales stay, a scale clause sets a scale, and a printed plan reads back to itself.
std::vector<Lesion> plans_from_text(const std::string& text, const std::string& name,
                                    const Plan& base, const std::vector<BlockInfo>& blocks);
std::vector<Lesion> plans_from_file(const std::string& path, const Plan& base,
                                    const std::vector<BlockInfo>& blocks);

}  // namespace unravel::lesion
