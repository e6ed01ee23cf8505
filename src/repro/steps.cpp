// The step runner and the studies steps share (see steps.h).
#include "repro/steps.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "core/errors.h"
#include "core/hash.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "paths/gradients.h"
#include "train/run.h"

namespace unravel::repro {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- the runner ------------------------------------------------------------------------------

StepRunner::StepRunner(const std::vector<StepDef>& steps, const std::string& dir) : steps_(steps), dir_(dir) {}

void StepRunner::run_all(Context& ctx, const std::function<void()>& after_each) {
  t0_ = Clock::now();
  for (current_ = 0; current_ < steps_.size(); ++current_) {
    steps_[current_].run(ctx, *this);
    after_each();
  }
}

void StepRunner::announce() {
  step_t0_ = Clock::now();
  std::cerr << fmt::format("[repro] step {}/{} {}: {}\n", current_ + 1, steps_.size(), steps_[current_].id,
                           steps_[current_].what);
}

void StepRunner::finish(const std::string& status, double seconds, double computed_seconds) {
  const StepDef& s = steps_[current_];
  records_.push_back({s.id, status, seconds, computed_seconds});
  if (status != "cached") {
    done_expected_ += s.expected_s;
    done_actual_ += seconds;
  }
  // Remaining: the estimates of the steps left, scaled by the speed seen so far.
  const double speed = done_expected_ > 1 ? std::clamp(done_actual_ / done_expected_, 0.2, 5.0) : 1.0;
  double left = 0;
  for (size_t j = current_ + 1; j < steps_.size(); ++j) left += steps_[j].expected_s;
  const size_t steps_left = steps_.size() - current_ - 1;
  std::cerr << fmt::format(
      "[repro] step {}/{} {}: {} in {}{} · elapsed {} · {}\n", current_ + 1, steps_.size(), s.id, status,
      format_duration(seconds),
      status == "cached" && computed_seconds > 0
          ? fmt::format(" (computed earlier in {})", format_duration(computed_seconds))
          : std::string(),
      format_duration(seconds_since(t0_)),
      steps_left == 0 ? std::string("done")
                      : fmt::format("{} step(s) left, about {} if none is cached", steps_left,
                                    format_duration(left * speed)));
}

json StepRunner::cached_or_compute(const json& inputs_in, const std::function<json()>& compute) {
  announce();
  const StepDef& s = steps_[current_];
  json inputs = inputs_in;
  inputs["step"] = s.id;
  inputs["version"] = kStepVersion;
  const std::string key = fnv1a_hex(inputs.dump());
  const std::string path = dir_ + "/steps/" + s.id + ".json";
  if (path_exists(path)) {
    json cached;
    try {
      cached = read_json_file(path);
    } catch (const UserError&) {
      cached = json();  // unreadable (e.g. hand-edited): recompute
    }
    if (cached.is_object() && cached.value("key", std::string()) == key && cached.contains("result")) {
      finish("cached", seconds_since(step_t0_), cached.value("seconds", 0.0));
      return cached.at("result");
    }
  }
  json result = compute();
  const double secs = seconds_since(step_t0_);
  write_json_atomic(path, {{"schema_version", kRunSchemaVersion}, {"id", s.id}, {"key", key}, {"inputs", inputs}, {"seconds", secs},
                           {"finished", iso_time_now()}, {"result", result}});
  finish("computed", secs, secs);
  return result;
}

std::function<void(Context&, StepRunner&)> lesion_step(const std::string& key, const std::string& sub,
                                                       const std::string& role, const json& extra,
                                                       const lesion::LesionOptions& lo, bool sweep_subset) {
  return [=](Context& c, StepRunner& r) {
    const data::Split& on = sweep_subset ? c.sweep_test : c.test;
    json inputs = extra;
    inputs["test_n"] = on.size();
    json result = r.cached_or_compute(c.run_inputs(role, inputs), [&] { return c.lesion_study(c.runs.at(role), lo, on); });
    if (sub.empty()) c.results[key] = std::move(result);
    else c.results[key][sub] = std::move(result);
  };
}

// ---- shared studies --------------------------------------------------------------------------

json Context::fingerprint(const RunSpec& run) const {
  const RunDirectory rd(run.train.out);
  const std::string fp = file_fingerprint(rd.checkpoint_path());  // "fnv1a64:<hex>"
  return {{"run", run.name},
          {"epochs", rd.read_summary().value("epochs", 0)},
          {"checkpoint", fp.substr(fp.find(':') + 1)}};
}

json Context::run_inputs(const std::string& role, json extra) const {
  extra["run"] = fingerprints.at(role);
  extra["data"] = data_spec;
  extra["seed"] = opts.seed;
  return extra;
}

json Context::lesion_study(const RunSpec& run, lesion::LesionOptions lo, const data::Split& on) const {
  LoadedNetwork loaded = load_run(run.train.out);
  models::Network net = loaded.net;
  net->to(device);
  lo.seed = opts.seed;
  if (!opts.quiet) lo.engine.progress("lesion " + run.role);
  const auto& blocks = net->block_infos();
  const auto lesions = lesion::generate_lesions(lo, net->default_plan(), blocks);
  const lesion::LesionResult r = lesion::run_lesion(net, lesions, on, train, loaded.norm, lo);
  json j = lesion::to_json(r, blocks, lo);
  j["model"] = net->spec().name;
  j["run"] = "runs/" + run.name;
  j["checkpoint"] = loaded.checkpoint.to_json();
  j["data"] = data_spec;
  j["test_n"] = on.size();
  j["seed"] = opts.seed;
  j["threads"] = at::get_num_threads();
  return j;
}

json Context::gradient_study(const RunSpec& run, const std::string& method) const {
  LoadedNetwork loaded = load_run(run.train.out);
  models::Network net = loaded.net;
  // float32 for both methods: libtorch's CPU convolutions in float64 take a slow path (~20x on
  // preresnet56), and float32 keeps the built-in check of the exact method (sum over lengths =
  // the ordinary gradient) near 1e-7. `unravel gradients --dtype float64` is there for more.
  const torch::ScalarType dtype = torch::kFloat32;
  net->to(device, dtype);
  data::LoaderOptions lo;
  lo.batch_size = preset.grad_batch;
  lo.shuffle = true;
  lo.augment = false;
  lo.seed = opts.seed;
  data::Loader loader(train, loaded.norm, lo, /*epoch=*/0);
  data::Batch batch;
  if (!loader.next(batch)) throw UserError("--data " + data_spec + ": the training set is empty");
  paths::GradientOptions go;
  go.bn = paths::BnMode::Eval;
  go.samples = preset.grad_samples;
  go.sign_samples = preset.sign_samples;
  go.seed = opts.seed;
  go.progress = !opts.quiet;
  const auto t0 = Clock::now();
  paths::GradientResult r =
      paths::gradients_by_method(paths::parse_gradient_method(method), net, batch.images.to(device, dtype), batch.labels.to(device), go);
  r.seconds = seconds_since(t0);
  json j = paths::to_json(r);
  j["model"] = net->spec().name;
  j["run"] = "runs/" + run.name;
  j["checkpoint"] = loaded.checkpoint.to_json();
  j["data"] = data_spec;
  j["split"] = "train";
  j["dtype"] = "float32";
  j["seed"] = opts.seed;
  if (method == "sample") j["samples"] = preset.grad_samples;
  if (method == "exact") j["sign_samples"] = preset.sign_samples;
  return j;
}

}  // namespace unravel::repro
