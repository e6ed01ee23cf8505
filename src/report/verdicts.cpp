// The rule of each experiment applied to results.json (see verdicts.h).
#include "report/verdicts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/stats.h"
#include "paths/path_counts.h"

namespace unravel::report {

using json = nlohmann::json;

namespace {

json verdict(const std::string& rule, bool ok, const std::string& evidence) {
  return {{"rule", rule}, {"reproduced", ok}, {"evidence", evidence}};
}

double err(const json& plan) { return plan.value("top1_error", 0.0); }

// Single deletions of a lesion result: block -> error; and the downsampling blocks.
struct Singles {
  double intact = 0;
  std::map<int, double> by_block;
  std::vector<int> downsampling;
  int classes = 10;
  bool ok = false;
};

Singles singles(const json& l) {
  Singles s;
  if (!l.is_object() || !l.contains("baseline") || !l.contains("plans")) return s;
  s.intact = err(l["baseline"]);
  s.classes = static_cast<int>(l["baseline"].value("per_class_error", json::array()).size());
  for (const json& p : l["plans"])
    if (p.value("sweep", std::string()) == "single" && p.contains("blocks") && !p["blocks"].empty())
      s.by_block[p["blocks"][0].get<int>()] = err(p);
  for (const json& b : l.value("blocks", json::array()))
    if (b.value("downsample", false)) s.downsampling.push_back(b.value("index", 0));
  s.ok = !s.by_block.empty();
  return s;
}

std::vector<double> values(const std::map<int, double>& m) {
  std::vector<double> v;
  for (const auto& [k, e] : m) v.push_back(e);
  return v;
}

std::string pct(double e) { return fmt::format("{:.2f}%", 100 * e); }

json judge_e1(const json& e1) {
  const std::string rule = "ResNet: median single deletion raises the error by < 1 pp; plain net: every single "
                           "deletion within 10 pp of chance";
  const Singles r = singles(e1.value("resnet", json())), p = singles(e1.value("plain", json()));
  if (!r.ok) return verdict(rule, false, "no single deletions of the ResNet");
  const double rise = median(values(r.by_block)) - r.intact;
  bool ok = rise < 0.01;
  std::string ev = fmt::format("ResNet {} intact, median deletion {} (+{:.2f} pp)", pct(r.intact),
                               pct(median(values(r.by_block))), 100 * rise);
  if (p.ok) {
    const double chance = 1.0 - 1.0 / std::max(2, p.classes);
    const auto v = values(p.by_block);
    const double low = *std::min_element(v.begin(), v.end());
    ok = ok && low >= chance - 0.10;
    ev += fmt::format("; plain net {} intact, lowest single deletion {} (chance {})", pct(p.intact), pct(low),
                      pct(chance));
  } else {
    ok = false;
    ev += "; no plain net";
  }
  return verdict(rule, ok, ev);
}

json judge_e2(const json& e2) {
  const std::string rule = "median single deletion raises the error by < 2 pp; deleting a downsampling block "
                           "hurts more than the median deletion of the others";
  const Singles s = singles(e2);
  if (!s.ok) return verdict(rule, false, "no single deletions");
  std::vector<double> down, other;
  for (const auto& [b, e] : s.by_block)
    (std::count(s.downsampling.begin(), s.downsampling.end(), b) ? down : other).push_back(e);
  const double med = median(values(s.by_block));
  const bool ok = med - s.intact < 0.02 && !down.empty() && !other.empty() && mean(down) > median(other);
  return verdict(rule, ok,
                 fmt::format("intact {}, median deletion {} (+{:.2f} pp), downsampling blocks {} on average against "
                             "a median of {} for the others",
                             pct(s.intact), pct(med), 100 * (med - s.intact), pct(mean(down)), pct(median(other))));
}

// Mean error per k of the plans of `kind` ("delete" / "swap"), in k order.
std::map<int, std::vector<double>> by_k(const json& l, const std::string& kind) {
  std::map<int, std::vector<double>> m;
  for (const json& p : l.value("plans", json::array()))
    if (p.value("kind", std::string()) == kind) m[p.value("k", 0)].push_back(err(p));
  return m;
}

json judge_e3(const json& e3) {
  const std::string rule = "error grows smoothly with k deleted: Spearman rho(k, mean error) >= 0.9, no step "
                           "down of more than 2 pp";
  const auto m = by_k(e3, "delete");
  if (m.size() < 2) return verdict(rule, false, "fewer than two values of k");
  std::vector<double> ks, means;
  double worst_drop = 0;
  for (const auto& [k, v] : m) {
    if (!means.empty()) worst_drop = std::max(worst_drop, means.back() - mean(v));
    ks.push_back(k);
    means.push_back(mean(v));
  }
  const double rho = spearman(ks, means);
  return verdict(rule, rho >= 0.9 && worst_drop <= 0.02,
                 fmt::format("rho {:.3f}; mean error {} at k = {} to {} at k = {}; largest step down {:.2f} pp", rho,
                             pct(means.front()), m.begin()->first, pct(means.back()), m.rbegin()->first,
                             100 * worst_drop));
}

json judge_e4(const json& e4) {
  const std::string rule = "error grows as the order is corrupted: Spearman rho(Kendall tau, error) <= -0.8";
  std::vector<double> tau, e;
  for (const json& p : e4.value("plans", json::array()))
    if (p.value("kind", std::string()) == "swap") {
      tau.push_back(p.value("kendall_tau", 1.0));
      e.push_back(err(p));
    }
  if (tau.size() < 3) return verdict(rule, false, "fewer than three swap plans");
  const double rho = spearman(tau, e);
  return verdict(rule, rho <= -0.8, fmt::format("rho {:.3f} over {} orders", rho, tau.size()));
}

json judge_e5(const json& e5) {
  const std::string rule = "path lengths are Binomial(n, 1/2): mean n/2; for n = 54, 98.0% of paths have 19-35 blocks";
  const int n = e5.value("n", 0);
  const double m = e5.value("mean", -1.0);
  bool ok = n > 0 && std::abs(m - n / 2.0) < 1e-9;
  std::string ev = fmt::format("n = {}, mean {:.3f}", n, m);
  if (n == 54) {
    double share = 0;
    for (int k = 19; k <= 35; ++k) share += paths::binomial_share(54, k);
    double ours = 0;
    for (const json& row : e5.value("lengths", json::array()))
      if (row.value("length", -1) >= 19 && row.value("length", -1) <= 35) ours += row.value("share", 0.0);
    ok = ok && std::abs(ours - 0.98017) < 5e-5 && std::abs(ours - share) < 1e-12;
    ev += fmt::format(", share of 19-35: {:.5f}", ours);
  }
  return verdict(rule, ok, ev);
}

json judge_e6(const json& e6) {
  const std::string rule = "the effective path lengths end below n/2 (the paper: 5-17 of 54)";
  bool ok = e6.is_object() && !e6.empty();
  std::string ev;
  for (const auto& [method, g] : e6.items()) {
    if (!g.is_object() || !g.contains("effective_range")) continue;
    const int n = g.value("n", static_cast<int>(g.value("lengths", json::array()).size()) - 1);
    const auto r = g["effective_range"];
    const int lo = r[0].get<int>(), hi = r[1].get<int>();
    ok = ok && hi < n / 2.0;
    ev += fmt::format("{}{}: {}-{} of {}", ev.empty() ? "" : "; ", method, lo, hi, n);
  }
  return verdict(rule, ok && !ev.empty(), ev.empty() ? "no effective range" : ev);
}

json judge_e7(const json& e7) {
  const std::string rule = "short-path training is within 0.5 pp of normal training (or better)";
  const double normal = e7.value("normal", json::object()).value("top1_error", 1.0);
  const double shorter = e7.value("short", json::object()).value("top1_error", 1.0);
  return verdict(rule, shorter - normal <= 0.005,
                 fmt::format("normal {}, short paths {} ({} test rule{}) : {:+.2f} pp", pct(normal), pct(shorter),
                             e7.value("default_convention", std::string("scaled")),
                             e7.value("default_statistics", std::string()) == "recalibrated"
                                 ? ", batch norm re-estimated" : "",
                             100 * (shorter - normal)));
}

json judge_e8(const json& e8) {
  const std::string rule = "the share of length-x paths left after deleting d blocks is C(n-d, x) / C(n, x)";
  const int n = e8.value("n", 0), x = e8.value("x", 0);
  bool ok = n > 0;
  double worst = 0;
  for (const json& d : e8.value("deleted", json::array())) {
    const int del = d.value("deleted", 0);
    for (const json& row : d.value("lengths", json::array())) {
      const int k = row.value("length", -1);
      const double want = paths::remaining_share(n, del, k), got = row.value("remaining_share", -1.0);
      worst = std::max(worst, std::abs(got - want) / std::max(want, 1e-300));
    }
  }
  ok = ok && worst < 1e-9;
  return verdict(rule, ok, fmt::format("n = {}, x = {}; largest relative difference to the closed form {:.1e}", n, x,
                                       worst));
}

json judge_e9(const json& e9) {
  const std::string rule = "stochastic depth: median rise and worst single deletion at most the normal ResNet's";
  const Singles s = singles(e9.value("stochastic", json())), r = singles(e9.value("resnet", json()));
  if (!s.ok || !r.ok) return verdict(rule, false, "needs both networks' single deletions");
  const auto sv = values(s.by_block), rv = values(r.by_block);
  const double s_rise = median(sv) - s.intact, r_rise = median(rv) - r.intact;
  const double s_worst = *std::max_element(sv.begin(), sv.end()), r_worst = *std::max_element(rv.begin(), rv.end());
  return verdict(rule, s_rise <= r_rise && s_worst <= r_worst,
                 fmt::format("median rise {:+.2f} pp against {:+.2f} pp; worst {} against {}", 100 * s_rise,
                             100 * r_rise, pct(s_worst), pct(r_worst)));
}

}  // namespace

json judge(const json& results) {
  json out = json::object();
  if (!results.is_object()) return out;
  auto has = [&](const char* id) { return results.contains(id) && !results.at(id).is_null(); };
  if (has("E1")) out["E1"] = judge_e1(results["E1"]);
  if (has("E2")) out["E2"] = judge_e2(results["E2"]);
  if (has("E3")) out["E3"] = judge_e3(results["E3"]);
  if (has("E4")) out["E4"] = judge_e4(results["E4"]);
  if (has("E5")) out["E5"] = judge_e5(results["E5"]);
  if (has("E6")) out["E6"] = judge_e6(results["E6"]);
  if (has("E7")) out["E7"] = judge_e7(results["E7"]);
  if (has("E8")) out["E8"] = judge_e8(results["E8"]);
  if (has("E9")) out["E9"] = judge_e9(results["E9"]);
  return out;
}

}  // namespace unravel::report
