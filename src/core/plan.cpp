// Execution plans: construction, edits, the text form and validation against a block table.
#include "core/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/errors.h"

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

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(trim(cur));
  return out;
}

int parse_int(const std::string& s, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < -1000000 || v > 1000000)
    throw UserError(fmt::format("{}: '{}' is not an integer", what, s));
  return static_cast<int>(v);
}

double parse_double(const std::string& s, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v))
    throw UserError(fmt::format("{}: '{}' is not a number", what, s));
  return v;
}

// "3:5" -> {3, 5}
std::pair<std::string, std::string> split_pair(const std::string& s, const std::string& what) {
  auto c = s.find(':');
  if (c == std::string::npos)
    throw UserError(fmt::format("{}: '{}' should be of the form A:B", what, s));
  return {trim(s.substr(0, c)), trim(s.substr(c + 1))};
}

Gate parse_gate(const std::string& s, const std::string& what) {
  if (s == "both") return Gate::Both;
  if (s == "residual") return Gate::ResidualOnly;
  if (s == "shortcut") return Gate::ShortcutOnly;
  if (s == "none") return Gate::None;
  throw UserError(fmt::format("{}: gate '{}' is not one of both, residual, shortcut, none", what, s));
}

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

std::vector<int> parse_index_list(const std::string& text, const std::string& what) {
  std::vector<int> out;
  if (trim(text).empty()) throw UserError(fmt::format("{}: empty list of block indices", what));
  for (const auto& item : split(text, ',')) {
    if (item.empty()) throw UserError(fmt::format("{}: empty item in '{}'", what, text));
    auto dash = item.find('-', 1);
    if (dash == std::string::npos) {
      out.push_back(parse_int(item, what));
    } else {
      int a = parse_int(trim(item.substr(0, dash)), what);
      int b = parse_int(trim(item.substr(dash + 1)), what);
      if (std::abs(b - a) > 100000) throw UserError(fmt::format("{}: range '{}' is too long", what, item));
      const int step = b >= a ? 1 : -1;  // "6-1" counts down
      for (int i = a; i != b + step; i += step) out.push_back(i);
    }
  }
  return out;
}

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

Plan Plan::parse(const std::string& text, int n_blocks) { return parse(text, intact(n_blocks)); }

Plan Plan::parse(const std::string& text, const Plan& base) {
  Plan p = base;
  std::string norm = text;
  std::replace(norm.begin(), norm.end(), ';', ' ');
  std::istringstream in(norm);
  std::string clause;
  bool any = false;
  while (in >> clause) {
    any = true;
    if (clause == "intact") continue;
    auto eq = clause.find('=');
    if (eq == std::string::npos)
      throw UserError(fmt::format("plan '{}': clause '{}' should be NAME=VALUE (delete, order, swap, duplicate, scale, gate)", text, clause));
    std::string key = clause.substr(0, eq), val = clause.substr(eq + 1);
    std::string what = fmt::format("plan '{}': {}", text, key);
    if (key == "delete") {
      for (int b : parse_index_list(val, what)) p.check_index(b, what.c_str());
      p.remove(parse_index_list(val, what));
    } else if (key == "order") {
      auto order = parse_index_list(val, what);
      for (int b : order) p.check_index(b, what.c_str());
      p.set_order(order);
    } else if (key == "swap") {
      for (const auto& pr : split(val, ',')) {
        auto [a, b] = split_pair(pr, what);
        int ia = p.check_index(parse_int(a, what), what.c_str());
        int ib = p.check_index(parse_int(b, what), what.c_str());
        p.swap(ia, ib);
      }
    } else if (key == "duplicate") {
      for (int b : parse_index_list(val, what)) p.duplicate(p.check_index(b, what.c_str()));
    } else if (key == "scale") {
      for (const auto& pr : split(val, ',')) {
        auto [a, s] = split_pair(pr, what);
        p.scale(p.check_index(parse_int(a, what), what.c_str()), parse_double(s, what));
      }
    } else if (key == "gate") {
      for (const auto& pr : split(val, ',')) {
        auto [a, g] = split_pair(pr, what);
        p.gate(p.check_index(parse_int(a, what), what.c_str()), parse_gate(g, what));
      }
    } else {
      throw UserError(fmt::format("plan '{}': unknown clause '{}' (use delete, order, swap, duplicate, scale, gate)", text, key));
    }
  }
  if (!any) throw UserError("empty plan text (use 'intact' for the unedited network)");
  return p;
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
    throw UserError(fmt::format("plan '{}' is for {} blocks but the network has {}", str(), n_blocks_,
                                blocks.size()));
  if (blocks.empty()) return;
  Shape cur = blocks.front().in_shape;
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    if (s.block < 1 || s.block > n_blocks_)
      throw UserError(fmt::format("plan '{}': block {} is out of range (the network has blocks 1-{})",
                                  str(), s.block, n_blocks_));
    const BlockInfo& b = blocks[s.block - 1];
    if (b.in_shape != cur)
      throw UserError(fmt::format(
          "plan '{}': block {} expects input {} but step {} gives it {} (only blocks of the same shape can be swapped or repeated)",
          str(), s.block, shape_string(b.in_shape), i + 1, shape_string(cur)));
    cur = b.out_shape;
  }
  if (cur != blocks.back().out_shape)
    throw UserError(fmt::format("plan '{}': the last step outputs {} but the head expects {}", str(),
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
