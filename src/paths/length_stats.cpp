// Per-length statistics of the gradient methods: filling, combining over batches, and the
// JSON, CSV and table forms written by `unravel gradients` (docs/schemas.md).
#include "paths/length_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "paths/path_counts.h"

namespace unravel::paths {

namespace detail {

void fill_norm_stats(LengthStats& ls, const std::vector<double>& norms, bool population) {
  const double m = static_cast<double>(norms.size());
  ls.samples = static_cast<int64_t>(norms.size());
  if (norms.empty()) return;
  double s = 0, s2 = 0;
  for (double x : norms) {
    s += x;
    s2 += x * x;
  }
  ls.mean = s / m;
  ls.mean_sq = s2 / m;
  double var = 0, var_sq = 0;  // two passes: no cancellation
  for (double x : norms) {
    var += (x - ls.mean) * (x - ls.mean);
    var_sq += (x * x - ls.mean_sq) * (x * x - ls.mean_sq);
  }
  const auto [lo, hi] = std::minmax_element(norms.begin(), norms.end());
  if (*lo == *hi) var = var_sq = 0;  // one path sampled repeatedly: no rounding noise
  if (population) {
    ls.std = std::sqrt(var / m);
    ls.mean_sq_se = 0;
  } else {
    ls.std = m > 1 ? std::sqrt(var / (m - 1)) : kNaN;
    ls.mean_sq_se = m > 1 ? std::sqrt(var_sq / (m - 1) / m) : kNaN;
  }
  ls.rms = std::sqrt(ls.mean_sq);
  ls.sum_sq = ls.mean_sq * ls.count;
  ls.sum_sq_se = ls.mean_sq_se * ls.count;
  ls.total = ls.mean * ls.count;
}

LengthStats empty_length(int n, int k, int forced) {
  LengthStats ls;
  ls.length = k;
  ls.paths = path_count_decimal(n, k, forced);
  ls.count = path_count(n, k, forced);
  return ls;
}

void zero_length(LengthStats& ls) {
  ls.mean = ls.std = ls.rms = ls.mean_sq = ls.mean_sq_se = ls.sum_sq = ls.sum_sq_se = ls.total = 0;
  if (std::isnan(ls.norm)) ls.norm = 0;
}

void finish_summary(GradientResult& r, double mass) {
  r.mass = mass;
  std::vector<double> w;
  bool totals = !r.lengths.empty();
  for (const auto& ls : r.lengths) totals = totals && std::isfinite(ls.total);
  r.effective_basis = totals ? "total" : "norm";
  for (const auto& ls : r.lengths) w.push_back(totals ? ls.total : ls.norm);
  double sum = 0;
  for (double x : w) sum += std::isfinite(x) ? x : 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) w[i] = 0;
    r.lengths[i].share = sum > 0 ? w[i] / sum : kNaN;
  }
  if (w.empty()) return;
  auto range = shortest_range(w, mass);
  double held = 0;
  for (int i = range.first; i <= range.second; ++i) held += w[i];
  r.effective_range = {r.lengths[range.first].length, r.lengths[range.second].length};
  r.effective_share = sum > 0 ? held / sum : kNaN;
}

// ---- combining and writing -----------------------------------------------------------------

}  // namespace detail

using detail::kNaN;
using detail::finish_summary;

GradientResult average_results(const std::vector<GradientResult>& per_batch, double mass) {
  if (per_batch.empty()) throw std::invalid_argument("average_results of no results");
  if (per_batch.size() == 1) {
    GradientResult r = per_batch.front();
    finish_summary(r, mass);
    return r;
  }
  const double N = static_cast<double>(per_batch.size());
  GradientResult r = per_batch.front();
  r.g.clear();
  r.grad = torch::Tensor();
  r.path_norms.clear();
  r.batches = static_cast<int64_t>(per_batch.size());
  r.residual = 0;
  r.grad_norm = 0;
  r.seconds = 0;
  for (auto& ls : r.lengths) {
    ls.norm = ls.mean = ls.std = ls.mean_sq = ls.sum_sq = ls.total = 0;
    ls.mean_sq_se = ls.sum_sq_se = 0;
    ls.samples = 0;
  }
  for (const auto& b : per_batch) {
    if (b.lengths.size() != r.lengths.size())
      throw std::invalid_argument("average_results: batches disagree on the lengths");
    r.residual = std::isnan(b.residual) ? b.residual : std::max(r.residual, b.residual);
    r.grad_norm += b.grad_norm / N;
    r.seconds += b.seconds;
    for (size_t i = 0; i < r.lengths.size(); ++i) {
      LengthStats& o = r.lengths[i];
      const LengthStats& x = b.lengths[i];
      o.norm += x.norm / N;
      o.mean += x.mean / N;
      o.std += x.std / N;
      o.mean_sq += x.mean_sq / N;
      o.sum_sq += x.sum_sq / N;
      o.total += x.total / N;
      o.mean_sq_se += x.mean_sq_se * x.mean_sq_se;
      o.sum_sq_se += x.sum_sq_se * x.sum_sq_se;
      o.samples += x.samples;
    }
  }
  for (auto& ls : r.lengths) {
    ls.mean_sq_se = std::sqrt(ls.mean_sq_se) / N;
    ls.sum_sq_se = std::sqrt(ls.sum_sq_se) / N;
    ls.rms = std::sqrt(ls.mean_sq);
    if (r.method == "exact" && ls.count > 0) {  // exact's mean and total derive from the rms
      ls.mean = ls.rms;
      ls.total = ls.rms * ls.count;
    }
  }
  finish_summary(r, mass);
  return r;
}

namespace {
nlohmann::json num(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}
std::string csv_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : ""; }
std::string cell(double x) { return std::isfinite(x) ? fmt::format("{:.4g}", x) : "-"; }
}  // namespace

nlohmann::json to_json(const GradientResult& r) {
  nlohmann::json lengths = nlohmann::json::array();
  for (const auto& ls : r.lengths) {
    lengths.push_back({{"length", ls.length},
                       {"paths", ls.paths},
                       {"norm", num(ls.norm)},
                       {"mean", num(ls.mean)},
                       {"std", num(ls.std)},
                       {"total", num(ls.total)},
                       {"rms", num(ls.rms)},
                       {"mean_sq", num(ls.mean_sq)},
                       {"mean_sq_se", num(ls.mean_sq_se)},
                       {"sum_sq", num(ls.sum_sq)},
                       {"sum_sq_se", num(ls.sum_sq_se)},
                       {"share", num(ls.share)},
                       {"samples", ls.samples}});
  }
  nlohmann::json j = {{"method", r.method},
                      {"n", r.n},
                      {"bn", bn_mode_name(r.bn)},
                      {"batch_size", r.batch_size},
                      {"batches", r.batches},
                      {"lengths", lengths},
                      {"residual", num(r.residual)},
                      {"grad_norm", num(r.grad_norm)},
                      {"effective_range", {r.effective_range.first, r.effective_range.second}},
                      {"effective_share", num(r.effective_share)},
                      {"effective_basis", r.effective_basis},
                      {"mass", r.mass},
                      {"seconds", r.seconds}};
  if (!r.engine.empty()) j["engine"] = r.engine;
  return j;
}

std::string to_csv(const GradientResult& r) {
  std::ostringstream os;
  os << "length,paths,norm,mean,std,total,rms,mean_sq,mean_sq_se,sum_sq,sum_sq_se,share,samples\n";
  for (const auto& ls : r.lengths) {
    os << ls.length << ',' << ls.paths << ',' << csv_num(ls.norm) << ',' << csv_num(ls.mean) << ','
       << csv_num(ls.std) << ',' << csv_num(ls.total) << ',' << csv_num(ls.rms) << ','
       << csv_num(ls.mean_sq) << ',' << csv_num(ls.mean_sq_se) << ',' << csv_num(ls.sum_sq) << ','
       << csv_num(ls.sum_sq_se) << ',' << csv_num(ls.share) << ',' << ls.samples << '\n';
  }
  return os.str();
}

std::string format_table(const GradientResult& r) {
  std::ostringstream os;
  const bool exact = r.method == "exact";
  os << fmt::format("{:>6}  {:>12}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}{}\n", "length", "paths",
                    "norm", exact ? "rms" : "mean", exact ? "rel.se" : "std", "total", "share",
                    "");
  for (const auto& ls : r.lengths) {
    const std::string paths =
        ls.paths.size() <= 12 ? ls.paths : fmt::format("{:.4e}", ls.count);
    const double spread = exact ? (ls.mean_sq > 0 ? ls.mean_sq_se / ls.mean_sq : kNaN) : ls.std;
    os << fmt::format("{:>6}  {:>12}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}\n", ls.length, paths,
                      cell(ls.norm), cell(ls.mean), cell(spread), cell(ls.total),
                      std::isfinite(ls.share) ? fmt::format("{:.4f}", ls.share) : "-");
  }
  if (std::isfinite(r.residual))
    os << fmt::format("residual ||sum_k g_k - g|| / ||g||: {:.3g}   (||g|| = {:.4g})\n",
                      r.residual, r.grad_norm);
  os << fmt::format("effective range ({:.0f}% of {}): lengths {}-{} ({:.1f}% held)\n",
                    100 * r.mass, r.effective_basis, r.effective_range.first,
                    r.effective_range.second, 100 * r.effective_share);
  return os.str();
}

}  // namespace unravel::paths
