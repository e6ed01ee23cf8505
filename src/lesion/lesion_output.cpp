// What a lesion sweep writes: the summary, the JSON of docs/schemas.md, the CSV and the table
// printed by `unravel lesion`.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "core/stats.h"
#include "lesion/lesion.h"

namespace unravel::lesion {

namespace {

nlohmann::json short_metrics(const Metrics& m) {
  return {{"top1_error", m.top1_error()}, {"top5_error", m.top5_error()}, {"loss", m.loss()},
          {"correct", m.correct}, {"n", m.n}};
}

nlohmann::json tau_json(double t) { return std::isfinite(t) ? nlohmann::json(t) : nlohmann::json(); }

// Mean / sample std (n - 1, see core/stats.h) / min / max / median of the errors of one group.
// The values are sorted first, so the sums run in a fixed order whatever the plan order.
nlohmann::json stats_json(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {{"mean", mean(v)},
          {"std", sample_std(v)},
          {"min", v.empty() ? 0.0 : v.front()},
          {"max", v.empty() ? 0.0 : v.back()},
          {"median", median(v)}};
}

// Groups of lesions by (sweep, kind, k) in order of first appearance.
std::vector<std::vector<size_t>> groups_of(const std::vector<Lesion>& ls) {
  std::vector<std::vector<size_t>> groups;
  std::map<std::tuple<std::string, std::string, int>, size_t> index;
  for (size_t i = 0; i < ls.size(); ++i) {
    auto key = std::make_tuple(ls[i].sweep, ls[i].kind, ls[i].k);
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = groups.size();
      groups.push_back({i});
    } else {
      groups[it->second].push_back(i);
    }
  }
  return groups;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n ") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string join_ints(const std::vector<int>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + std::to_string(v[i]);
  return s;
}

std::string pct(double e) { return fmt::format("{:6.2f}%", 100.0 * e); }

}  // namespace

nlohmann::json summarize(const LesionResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& g : groups_of(r.lesions)) {
    const Lesion& l0 = r.lesions[g.front()];
    std::vector<double> err, rec, tau;
    for (size_t i : g) {
      err.push_back(r.metrics[i].top1_error());
      if (!r.recalibrated.empty()) rec.push_back(r.recalibrated[i].top1_error());
      tau.push_back(r.lesions[i].kendall_tau);
    }
    nlohmann::json j = {{"sweep", l0.sweep}, {"kind", l0.kind}, {"k", l0.k}, {"count", g.size()}};
    j.update(stats_json(err));
    if (l0.kind == "swap" || l0.kind == "duplicate" || l0.kind == "custom") {
      std::sort(tau.begin(), tau.end());  // summed in sorted order, as the errors are
      j["kendall_tau_mean"] = mean(tau);
    }
    if (!rec.empty()) j["recalibrated"] = stats_json(rec);
    out.push_back(j);
  }
  return out;
}

nlohmann::json to_json(const LesionResult& r, const std::vector<BlockInfo>& blocks,
                       const LesionOptions& o) {
  nlohmann::json j;
  j["baseline"] = r.baseline.to_json();
  j["baseline"]["plan"] = r.base.str();
  if (r.baseline_recalibrated) j["baseline"]["recalibrated"] = short_metrics(*r.baseline_recalibrated);
  nlohmann::json plans = nlohmann::json::array();
  for (size_t i = 0; i < r.lesions.size(); ++i) {
    const Lesion& l = r.lesions[i];
    nlohmann::json p = {{"plan", l.edit.str()}, {"sweep", l.sweep}, {"kind", l.kind}, {"k", l.k},
                        {"blocks", l.blocks}};
    p.update(short_metrics(r.metrics[i]));
    p["delta_top1_error"] = r.metrics[i].top1_error() - r.baseline.top1_error();
    p["kendall_tau"] = tau_json(l.kendall_tau);
    if (l.kind == "swap" || l.kind == "duplicate") {
      nlohmann::json pairs = nlohmann::json::array();
      for (const auto& pr : l.pairs) pairs.push_back({pr.first, pr.second});
      p[l.kind == "swap" ? "pairs" : "replacements"] = pairs;  // duplicate: [position, block run]
    }
    if (l.sweep == "single") {
      const BlockInfo& b = blocks[l.blocks.front() - 1];
      p["stage"] = b.stage;
      p["downsample"] = b.downsample;
    }
    if (l.line > 0) p["line"] = l.line;
    const std::string run = l.plan.str();
    if (run != l.edit.str()) p["run_plan"] = run;  // with the network's residual scales
    if (!r.recalibrated.empty()) p["recalibrated"] = short_metrics(r.recalibrated[i]);
    plans.push_back(p);
  }
  j["plans"] = plans;
  j["summary"] = summarize(r);
  j["engine"] = engine_name(o.engine.engine_);
  j["seconds"] = r.seconds;
  j["engine_seconds"] = r.stats.seconds;
  j["engine_stats"] = r.stats.to_json();
  j["fold_batchnorm"] = o.fold;
  j["channels_last"] = o.channels_last;
  j["precision"] = precision_name(o.precision);
  j["batch_size"] = o.engine.batch_size_;
  j["samples"] = o.samples;
  j["recalibrate_bn"] = o.recalibrate_bn;
  if (o.recalibrate_bn > 0) j["recalibrate_batch_size"] = o.recalibrate_batch_size;
  nlohmann::json bt = nlohmann::json::array();
  for (const auto& b : blocks)
    bt.push_back({{"index", b.index}, {"stage", b.stage}, {"downsample", b.downsample},
                  {"in_shape", b.in_shape}, {"out_shape", b.out_shape}, {"kind", b.kind}});
  j["blocks"] = bt;
  return j;
}

std::string to_csv(const LesionResult& r) {
  const bool rec = !r.recalibrated.empty();
  std::string out = "plan,kind,k,blocks,top1_error,top5_error,loss,correct,n,kendall_tau";
  if (rec) out += ",recal_top1_error,recal_correct";
  out += "\n";
  auto row = [&](const std::string& plan, const std::string& kind, int k, const std::vector<int>& b,
                 const Metrics& m, double tau, const Metrics* rm) {
    out += fmt::format("{},{},{},{},{:.6f},{:.6f},{:.6f},{},{},{}", csv_field(plan), kind, k,
                       csv_field(join_ints(b, " ")), m.top1_error(), m.top5_error(), m.loss(),
                       m.correct, m.n, std::isfinite(tau) ? fmt::format("{:.6f}", tau) : "");
    if (rm) out += fmt::format(",{:.6f},{}", rm->top1_error(), rm->correct);
    out += "\n";
  };
  row(r.base.str(), "intact", 0, {}, r.baseline, 1.0, rec ? &*r.baseline_recalibrated : nullptr);
  for (size_t i = 0; i < r.lesions.size(); ++i) {
    const Lesion& l = r.lesions[i];
    row(l.edit.str(), l.kind, l.k, l.blocks, r.metrics[i], l.kendall_tau,
        rec ? &r.recalibrated[i] : nullptr);
  }
  return out;
}

std::string to_table(const LesionResult& r, const std::vector<BlockInfo>& blocks) {
  const bool rec = !r.recalibrated.empty();
  const double base = r.baseline.top1_error();
  std::string out = fmt::format("baseline ({}): top-1 error {}  top-5 error {}  ({} of {} correct)",
                                r.base.str(), pct(base), pct(r.baseline.top5_error()),
                                r.baseline.correct, r.baseline.n);
  if (rec) out += fmt::format("  recalibrated {}", pct(r.baseline_recalibrated->top1_error()));
  out += "\n";

  std::vector<size_t> single, custom;
  for (size_t i = 0; i < r.lesions.size(); ++i) {
    if (r.lesions[i].sweep == "single") single.push_back(i);
    if (r.lesions[i].sweep == "plans") custom.push_back(i);
  }
  if (!single.empty()) {
    out += "\nsingle-block deletion (* = downsampling block)\n";
    out += fmt::format("{:>5} {:>5} {:>2} {:>22} {:>8} {:>9}{}\n", "block", "stage", "ds", "in -> out",
                       "error", "delta", rec ? "  recalibrated" : "");
    for (size_t i : single) {
      const BlockInfo& b = blocks[r.lesions[i].blocks.front() - 1];
      const double e = r.metrics[i].top1_error();
      out += fmt::format("{:>5} {:>5} {:>2} {:>22} {:>8} {:>+8.2f}%", b.index, b.stage,
                         b.downsample ? "*" : "",
                         shape_string(b.in_shape) + " -> " + shape_string(b.out_shape), pct(e),
                         100.0 * (e - base));
      if (rec) out += fmt::format("  {:>12}", pct(r.recalibrated[i].top1_error()));
      out += "\n";
    }
  }
  const auto summary = summarize(r);
  bool header = false;
  for (const auto& s : summary) {
    const std::string sweep = s["sweep"];
    if (sweep == "single" || sweep == "plans") continue;
    if (!header) {
      out += fmt::format("\n{:<17} {:>3} {:>5} {:>8} {:>8} {:>8} {:>8}{}{}\n", "sweep", "k", "count",
                         "mean", "std", "min", "max", "  tau mean", rec ? "  recal mean" : "");
      header = true;
    }
    out += fmt::format("{:<17} {:>3} {:>5} {:>8} {:>8} {:>8} {:>8}", sweep, s["k"].get<int>(),
                       s["count"].get<size_t>(), pct(s["mean"]), pct(s["std"]), pct(s["min"]),
                       pct(s["max"]));
    out += s.contains("kendall_tau_mean") ? fmt::format("  {:>8.3f}", s["kendall_tau_mean"].get<double>())
                                          : std::string(rec ? "          " : "");
    if (rec) out += fmt::format("  {:>10}", pct(s["recalibrated"]["mean"]));
    out += "\n";
  }
  if (!custom.empty()) {
    out += fmt::format("\n{:>5}  {:>8} {:>9}{}  plan\n", "line", "error", "delta", rec ? "  recalibrated" : "");
    for (size_t i : custom) {
      const double e = r.metrics[i].top1_error();
      out += fmt::format("{:>5}  {:>8} {:>+8.2f}%", r.lesions[i].line, pct(e), 100.0 * (e - base));
      if (rec) out += fmt::format("  {:>12}", pct(r.recalibrated[i].top1_error()));
      out += "  " + r.lesions[i].edit.str() + "\n";
    }
  }
  return out;
}

}  // namespace unravel::lesion
