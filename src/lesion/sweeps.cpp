// Plan generation for the lesion sweeps (E1-E4, E9) and plans read from a file.
#include "lesion/sweeps.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

#include "core/errors.h"
#include "core/random.h"
#include "core/text.h"
#include "core/util.h"

namespace unravel::lesion {

// ---- helpers ----------------------------------------------------------------------------------

namespace {

// Streams per sweep: fixed constants, so a sweep's sets depend on the seed and k only.
constexpr uint64_t kStreamDelete = 1, kStreamSwap = 2, kStreamDuplicate = 3;

constexpr int kMaxK = 1000000;  // largest k a sweep accepts

// `applied`: the plan to evaluate when the caller already has it (plan files: the text applied
// to the default plan exactly as `unravel eval --plan` does); else rebase(edit, base).
Lesion make(const std::string& sweep, const std::string& kind, int k, Plan edit, const Plan& base,
            const std::vector<BlockInfo>& blocks, const Plan* applied = nullptr) {
  Lesion l;
  l.sweep = sweep;
  l.kind = kind;
  l.k = k;
  l.plan = applied ? *applied : rebase(edit, base);
  l.plan.validate(blocks);
  l.kendall_tau = kendall_tau(l.plan.order());
  l.edit = std::move(edit);
  return l;
}

void check_k(int k_hi, int limit, const std::string& flag, const std::string& what) {
  if (k_hi > limit)
    throw UserError(fmt::format("{}: k = {} exceeds the {} {}", flag, k_hi, limit, what));
}

}  // namespace

std::vector<std::vector<int>> shape_groups(const std::vector<BlockInfo>& blocks) {
  std::map<std::pair<Shape, Shape>, std::vector<int>> groups;
  for (const auto& b : blocks) groups[{b.in_shape, b.out_shape}].push_back(b.index);
  std::vector<std::vector<int>> out;
  for (auto& kv : groups) out.push_back(kv.second);
  std::sort(out.begin(), out.end());  // by smallest index: independent of shape ordering
  return out;
}

int disjoint_swap_pairs(const std::vector<BlockInfo>& blocks) {
  int pairs = 0;
  for (const auto& g : shape_groups(blocks)) pairs += static_cast<int>(g.size()) / 2;
  return pairs;
}

std::pair<int, int> parse_k_range(const std::string& text, const std::string& flag) {
  const std::string_view t = trim(text);
  const size_t c = t.find(':');
  const std::string what = flag + " (K or K1:K2)";
  const int lo = static_cast<int>(parse_int(t.substr(0, c), what, 1, kMaxK));
  const int hi = c == std::string_view::npos ? lo : static_cast<int>(parse_int(t.substr(c + 1), what, 1, kMaxK));
  if (lo > hi) throw UserError(fmt::format("{} '{}': K1 must not exceed K2", flag, elide_middle(t)));
  return {lo, hi};
}

Plan rebase(const Plan& edit, const Plan& base) {
  if (edit.n_blocks() != base.n_blocks())
    throw UserError(fmt::format("plan '{}' is for {} blocks but the network has {}", edit.str(),
                                edit.n_blocks(), base.n_blocks()));
  std::vector<double> scale(base.n_blocks() + 1, 1.0);
  for (const Step& s : base.steps())
    if (s.block >= 1 && s.block <= base.n_blocks()) scale[s.block] = s.residual_scale;
  Plan out = edit;
  for (Step& s : out.steps())
    if (s.block >= 1 && s.block <= base.n_blocks()) s.residual_scale *= scale[s.block];
  return out;
}

std::vector<Lesion> single_deletions(const Plan& base, const std::vector<BlockInfo>& blocks) {
  std::vector<Lesion> out;
  const int n = base.n_blocks();
  for (int i = 1; i <= n; ++i) {
    Lesion l = make("single", "delete", 1, Plan::intact(n).remove({i}), base, blocks);
    l.blocks = {i};
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<Lesion> random_deletions(const Plan& base, const std::vector<BlockInfo>& blocks,
                                     int k_lo, int k_hi, int samples, uint64_t seed) {
  const int n = base.n_blocks();
  check_k(k_hi, n, "--delete-random", "blocks of the network");
  Rng rng = Rng::stream(seed, kStreamDelete);
  std::vector<Lesion> out;
  for (int k = k_lo; k <= k_hi; ++k) {
    for (int s = 0; s < samples; ++s) {
      std::vector<int> pool(n);
      for (int i = 0; i < n; ++i) pool[i] = i + 1;
      for (int j = 0; j < k; ++j) std::swap(pool[j], pool[j + rng.below(n - j)]);  // partial shuffle
      std::vector<int> del(pool.begin(), pool.begin() + k);
      std::sort(del.begin(), del.end());
      Lesion l = make("delete-random", "delete", k, Plan::intact(n).remove(del), base, blocks);
      l.blocks = del;
      out.push_back(std::move(l));
    }
  }
  return out;
}

std::vector<Lesion> random_swaps(const Plan& base, const std::vector<BlockInfo>& blocks, int k_lo,
                                 int k_hi, int samples, uint64_t seed) {
  const int n = base.n_blocks();
  check_k(k_hi, disjoint_swap_pairs(blocks), "--swap-random", "disjoint pairs of same-shape blocks");
  const auto groups = shape_groups(blocks);
  Rng rng = Rng::stream(seed, kStreamSwap);
  std::vector<Lesion> out;
  for (int k = k_lo; k <= k_hi; ++k) {
    for (int s = 0; s < samples; ++s) {
      auto avail = groups;
      Plan edit = Plan::intact(n);
      std::vector<std::pair<int, int>> pairs;
      for (int j = 0; j < k; ++j) {
        // a pair uniform among all eligible pairs: pick a group weighted by its pair count
        uint64_t total = 0;
        for (const auto& g : avail) total += g.size() * (g.size() - 1) / 2;
        uint64_t r = rng.below(total);
        size_t gi = 0;
        for (; gi < avail.size(); ++gi) {
          const uint64_t c = avail[gi].size() * (avail[gi].size() - 1) / 2;
          if (r < c) break;
          r -= c;
        }
        auto& g = avail[gi];
        const size_t a = rng.below(g.size());
        size_t b = rng.below(g.size() - 1);
        if (b >= a) ++b;
        int x = g[a], y = g[b];
        if (x > y) std::swap(x, y);
        pairs.emplace_back(x, y);
        g.erase(std::remove_if(g.begin(), g.end(), [&](int v) { return v == x || v == y; }), g.end());
        edit.swap(x, y);
      }
      Lesion l = make("swap-random", "swap", k, std::move(edit), base, blocks);
      l.pairs = pairs;
      for (const auto& p : pairs) {
        l.blocks.push_back(p.first);
        l.blocks.push_back(p.second);
      }
      std::sort(l.blocks.begin(), l.blocks.end());
      out.push_back(std::move(l));
    }
  }
  return out;
}

std::vector<Lesion> random_duplicates(const Plan& base, const std::vector<BlockInfo>& blocks,
                                      int k_lo, int k_hi, int samples, uint64_t seed) {
  const int n = base.n_blocks();
  const auto groups = shape_groups(blocks);
  std::vector<int> group_of(n + 1, -1);
  int max_targets = 0;  // every group keeps one block at its own place to copy from
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    for (int b : groups[gi]) group_of[b] = static_cast<int>(gi);
    max_targets += static_cast<int>(groups[gi].size()) - 1;
  }
  check_k(k_hi, max_targets, "--duplicate-random",
          "positions that can take a copy of a same-shape block (each shape keeps one original)");
  Rng rng = Rng::stream(seed, kStreamDuplicate);
  std::vector<Lesion> out;
  for (int k = k_lo; k <= k_hi; ++k) {
    for (int s = 0; s < samples; ++s) {
      // targets one by one, uniform among the positions whose group keeps a non-target after it
      std::vector<bool> is_target(n + 1, false);
      std::vector<int> left(groups.size());  // non-targets per group
      for (size_t gi = 0; gi < groups.size(); ++gi) left[gi] = static_cast<int>(groups[gi].size());
      std::vector<int> targets;
      for (int j = 0; j < k; ++j) {
        std::vector<int> cand;
        for (int b = 1; b <= n; ++b)
          if (!is_target[b] && left[group_of[b]] >= 2) cand.push_back(b);
        const int t = cand[rng.below(cand.size())];
        is_target[t] = true;
        left[group_of[t]]--;
        targets.push_back(t);
      }
      std::sort(targets.begin(), targets.end());
      // each target runs a copy of a block of its group that still runs at its own position
      std::vector<int> order(n);
      for (int i = 0; i < n; ++i) order[i] = i + 1;
      std::vector<std::pair<int, int>> pairs;
      for (int t : targets) {
        std::vector<int> src;
        for (int b : groups[group_of[t]])
          if (!is_target[b]) src.push_back(b);
        const int b = src[rng.below(src.size())];
        order[t - 1] = b;
        pairs.emplace_back(t, b);
      }
      Plan edit = Plan::intact(n);
      edit.set_order(order);
      Lesion l = make("duplicate-random", "duplicate", k, std::move(edit), base, blocks);
      l.blocks = targets;
      l.pairs = pairs;
      out.push_back(std::move(l));
    }
  }
  return out;
}

std::vector<Lesion> plans_from_text(const std::string& text, const std::string& name,
                                    const Plan& base, const std::vector<BlockInfo>& blocks) {
  const int n = base.n_blocks();
  std::vector<Lesion> out;
  std::istringstream in(text);
  std::string raw;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    const size_t hash = raw.find('#');
    const std::string line(trim(std::string_view(raw).substr(0, hash)));
    if (line.empty()) continue;
    try {
      Plan edit = Plan::parse(line, n);
      // k: steps that differ from the intact plan, plus steps added or dropped
      const Plan intact = Plan::intact(n);
      const auto& st = edit.steps();
      int k = std::abs(static_cast<int>(st.size()) - n);
      for (size_t i = 0; i < st.size() && i < static_cast<size_t>(n); ++i)
        if (st[i] != intact.steps()[i]) ++k;
      // Same meaning as `unravel eval --plan`: clauses applied to the default plan, so a
      // plan's printed text (scales included) reads back to the same plan.
      const Plan applied = Plan::parse(line, base);
      Lesion l = make("plans", "custom", k, edit, base, blocks, &applied);
      l.blocks = edit.deleted_blocks();
      l.line = lineno;
      out.push_back(std::move(l));
    } catch (const UserError& e) {
      throw UserError(fmt::format("{}:{}: {}", name, lineno, e.what()));
    }
  }
  if (out.empty()) throw UserError(fmt::format("{}: no plans in the file (one plan a line)", name));
  return out;
}

std::vector<Lesion> plans_from_file(const std::string& path, const Plan& base,
                                    const std::vector<BlockInfo>& blocks) {
  std::string text;
  try {
    text = read_text_file(path);
  } catch (const UserError& e) {
    throw UserError(std::string("--plans: ") + e.what());
  }
  return plans_from_text(text, path, base, blocks);
}

}  // namespace unravel::lesion
