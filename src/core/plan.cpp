// Execution plans: construction, edits, printing the text form and validation against a block
// table (reading the text form is in plan_parse.cpp).
#include "core/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>

#include <fmt/format.h>

#include "core/errors.h"
#include "core/util.h"

namespace unravel {

std::string shape_string(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

const char* gate_name(Gate g) {
  switch (g) {
    case Gate::Both: return "both";
    case Gate::ResidualOnly: return "residual";
    case Gate::ShortcutOnly: return "shortcut";
    case Gate::None: return "none";
  }
  return "?";
}

namespace {

std::string format_double(double v) {
  std::string s = fmt::format("{:.17g}", v);
  // shortest text that reads back to the same double
  for (int p = 1; p <= 17; ++p) {
    std::string t = fmt::format("{:.{}g}", v, p);
    if (std::strtod(t.c_str(), nullptr) == v) return t;
  }
  return s;
}

}  // namespace

std::string format_index_list(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ",";
    if (j >= i + 2) out += fmt::format("{}-{}", v[i], v[j]);
    else if (j == i + 1) out += fmt::format("{},{}", v[i], v[j]);
    else out += std::to_string(v[i]);
    i = j + 1;
  }
  return out;
}

Plan Plan::intact(int n_blocks) {
  if (n_blocks < 0) throw UserError(fmt::format("a plan needs a non-negative block count, got {}", n_blocks));
  Plan p;
  p.n_blocks_ = n_blocks;
  p.steps_.resize(n_blocks);
  for (int i = 0; i < n_blocks; ++i) p.steps_[i].block = i + 1;
  return p;
}

int Plan::check_index(int block, const char* what) const {
  if (block < 1 || block > n_blocks_)
    throw UserError(fmt::format("{}: block {} is out of range (the network has blocks 1-{})", what,
                                block, n_blocks_));
  return block;
}

Plan& Plan::remove(const std::vector<int>& blocks) {
  for (int b : blocks) {
    check_index(b, "delete");
    for (auto& s : steps_)
      if (s.block == b) s.deleted = true;
  }
  return *this;
}

Plan& Plan::swap(int a, int b) {
  check_index(a, "swap");
  check_index(b, "swap");
  auto find = [&](int blk) {
    return std::find_if(steps_.begin(), steps_.end(), [&](const Step& s) { return s.block == blk; });
  };
  auto ia = find(a), ib = find(b);
  if (ia == steps_.end() || ib == steps_.end())
    throw UserError(fmt::format("swap: block {} does not run in this plan", ia == steps_.end() ? a : b));
  std::iter_swap(ia, ib);
  return *this;
}

Plan& Plan::duplicate(int block) {
  check_index(block, "duplicate");
  auto it = std::find_if(steps_.begin(), steps_.end(), [&](const Step& s) { return s.block == block; });
  if (it == steps_.end()) throw UserError(fmt::format("duplicate: block {} does not run in this plan", block));
  Step copy = *it;
  steps_.insert(it + 1, copy);
  return *this;
}

Plan& Plan::set_order(const std::vector<int>& order) {
  std::vector<Step> next;
  for (int b : order) {
    check_index(b, "order");
    auto it = std::find_if(steps_.begin(), steps_.end(), [&](const Step& s) { return s.block == b; });
    Step s;
    if (it != steps_.end()) s = *it;  // keep scale / gate / deletion of that block
    s.block = b;
    next.push_back(s);
  }
  steps_ = std::move(next);
  return *this;
}

Plan& Plan::scale(int block, double s) {
  check_index(block, "scale");
  for (auto& st : steps_)
    if (st.block == block) st.residual_scale = s;
  return *this;
}

Plan& Plan::gate(int block, Gate g) {
  check_index(block, "gate");
  for (auto& st : steps_)
    if (st.block == block) st.gate = g;
  return *this;
}

bool Plan::is_intact() const { return *this == intact(n_blocks_); }

std::vector<int> Plan::deleted_blocks() const {
  std::set<int> d;
  for (const auto& s : steps_)
    if (s.deleted) d.insert(s.block);
  return {d.begin(), d.end()};
}

std::vector<int> Plan::order() const {
  std::vector<int> o;
  for (const auto& s : steps_) o.push_back(s.block);
  return o;
}

std::string Plan::str() const {
  std::vector<std::string> clauses;
  auto ord = order();
  std::vector<int> identity(n_blocks_);
  for (int i = 0; i < n_blocks_; ++i) identity[i] = i + 1;
  if (ord != identity) clauses.push_back("order=" + format_index_list(ord));
  auto del = deleted_blocks();
  if (!del.empty()) clauses.push_back("delete=" + format_index_list(del));
  std::vector<std::string> scales, gates;
  std::set<int> seen_scale, seen_gate;
  for (const auto& s : steps_) {
    if (s.residual_scale != 1.0 && seen_scale.insert(s.block).second)
      scales.push_back(fmt::format("{}:{}", s.block, format_double(s.residual_scale)));
    if (s.gate != Gate::Both && seen_gate.insert(s.block).second)
      gates.push_back(fmt::format("{}:{}", s.block, gate_name(s.gate)));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string o;
    for (size_t i = 0; i < v.size(); ++i) o += (i ? "," : "") + v[i];
    return o;
  };
  if (!scales.empty()) clauses.push_back("scale=" + join(scales));
  if (!gates.empty()) clauses.push_back("gate=" + join(gates));
  if (clauses.empty()) return "intact";
  std::string out;
  for (size_t i = 0; i < clauses.size(); ++i) out += (i ? " " : "") + clauses[i];
  return out;
}

std::size_t Plan::hash() const { return std::hash<std::string>{}(std::to_string(n_blocks_) + "|" + str()); }

void Plan::validate(const std::vector<BlockInfo>& blocks) const {
  if (static_cast<int>(blocks.size()) != n_blocks_)
    throw UserError(fmt::format("plan '{}' is for {} blocks but the network has {}", elide_middle(str()), n_blocks_,
                                blocks.size()));
  if (blocks.empty()) return;
  Shape cur = blocks.front().in_shape;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    if (s.block < 1 || s.block > n_blocks_)
      throw UserError(fmt::format("plan '{}': block {} is out of range (the network has blocks 1-{})",
                                  elide_middle(str()), s.block, n_blocks_));
    const BlockInfo& b = blocks[s.block - 1];
    if (b.in_shape != cur)
      throw UserError(fmt::format(
          "plan '{}': block {} expects input {} but step {} gives it {} (only blocks of the same shape can be swapped or repeated)",
          elide_middle(str()), s.block, shape_string(b.in_shape), i + 1, shape_string(cur)));
    cur = b.out_shape;
  }
  if (cur != blocks.back().out_shape)
    throw UserError(fmt::format("plan '{}': the last step outputs {} but the head expects {}", elide_middle(str()),
                                shape_string(cur), shape_string(blocks.back().out_shape)));
}

double kendall_tau(const std::vector<int>& order) {
  // tau-a between the positions in `order` and the identity ranking, over distinct blocks
  // (the first occurrence of a repeated block counts).
  std::vector<int> seq;
  std::set<int> seen;
  for (int b : order)
    if (seen.insert(b).second) seq.push_back(b);
  const size_t m = seq.size();
  if (m < 2) return 1.0;
  long long concordant = 0, discordant = 0;
  for (size_t i = 0; i < m; ++i)
    for (size_t j = i + 1; j < m; ++j) (seq[i] < seq[j] ? concordant : discordant)++;
  return static_cast<double>(concordant - discordant) / static_cast<double>(m * (m - 1) / 2);
}

}  // namespace unravel
