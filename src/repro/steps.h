// The machinery of a reproduction: its context (options, data, the runs it trained or imported,
// results so far), a table of steps, and the runner that announces each step, reuses a cached
// result when its inputs are unchanged (DIR/steps/ID.json, keyed by a hash of the inputs), and
// prints elapsed time and an estimate of what remains. The tables themselves are in paper.cpp
// (the four trained networks, E1 and E3-E9) and imagenet.cpp (an imported network, E2).
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "lesion/lesion.h"
#include "repro/repro.h"
#include "train/trainer.h"

namespace unravel::repro {

// Bump when the JSON a step produces changes meaning: every cached step is then recomputed.
constexpr int kStepVersion = 1;

// A network of the reproduction: trained (train options) or imported.
struct RunSpec {
  std::string role;  ///< resnet | plain | stochastic | short | imported
  std::string name;  ///< folder under DIR/runs
  TrainOptions train;  ///< train.out is the run directory (imported: only out is used)
};

struct Context {
  ReproOptions opts;
  Preset preset;
  std::string dir, data_spec;
  torch::Device device{torch::kCPU};
  data::Dataset dataset;
  data::Split train, test;
  data::Split sweep_test;  ///< E3/E4: the first random_test_subset test images
  Sizes sizes;
  std::map<std::string, RunSpec> runs;
  std::map<std::string, nlohmann::json> fingerprints;  ///< by role, once trained/imported
  nlohmann::json results = nlohmann::json::object();
  nlohmann::json config = nlohmann::json::object();

  // {"run": name, "epochs": E, "checkpoint": FNV-1a hex of checkpoint.pt}: what a step's
  // result depends on besides its options.
  nlohmann::json fingerprint(const RunSpec& run) const;
  // Inputs of a step on the network of `role`: extra + run fingerprint, data spec, seed.
  nlohmann::json run_inputs(const std::string& role, nlohmann::json extra) const;
  // A lesion study of `run` on `test` (options as given; seed and progress filled in).
  nlohmann::json lesion_study(const RunSpec& run, lesion::LesionOptions lo, const data::Split& test) const;
  // The gradient per path length of `run` on one training batch (bn eval, float32).
  nlohmann::json gradient_study(const RunSpec& run, const std::string& method) const;
};

class StepRunner;

struct StepDef {
  std::string id;       ///< "train.resnet", "E1.resnet", ...
  std::string what;     ///< one line for the progress output
  double expected_s;    ///< rough cost, for the estimate of what remains
  std::function<void(Context&, StepRunner&)> run;
};

class StepRunner {
 public:
  StepRunner(const std::vector<StepDef>& steps, const std::string& dir);
  // Runs every step in order; `after_each` is called after each (partial results.json).
  void run_all(Context& ctx, const std::function<void()>& after_each);
  // For steps: the cached result when DIR/steps/ID.json holds one for these inputs, else
  // compute() stored there. Announces the step and records its status and time.
  nlohmann::json cached_or_compute(const nlohmann::json& inputs, const std::function<nlohmann::json()>& compute);
  // For steps that record themselves (training, import): announce, then finish with a status.
  void announce();
  void finish(const std::string& status, double seconds, double computed_seconds);
  const std::vector<StepRecord>& records() const { return records_; }

 private:
  const std::vector<StepDef>& steps_;
  std::string dir_;
  size_t current_ = 0;
  std::vector<StepRecord> records_;
  std::chrono::steady_clock::time_point t0_, step_t0_;
  double done_expected_ = 0, done_actual_ = 0;  // over computed steps: for the speed factor
};

// A step that runs the lesion study `lo` on the network of `role` (on the sweep subset of the
// test images when `sweep_subset`) and stores it at results[key], or results[key][sub]. `extra`
// names the study's options in the step's cache key.
std::function<void(Context&, StepRunner&)> lesion_step(const std::string& key, const std::string& sub,
                                                       const std::string& role, const nlohmann::json& extra,
                                                       const lesion::LesionOptions& lo, bool sweep_subset);

std::vector<StepDef> paper_steps(Context& ctx);     // paper.cpp; also sets up ctx.runs
std::vector<StepDef> imagenet_steps(Context& ctx);  // imagenet.cpp

double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace unravel::repro
