// The lesion study: sweeps -> one engine run -> optional batch-norm recalibration -> reports.
#include "lesion/lesion.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <unordered_map>

#include "core/errors.h"
#include "core/hash.h"
#include "core/stats.h"
#include "core/util.h"

namespace unravel::lesion {

std::vector<Lesion> generate_lesions(const LesionOptions& o, const Plan& base,
                                     const std::vector<BlockInfo>& blocks) {
  const bool random = !o.delete_random.empty() || !o.swap_random.empty() || !o.duplicate_random.empty();
  if (!o.single && !random && o.plans_file.empty())
    throw UserError(
        "nothing to do: give at least one of --single, --delete-random, --swap-random, "
        "--duplicate-random, --plans");
  if (random && o.samples < 1)
    throw UserError(fmt::format("--samples must be at least 1, got {}", o.samples));
  std::vector<Lesion> out;
  auto append = [&](std::vector<Lesion> v) {
    for (auto& l : v) out.push_back(std::move(l));
  };
  if (o.single) append(single_deletions(base, blocks));
  if (!o.delete_random.empty()) {
    auto [lo, hi] = parse_k_range(o.delete_random, "--delete-random");
    append(random_deletions(base, blocks, lo, hi, o.samples, o.seed));
  }
  if (!o.swap_random.empty()) {
    auto [lo, hi] = parse_k_range(o.swap_random, "--swap-random");
    append(random_swaps(base, blocks, lo, hi, o.samples, o.seed));
  }
  if (!o.duplicate_random.empty()) {
    auto [lo, hi] = parse_k_range(o.duplicate_random, "--duplicate-random");
    append(random_duplicates(base, blocks, lo, hi, o.samples, o.seed));
  }
  if (!o.plans_file.empty()) append(plans_from_file(o.plans_file, base, blocks));
  return out;
}

namespace {

// The fingerprint of every parameter and buffer: the progress file belongs to these weights.
std::string weights_fingerprint(const models::Network& net) {
  uint64_t h = kFnvOffset;
  auto feed = [&h](const torch::Tensor& t) {
    const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    h = fnv1a64(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size(), h);
  };
  for (const auto& t : net->parameters()) feed(t);
  for (const auto& t : net->buffers()) feed(t);
  return hex64(h);
}

// What a progress file must agree on to be continued.
nlohmann::json progress_key(const models::Network& net, const std::vector<Plan>& plans, const data::Split& test,
                            const LesionOptions& o) {
  std::vector<std::string> texts;
  for (const auto& p : plans) texts.push_back(p.str());
  return {{"weights", weights_fingerprint(net)},
          {"plans", texts},
          {"images", test.size()},
          {"labels_sum", test.size() ? test.labels.sum().item<int64_t>() : 0},
          {"engine", engine_name(o.engine.engine_)},
          {"batch_size", o.engine.batch_size_},
          {"fold", o.fold},
          {"channels_last", o.channels_last},
          {"recalibrate_bn", o.recalibrate_bn},
          {"recalibrate_batch_size", o.recalibrate_batch_size},
          {"seed", o.seed}};
}

// Whether every count of a progress file's metrics is a JSON integer and its loss a number:
// Metrics::from_counts reads them without a range check.
bool counts_typed(const nlohmann::json& j) {
  if (!j.is_object()) return false;
  for (const char* k : {"n", "correct", "correct5"})
    if (!j.contains(k) || !j[k].is_number_integer()) return false;
  for (const char* k : {"class_n", "class_correct"}) {
    if (!j.contains(k) || !j[k].is_array()) return false;
    for (const auto& v : j[k])
      if (!v.is_number_integer()) return false;
  }
  return j.contains("loss_sum") && j["loss_sum"].is_number();
}

// Why metrics read back cannot be those of `n` images of `num_classes` classes ("" if they can).
std::string impossible_counts(const Metrics& m, int64_t n, int64_t num_classes) {
  if (m.n != n) return fmt::format("counts {} images where {} were done", m.n, n);
  if (m.correct < 0 || m.correct > m.correct5 || m.correct5 > m.n)
    return fmt::format("counts {} correct and {} top-5 correct of {}", m.correct, m.correct5, m.n);
  if (!std::isfinite(m.loss_sum) || m.loss_sum < 0 || (m.n == 0 && m.loss_sum != 0))
    return fmt::format("holds a summed loss of {} for {} images", m.loss_sum, m.n);
  const auto k = static_cast<size_t>(num_classes);
  if (m.class_n.size() != k || m.class_correct.size() != k)
    return fmt::format("counts {} classes where the network has {}", m.class_n.size(), num_classes);
  int64_t sum_n = 0, sum_correct = 0;
  for (size_t c = 0; c < k; ++c) {
    if (m.class_correct[c] < 0 || m.class_correct[c] > m.class_n[c] || m.class_n[c] > n)
      return fmt::format("counts {} correct of {} in class {}", m.class_correct[c], m.class_n[c], c);
    sum_n += m.class_n[c];  // each <= n: no overflow
    sum_correct += m.class_correct[c];
  }
  if (sum_n != m.n || sum_correct != m.correct)
    return fmt::format("per-class counts sum to {} correct of {}, not {} of {}", sum_correct, sum_n, m.correct, m.n);
  return "";
}

// read_progress_file's checks; the reason a file is not used, or "" with `out` filled.
std::string read_counts(const nlohmann::json& j, const nlohmann::json& key, int64_t num_classes, SweepCounts& out) {
  if (!j.is_object() || !j.contains("key") || j["key"] != key) return "was written for another sweep";
  const int64_t images = key.at("images").get<int64_t>(), batch = key.at("batch_size").get<int64_t>();
  const auto& plans = key.at("plans");
  if (!j.contains("engine_done") || !j["engine_done"].is_number_integer()) return "has no image count";
  out.engine_done = j["engine_done"].get<int64_t>();
  if (out.engine_done < 0 || out.engine_done > images || batch < 1 ||
      (out.engine_done % batch != 0 && out.engine_done != images))
    return fmt::format("says {} of {} images were done in batches of {}", out.engine_done, images, batch);
  if (!j.contains("engine") || !j["engine"].is_array() || !j.contains("recalibrated") || !j["recalibrated"].is_object())
    return "lacks the engine or recalibrated counts";
  const auto& e = j["engine"];
  if (e.size() != (out.engine_done > 0 ? plans.size() : 0))
    return fmt::format("holds counts of {} plans where the sweep has {}", e.size(), plans.size());
  for (size_t p = 0; p < e.size(); ++p) {
    if (!counts_typed(e[p])) return fmt::format("has malformed counts for plan {}", p);
    out.engine.push_back(Metrics::from_counts(e[p]));
    const std::string why = impossible_counts(out.engine.back(), out.engine_done, num_classes);
    if (!why.empty()) return fmt::format("plan {} {}", p, why);
  }
  for (const auto& [plan, m] : j["recalibrated"].items()) {
    if (std::find(plans.begin(), plans.end(), plan) == plans.end()) return "has counts of a plan not in the sweep";
    if (!counts_typed(m)) return "has malformed recalibrated counts";
    const Metrics r = Metrics::from_counts(m);
    const std::string why = impossible_counts(r, images, num_classes);
    if (!why.empty()) return "recalibrated plan " + why;
    out.recalibrated.emplace(plan, r);
  }
  return "";
}

}  // namespace

bool read_progress_file(const std::string& path, const nlohmann::json& key, int64_t num_classes, SweepCounts& out) {
  out = SweepCounts{};
  if (path.empty() || !path_exists(path)) return false;
  std::string why;
  try {
    why = read_counts(read_json_file(path), key, num_classes, out);
  } catch (const UserError& e) {  // unreadable, not JSON
    why = e.what();
  } catch (const nlohmann::json::exception& e) {
    why = fmt::format("malformed ({})", e.what());
  }
  if (why.empty()) return true;
  out = SweepCounts{};
  std::cerr << fmt::format("[lesion] {}: {}: not used, the sweep starts over\n", path, elide_middle(why, 160));
  return false;
}

namespace {

// The progress of a sweep: engine images done with the metrics so far, recalibrated plans.
struct SweepProgress {
  std::string path;
  nlohmann::json key;
  int64_t engine_done = 0;
  std::vector<Metrics> engine;
  std::map<std::string, Metrics> recalibrated;  ///< by plan text
  double interval_s = 10;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();

  void load(int64_t num_classes) {
    SweepCounts c;
    if (!read_progress_file(path, key, num_classes, c)) return;
    engine_done = c.engine_done;
    engine = std::move(c.engine);
    recalibrated = std::move(c.recalibrated);
    std::cerr << fmt::format("[lesion] resuming from {}: {} of {} images done, {} plans recalibrated\n", path,
                             engine_done, key["images"].get<int64_t>(), recalibrated.size());
  }
  // Whether a write is due (always when forced); a due write must follow.
  bool due(bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && std::chrono::duration<double>(now - last).count() < interval_s) return false;
    last = now;
    return true;
  }
  void save() {
    nlohmann::json e = nlohmann::json::array(), r = nlohmann::json::object();
    for (const auto& m : engine) e.push_back(m.counts());
    for (const auto& [plan, m] : recalibrated) r[plan] = m.counts();
    write_json_atomic(path, {{"key", key}, {"engine_done", engine_done}, {"engine", e}, {"recalibrated", r}}, -1);
  }
};

// Work summed over ranks; the time stays rank 0's, so GFLOP/s is that of all ranks together.
void allreduce_stats(Communicator& comm, EngineStats& st) {
  torch::Tensor w = torch::tensor({static_cast<double>(st.images), static_cast<double>(st.batches),
                                   static_cast<double>(st.stem_evaluations), static_cast<double>(st.residual_evaluations),
                                   static_cast<double>(st.shortcut_evaluations), static_cast<double>(st.head_evaluations),
                                   st.flops},
                                  torch::kFloat64);
  comm.allreduce_sum(w);
  auto v = w.accessor<double, 1>();
  st.images = std::llround(v[0]), st.batches = std::llround(v[1]), st.stem_evaluations = std::llround(v[2]);
  st.residual_evaluations = std::llround(v[3]), st.shortcut_evaluations = std::llround(v[4]);
  st.head_evaluations = std::llround(v[5]), st.flops = v[6];
}

// Every plan's counts after re-estimating its batch-norm statistics (o.recalibrate_bn batches
// of the training split), into r.baseline_recalibrated and r.recalibrated; each plan resumed from
// and saved to `saved` at once. Equal plans are recalibrated once; the distinct ones are dealt
// out to the ranks in turn.
void recalibrate_plans(const models::Network& net, const std::vector<Plan>& plans, const data::Split& test,
                       const data::Split& train, const data::Normalizer& norm, const LesionOptions& o,
                       const EngineOptions& eo, SweepProgress& saved, Communicator* comm, LesionResult& r) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const auto batches = recalibration_batches(train, norm, o.recalibrate_bn, o.recalibrate_batch_size, o.seed);
  EngineOptions one = eo;
  one.progress("").on_logits(nullptr).on_batch(nullptr).resume_from(0, {});
  std::unordered_map<std::string, size_t> distinct;
  std::vector<size_t> slot(plans.size());
  for (size_t p = 0; p < plans.size(); ++p)
    slot[p] = distinct.emplace(plans[p].str(), distinct.size()).first->second;
  std::vector<Metrics> rec(distinct.size(), Metrics(net->options().num_classes_));
  std::vector<bool> done(distinct.size(), false);
  Progress progress("recalibrate-bn", static_cast<int64_t>(plans.size()), "plans");
  for (size_t p = 0; p < plans.size(); ++p) {
    const size_t d = slot[p];
    if (!done[d] && static_cast<int>(d % static_cast<size_t>(world)) == rank) {
      auto it = saved.recalibrated.find(plans[p].str());
      if (it != saved.recalibrated.end()) {
        rec[d] = it->second;
      } else {
        models::Network cal = recalibrated_copy(net, plans[p], batches);
        models::Network cal_ev = make_eval_copy(cal, o.fold, o.channels_last);
        rec[d] = evaluate_plans(cal_ev, {plans[p]}, test, norm, one)[0];
        saved.recalibrated.emplace(plans[p].str(), rec[d]);
        if (!saved.path.empty()) saved.save();  // each recalibrated plan is kept at once
      }
    }
    done[d] = true;
    if (!o.engine.progress_.empty()) progress.update(static_cast<int64_t>(p + 1));
  }
  if (!o.engine.progress_.empty()) progress.finish();
  if (comm) {  // each plan's counts come from the one rank that computed them
    std::vector<Metrics*> all;
    for (auto& m : rec) all.push_back(&m);
    allreduce_metrics(*comm, all);
  }
  r.baseline_recalibrated = rec[slot[0]];
  for (size_t p = 1; p < plans.size(); ++p) r.recalibrated.push_back(rec[slot[p]]);
}

}  // namespace

LesionResult run_lesion(const models::Network& net, const std::vector<Lesion>& lesions,
                        const data::Split& test, const data::Split& train,
                        const data::Normalizer& norm, const LesionOptions& o, Communicator* comm) {
  const auto t0 = std::chrono::steady_clock::now();
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  LesionResult r;
  r.base = net->default_plan();
  r.lesions = lesions;
  std::vector<Plan> plans{r.base};
  for (const auto& l : lesions) plans.push_back(l.plan);

  SweepProgress saved;
  if (!o.progress_file.empty() && world == 1) {
    saved.path = o.progress_file;
    saved.key = progress_key(net, plans, test, o);
    saved.interval_s = o.progress_interval_s;
    saved.load(net->options().num_classes_);
  }
  models::Network ev = make_eval_copy(net, o.fold, o.channels_last);
  EngineOptions eo = o.engine;
  eo.channels_last(o.channels_last);
  if (saved.engine_done > 0) eo.resume_from(saved.engine_done, saved.engine);
  if (!saved.path.empty())
    eo.on_batch([&saved, total = test.size()](int64_t done, const std::vector<Metrics>& m) {
      if (!saved.due(done == total)) return;  // copies and writes only when a write is due
      saved.engine_done = done;
      saved.engine = m;
      saved.save();
    });
  const auto [first, last] = shard_range(test.size(), rank, world);
  // A file written while recalibrating holds every image's counts: nothing is left to evaluate
  // (the engine resumes only at a whole number of batches, which the last image may not be).
  const bool engine_finished = saved.engine_done > 0 && saved.engine_done == test.size();
  auto metrics = engine_finished
                     ? saved.engine
                     : evaluate_plans(ev, plans, data::slice_split(test, first, last), norm, eo, &r.stats);
  if (comm) {
    std::vector<Metrics*> all;
    for (auto& m : metrics) all.push_back(&m);
    allreduce_metrics(*comm, all);
    allreduce_stats(*comm, r.stats);
  }
  r.baseline = metrics[0];
  r.metrics.assign(metrics.begin() + 1, metrics.end());

  if (o.recalibrate_bn > 0) recalibrate_plans(net, plans, test, train, norm, o, eo, saved, comm, r);
  if (!saved.path.empty()) std::remove(saved.path.c_str());  // the sweep is done
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// ---- reports ----------------------------------------------------------------------------------

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
