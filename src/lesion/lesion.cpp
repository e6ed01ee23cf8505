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
          {"precision", precision_name(o.precision)},
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
        models::Network cal_ev = make_eval_copy(cal, o.fold, o.channels_last, o.precision);
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
  models::Network ev = make_eval_copy(net, o.fold, o.channels_last, o.precision);
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

}  // namespace unravel::lesion
