// The report's parsed experiments and the comparison table: results.json read into typed
// studies, and our numbers beside the paper's (CIFAR-10; ImageNet for E2).
#include "report/comparison.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/stats.h"
#include "paths/path_counts.h"

namespace unravel::report::detail {

using nlohmann::json;

namespace {
// ---- formatting ----------------------------------------------------------------------------

// Share of all 2^n paths with length in [lo, hi] (paths' exact shares).
double binomial_share(int n, int lo, int hi) {
  double s = 0;
  for (int k = std::max(lo, 0); k <= std::min(hi, n); ++k) s += paths::binomial_share(n, k);
  return s;
}

std::string net_label(const std::string& kind, const LesionStudy& l) {
  return l.model.empty() ? kind : kind + " (" + l.model + ")";
}

// A pair of named lesion sweeps ({"resnet": ..., "plain": ...}); the first key is required.
std::vector<std::pair<std::string, LesionStudy>> parse_lesion_pair(
    const json& j, const std::string& where,
    const std::vector<std::pair<std::string, std::string>>& keys) {
  if (!j.is_object()) throw UserError(where + ": expected an object");
  std::vector<std::pair<std::string, LesionStudy>> out;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& [key, kind] = keys[i];
    if (i == 0) require(j, key, where);
    if (!j.contains(key) || j.at(key).is_null()) continue;
    LesionStudy l = parse_lesion(j.at(key), where + "." + key);
    out.emplace_back(net_label(kind, l), std::move(l));
  }
  return out;
}

const PaperSingle kPaperResNet{"6.03%", "6.46%", "42.2% (block 1)", "~12% (blocks 19 and 37)"};
const PaperSingle kPaperStochastic{"5.13%", "5.26%", "6.9%", ""};
const PaperSingle kPaperPlain{"", "~90% (chance)", "~90% (chance)", ""};
// The authors' ImageNet pre-activation ResNet-200 (66 blocks; their lesion code, no BN re-estimation).
const PaperSingle kPaperImageNet{"21.65% (ResNet-200)", "22.3%", "90.6% (block 66)",
                                 "66.3% (block 4), 61.6% (block 28)"};

void rows_short_paths(std::vector<ComparisonRow>& rows, const std::string& id,
                      const ShortPathTraining& e7) {
  rows.push_back({id, "normal training: test error", pct(e7.normal), "6.10%"});
  const std::string what = e7.active_blocks > 0
                               ? fmt::format("short paths ({} of {} blocks)", e7.active_blocks, e7.n)
                               : std::string("short-path training");
  rows.push_back({id, what + ": test error", pct(e7.short_paths), "5.96% (23 of 54 blocks)"});
}

}  // namespace

Parsed parse_results(const json& r, const std::string& where) {
  if (!r.is_object()) throw UserError(where + ": expected an object keyed by experiment id");
  Parsed p;
  auto has = [&](const char* id) { return r.contains(id) && !r.at(id).is_null(); };
  if (has("E1"))
    p.e1 = parse_lesion_pair(r.at("E1"), where + ": E1", {{"resnet", "ResNet"}, {"plain", "plain net"}});
  if (has("E2")) {
    LesionStudy l = parse_lesion(r.at("E2"), where + ": E2");
    p.e2.emplace_back(net_label("imported", l), std::move(l));
  }
  if (has("E3")) p.e3 = parse_lesion(r.at("E3"), where + ": E3");
  if (has("E4")) p.e4 = parse_lesion(r.at("E4"), where + ": E4");
  if (has("E5")) p.e5 = parse_paths(r.at("E5"), where + ": E5");
  if (has("E6")) {
    const json& e6 = r.at("E6");
    const std::string w = where + ": E6";
    if (!e6.is_object()) throw UserError(w + ": expected an object");
    for (const char* key : {"sample", "exact", "brute"})
      if (e6.contains(key) && !e6.at(key).is_null())
        p.e6.push_back(parse_gradients(e6.at(key), w + "." + key));
    if (p.e6.empty()) throw UserError(w + ": missing field \"sample\" (or \"exact\")");
  }
  if (has("E7")) p.e7 = parse_short_path_training(r.at("E7"), where + ": E7");
  if (has("E8")) {
    const json& e8 = r.at("E8");
    const std::string w = where + ": E8";
    Deletions d;
    const json& list = require(e8, "deleted", w);
    if (!list.is_array()) throw UserError(w + ".deleted: expected an array of path results");
    for (size_t i = 0; i < list.size(); ++i)
      d.paths.push_back(parse_paths(list[i], w + ".deleted[" + std::to_string(i) + "]"));
    const auto n = optional_number(e8, "n", w);
    d.n = n ? static_cast<int>(*n) : (d.paths.empty() ? 0 : d.paths[0].n);
    const auto x = optional_number(e8, "x", w);
    d.x = x ? static_cast<int>(*x) : 11;
    p.e8 = std::move(d);
  }
  if (has("E9"))
    p.e9 = parse_lesion_pair(r.at("E9"), where + ": E9",
                             {{"stochastic", "stochastic depth"}, {"resnet", "ResNet"}});
  return p;
}

const PaperSingle& paper_for(const std::string& model) {
  if (model.rfind("plain", 0) == 0) return kPaperPlain;
  return kPaperResNet;
}

void rows_single(std::vector<ComparisonRow>& rows, const std::string& id, const std::string& who,
                 const LesionStudy& l, const PaperSingle& paper) {
  rows.push_back({id, who + ": intact", pct(l.baseline), paper.intact});
  const auto single = l.single_deletions();
  if (single.empty()) return;
  std::vector<double> errs;
  for (const auto& s : single) errs.push_back(s.second);
  rows.push_back({id, who + ": one block deleted, median", pct(median(errs)), paper.median});
  const auto worst = *std::max_element(single.begin(), single.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
  rows.push_back({id, who + ": worst single deletion",
                  fmt::format("{} (block {})", pct(worst.second), worst.first), paper.worst});
  const auto ds = l.downsampling_blocks();
  std::string text;
  for (const auto& [block, err] : single)
    if (std::count(ds.begin(), ds.end(), block))
      text += (text.empty() ? "" : ", ") + fmt::format("block {}: {}", block, pct(err));
  if (!text.empty())
    rows.push_back({id, who + ": downsampling blocks deleted", text, paper.downsampling});
}

void rows_random_deletion(std::vector<ComparisonRow>& rows, const std::string& id,
                          const LesionStudy& l) {
  const auto stats = l.stats_by_k("delete");
  if (stats.empty()) return;
  auto it = std::find_if(stats.begin(), stats.end(), [](const ErrorStats& s) { return s.k == 10; });
  const ErrorStats& s = it != stats.end() ? *it : stats.back();
  rows.push_back({id, fmt::format("{} random blocks deleted: mean error", s.k),
                  fmt::format("{} (min {}, max {}; {} sets)", pct(s.mean), pct(s.min), pct(s.max),
                              s.count),
                  "smooth increase; ~20% at k = 10 of 54"});
}

void rows_reorder(std::vector<ComparisonRow>& rows, const std::string& id, const LesionStudy& l) {
  const auto stats = l.stats_by_k("swap");
  if (stats.empty()) return;
  const ErrorStats& s = stats.back();
  rows.push_back({id, fmt::format("{} random swaps: mean error", s.k),
                  s.has_tau ? fmt::format("{} (mean Kendall tau {:.3f})", pct(s.mean), s.mean_tau)
                            : pct(s.mean),
                  "smooth increase as tau falls"});
}

void rows_paths(std::vector<ComparisonRow>& rows, const std::string& id,
                const LengthShares& p) {
  rows.push_back({id, fmt::format("mean path length (n = {})", p.n), fmt::format("{:.1f}", p.mean),
                  "27 (n = 54)"});
  if (p.range95) {
    const auto [lo, hi] = *p.range95;
    rows.push_back({id, "shortest range holding 95% of paths",
                    fmt::format("{}-{} ({:.4f} of paths)", lo, hi, p.share_between(lo, hi)),
                    "19-35 of 54: 0.980 (98.0%)"});
  }
  if (p.n == 54)
    rows.push_back({id, "share of paths with 19-35 blocks", fmt::format("{:.5f}", p.share_between(19, 35)),
                    "0.980 (98.0%)"});
}

void rows_gradients(std::vector<ComparisonRow>& rows, const std::string& id,
                    const std::vector<Gradients>& methods) {
  for (const Gradients& g : methods) {
    if (g.effective_range) {
      const auto [lo, hi] = *g.effective_range;
      rows.push_back({id, "effective path lengths (" + g.method + ")",
                      fmt::format("{}-{} of {} blocks ({:.2f}% of paths)", lo, hi, g.n,
                                  100 * binomial_share(g.n, lo, hi)),
                      "5-17 of 54 blocks (0.45% of paths)"});
    }
    if (g.residual)
      rows.push_back({id, g.method + ": relative residual of the sum over lengths",
                      fmt::format("{:.2e}", *g.residual), ""});
    if (g.seconds)
      rows.push_back({id, g.method + ": seconds", fmt::format("{:.1f}", *g.seconds), ""});
  }
}

void rows_deletions(std::vector<ComparisonRow>& rows, const std::string& id, const Deletions& d) {
  for (const LengthShares& p : d.paths) {
    std::string paper;
    if (p.n == 54 && d.x == 11) {
      if (p.deleted == 1) paper = "0.80";
      if (p.deleted == 10) paper = "0.080";
      if (p.deleted == 20) paper = "0.0030";
    }
    rows.push_back({id, fmt::format("share of length-{} paths left, {} of {} deleted", d.x,
                                    p.deleted, p.n),
                    fmt::format("{:.3g}", p.remaining_at(d.x)), paper});
  }
}

std::vector<ComparisonRow> rows_for(const Parsed& p) {
  std::vector<ComparisonRow> rows;
  for (const auto& [label, l] : p.e1)
    rows_single(rows, "E1", label, l, paper_for(l.model.empty() && label.rfind("plain", 0) == 0
                                                    ? "plain"
                                                    : l.model));
  for (const auto& [label, l] : p.e2) rows_single(rows, "E2", label, l, kPaperImageNet);
  if (p.e3) rows_random_deletion(rows, "E3", *p.e3);
  if (p.e4) rows_reorder(rows, "E4", *p.e4);
  if (p.e5) rows_paths(rows, "E5", *p.e5);
  rows_gradients(rows, "E6", p.e6);
  if (p.e7) rows_short_paths(rows, "E7", *p.e7);
  if (p.e8) rows_deletions(rows, "E8", *p.e8);
  for (size_t i = 0; i < p.e9.size(); ++i)
    rows_single(rows, "E9", p.e9[i].first, p.e9[i].second, i == 0 ? kPaperStochastic : kPaperResNet);
  return rows;
}

}  // namespace unravel::report::detail
