// Reading the text form of execution plans (Plan::parse) and index lists ("3,17,20-22"), safe
// on hostile text: bounds are checked before a range is expanded, the plan's length is capped,
// every clause is applied in one pass (time linear in the text plus the plan) and errors quote
// at most ~60 characters of the clause they name.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "core/errors.h"
#include "core/plan.h"
#include "core/util.h"

namespace unravel {

namespace {

constexpr int kMaxAbsIndex = 1000000;  // any number in a plan or index list
constexpr std::size_t kQuoteClause = 60, kQuoteItem = 24;

[[noreturn]] void fail(const std::string& prefix, const std::string& problem) {
  throw UserError(prefix + problem);
}

// Splits on `sep`, keeping empty pieces ("3,,4" -> "3", "", "4"; "" -> one empty piece).
std::vector<std::string_view> split_view(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = s.find(sep, start);
    if (at == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, at - start));
    start = at + 1;
  }
}

std::string_view trim_view(std::string_view s) {
  const std::size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// The items of a clause value or index list: none of them empty.
std::vector<std::string_view> items_of(std::string_view value, const std::string& prefix) {
  auto items = split_view(value, ',');
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i] = trim_view(items[i]);
    if (items[i].empty()) fail(prefix, fmt::format("item {} of {} is empty", i + 1, items.size()));
  }
  return items;
}

int parse_int(std::string_view s, const std::string& prefix) {
  std::string_view digits = s;
  if (digits.size() > 1 && digits[0] == '+' && digits[1] != '-') digits.remove_prefix(1);
  int v = 0;
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || r.ec != std::errc() || r.ptr != digits.data() + digits.size() ||
      v < -kMaxAbsIndex || v > kMaxAbsIndex)
    fail(prefix, fmt::format("'{}' is not an integer", elide_middle(s, kQuoteItem)));
  return v;
}

double parse_double(std::string_view s, const std::string& prefix) {
  const std::string text(s);  // strtod needs a terminated string; items are short
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    fail(prefix, fmt::format("'{}' is not a number", elide_middle(s, kQuoteItem)));
  return v;
}

// "3:5" -> {"3", "5"}
std::pair<std::string_view, std::string_view> split_pair(std::string_view s, const std::string& prefix) {
  const std::size_t c = s.find(':');
  if (c == std::string_view::npos)
    fail(prefix, fmt::format("'{}' should be of the form A:B", elide_middle(s, kQuoteItem)));
  return {trim_view(s.substr(0, c)), trim_view(s.substr(c + 1))};
}

Gate parse_gate(std::string_view s, const std::string& prefix) {
  if (s == "both") return Gate::Both;
  if (s == "residual") return Gate::ResidualOnly;
  if (s == "shortcut") return Gate::ShortcutOnly;
  if (s == "none") return Gate::None;
  fail(prefix, fmt::format("gate '{}' is not one of both, residual, shortcut, none", elide_middle(s, kQuoteItem)));
}

// What an index list may hold, and how its errors read.
struct IndexRules {
  int lo = 0, hi = 0;              // accepted indices
  std::size_t max_items = 0;       // most indices after expansion
  bool blocks = false;             // word range errors as block indices of a network
  std::string too_many;            // the problem when the list expands past max_items
};

// Expands "3,17,20-22"; every number is checked against [lo, hi] and every range's length
// against what is left of max_items before the range is expanded.
std::vector<int> parse_indices(std::string_view text, const IndexRules& r, const std::string& prefix) {
  auto check = [&](int v) {
    if (v >= r.lo && v <= r.hi) return;
    if (r.blocks)
      fail(prefix, fmt::format("block {} is out of range (the network has blocks 1-{})", v, r.hi));
    fail(prefix, fmt::format("{} is out of range ({} to {})", v, r.lo, r.hi));
  };
  std::vector<int> out;
  for (std::string_view item : items_of(text, prefix)) {
    const std::size_t dash = item.find('-', 1);
    int a = 0, b = 0;
    if (dash == std::string_view::npos) {
      a = b = parse_int(item, prefix);
    } else {
      a = parse_int(trim_view(item.substr(0, dash)), prefix);
      b = parse_int(trim_view(item.substr(dash + 1)), prefix);
    }
    check(a);
    check(b);
    const std::size_t count = static_cast<std::size_t>(std::abs(static_cast<long>(b) - a)) + 1;
    if (count > r.max_items - out.size()) fail(prefix, r.too_many);
    const int step = b >= a ? 1 : -1;  // "6-1" counts down
    for (int i = a;; i += step) {
      out.push_back(i);
      if (i == b) break;
    }
  }
  return out;
}

// ---- plan text -------------------------------------------------------------------------------

void check_plan_text(const std::string& text) {
  if (text.size() > kMaxPlanTextBytes)
    throw UserError(fmt::format("plan text is {} bytes, more than the limit of {} bytes", text.size(),
                                kMaxPlanTextBytes));
  for (std::size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
      throw UserError(fmt::format("plan text: control byte 0x{:02x} at byte offset {} (a plan is printable text)",
                                  static_cast<unsigned>(c), i));
  }
}

bool is_separator(char c) { return c == ' ' || c == ';' || c == '\t' || c == '\n' || c == '\r'; }

// A clause being applied to `plan`: its name, value and the prefix of its errors.
struct Clause {
  std::string_view key, value;
  std::string prefix;  // "plan clause 'delete=7': "
};

IndexRules block_rules(const Plan& p, std::size_t max_items) {
  IndexRules r;
  r.lo = 1;
  r.hi = p.n_blocks();
  r.max_items = max_items;
  r.blocks = true;
  r.too_many = fmt::format("the plan would have more than {} steps (the limit is 4 x the {} blocks, at least 64)",
                           Plan::max_steps(p.n_blocks()), p.n_blocks());
  return r;
}

int block_of(std::string_view s, const Plan& p, const std::string& prefix) {
  const int b = parse_int(s, prefix);
  if (b < 1 || b > p.n_blocks())
    fail(prefix, fmt::format("block {} is out of range (the network has blocks 1-{})", b, p.n_blocks()));
  return b;
}

// first[b]: position of the first step that runs block b, or -1.
std::vector<long> first_positions(const Plan& p) {
  std::vector<long> first(static_cast<std::size_t>(p.n_blocks()) + 1, -1);
  const auto& st = p.steps();
  for (std::size_t i = st.size(); i-- > 0;)
    if (st[i].block >= 1 && st[i].block <= p.n_blocks()) first[st[i].block] = static_cast<long>(i);
  return first;
}

void apply_delete(Plan& p, const Clause& c) {
  std::vector<char> del(static_cast<std::size_t>(p.n_blocks()) + 1, 0);
  for (int b : parse_indices(c.value, block_rules(p, Plan::max_steps(p.n_blocks())), c.prefix)) del[b] = 1;
  for (auto& s : p.steps())
    if (s.block >= 1 && s.block <= p.n_blocks() && del[s.block]) s.deleted = true;
}

void apply_order(Plan& p, const Clause& c) {
  const auto order = parse_indices(c.value, block_rules(p, Plan::max_steps(p.n_blocks())), c.prefix);
  const auto first = first_positions(p);
  std::vector<Step> next;
  next.reserve(order.size());
  for (int b : order) {
    Step s;
    if (first[b] >= 0) s = p.steps()[first[b]];  // keep scale / gate / deletion of that block
    s.block = b;
    next.push_back(s);
  }
  p.steps() = std::move(next);
}

void apply_duplicate(Plan& p, const Clause& c) {
  const std::size_t cap = Plan::max_steps(p.n_blocks()), have = p.steps().size();
  const auto blocks = parse_indices(c.value, block_rules(p, have < cap ? cap - have : 0), c.prefix);
  const auto first = first_positions(p);
  std::vector<std::size_t> copies(first.size(), 0);
  for (int b : blocks) {
    if (first[b] < 0) fail(c.prefix, fmt::format("block {} does not run in this plan", b));
    ++copies[b];
  }
  // Each duplicate inserts a copy right after the block's first step: k duplicates of b are k
  // copies after that step.
  std::vector<Step> next;
  next.reserve(have + blocks.size());
  for (std::size_t i = 0; i < have; ++i) {
    const Step s = p.steps()[i];
    next.push_back(s);
    if (s.block >= 1 && s.block <= p.n_blocks() && first[s.block] == static_cast<long>(i))
      next.insert(next.end(), copies[s.block], s);
  }
  p.steps() = std::move(next);
}

void apply_swap(Plan& p, const Clause& c) {
  std::vector<std::set<long>> where(static_cast<std::size_t>(p.n_blocks()) + 1);
  auto& st = p.steps();
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st[i].block >= 1 && st[i].block <= p.n_blocks()) where[st[i].block].insert(static_cast<long>(i));
  for (std::string_view item : items_of(c.value, c.prefix)) {
    const auto [sa, sb] = split_pair(item, c.prefix);
    const int a = block_of(sa, p, c.prefix), b = block_of(sb, p, c.prefix);
    for (int blk : {a, b})
      if (where[blk].empty()) fail(c.prefix, fmt::format("block {} does not run in this plan", blk));
    if (a == b) continue;
    // exchange the first steps of a and b, as Plan::swap does
    const long ia = *where[a].begin(), ib = *where[b].begin();
    std::swap(st[ia], st[ib]);
    where[a].erase(ia);
    where[a].insert(ib);
    where[b].erase(ib);
    where[b].insert(ia);
  }
}

// scale=3:0.5 and gate=3:residual: the last value given for a block wins, for all its steps.
template <typename T, typename ParseValue>
void apply_per_block(Plan& p, const Clause& c, ParseValue parse_value, T Step::*field) {
  std::vector<T> value(static_cast<std::size_t>(p.n_blocks()) + 1);
  std::vector<char> given(value.size(), 0);
  for (std::string_view item : items_of(c.value, c.prefix)) {
    const auto [sb, sv] = split_pair(item, c.prefix);
    const int b = block_of(sb, p, c.prefix);
    value[b] = parse_value(sv, c.prefix);
    given[b] = 1;
  }
  for (auto& s : p.steps())
    if (s.block >= 1 && s.block <= p.n_blocks() && given[s.block]) s.*field = value[s.block];
}

void apply_clause(Plan& p, std::string_view clause) {
  if (clause == "intact") return;
  Clause c;
  c.prefix = fmt::format("plan clause '{}': ", elide_middle(clause, kQuoteClause));
  const std::size_t eq = clause.find('=');
  if (eq == std::string_view::npos)
    fail(c.prefix, "should be NAME=VALUE (delete, order, swap, duplicate, scale, gate)");
  c.key = clause.substr(0, eq);
  c.value = clause.substr(eq + 1);
  const bool known = c.key == "delete" || c.key == "order" || c.key == "swap" || c.key == "duplicate" ||
                     c.key == "scale" || c.key == "gate";
  if (!known)
    fail(c.prefix, fmt::format("unknown clause '{}' (use delete, order, swap, duplicate, scale, gate)",
                               elide_middle(c.key, kQuoteItem)));
  if (c.value.empty()) fail(c.prefix, "empty value (give at least one item)");
  if (c.key == "delete") apply_delete(p, c);
  else if (c.key == "order") apply_order(p, c);
  else if (c.key == "duplicate") apply_duplicate(p, c);
  else if (c.key == "swap") apply_swap(p, c);
  else if (c.key == "scale") apply_per_block<double>(p, c, parse_double, &Step::residual_scale);
  else apply_per_block<Gate>(p, c, parse_gate, &Step::gate);
}

}  // namespace

std::vector<int> parse_index_list(const std::string& text, const std::string& what,
                                  const IndexListLimits& limits) {
  const std::string prefix = what + ": ";
  if (trim_view(text).empty()) fail(prefix, "empty list");
  IndexRules r;
  r.lo = limits.lo;
  r.hi = limits.hi;
  r.max_items = limits.max_items;
  r.too_many = fmt::format("the list expands to more than {} indices", limits.max_items);
  return parse_indices(text, r, prefix);
}

std::size_t Plan::max_steps(int n_blocks) {
  return std::max<std::size_t>(64, 4 * static_cast<std::size_t>(std::max(n_blocks, 0)));
}

Plan Plan::parse(const std::string& text, int n_blocks) { return parse(text, intact(n_blocks)); }

Plan Plan::parse(const std::string& text, const Plan& base) {
  check_plan_text(text);
  Plan p = base;
  bool any = false;
  const std::string_view all(text);
  for (std::size_t i = 0; i < all.size();) {
    if (is_separator(all[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < all.size() && !is_separator(all[j])) ++j;
    apply_clause(p, all.substr(i, j - i));
    any = true;
    i = j;
  }
  if (!any) throw UserError("empty plan: use 'intact' for the unedited network");
  return p;
}

}  // namespace unravel
