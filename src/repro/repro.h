// `unravel repro`: the paper end to end (docs/experiments.md). The paper presets train the four
// networks of the paper (pre-activation ResNet, its plain control, stochastic depth, short-path
// training) into DIR/runs/ and run E1 and E3-E9 on them; the imagenet preset imports a pretrained
// network and runs E2-E4 and E6 on an image folder. Results go to DIR/results.json, with a verdict
// per experiment (reproduced or not, by a stated rule), and DIR/report/index.html. Steps are
// cached: a finished run is not trained again, and a step whose inputs (options + the weights)
// are unchanged is loaded from DIR/steps/ID.json.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "repro/presets.h"

namespace unravel::repro {

struct ReproOptions {
  std::string preset = "quick";  ///< --preset
  std::string out;               ///< --out DIR (required)
  std::string data;              ///< --data: overrides the preset's data set (empty: keep)
  uint64_t seed = 0;             ///< --seed: weights, batches, sampled plans and paths
  int threads = -1;              ///< --threads: 0 = all cores, -1 = the preset's default
  std::string device = "auto";   ///< --device auto|cpu|cuda (training, lesions, gradients)
  bool quiet = false;            ///< only the step lines on stderr (no per-step progress)
  bool report = true;            ///< draw DIR/report (gnuplot)
  std::string weights;           ///< --weights FILE: the network of --preset imagenet
  std::string arch;              ///< --arch NAME: its architecture
  int64_t test_subset = -1;      ///< --test-subset N: test images (0 = all, -1 = the preset's)
};

struct StepRecord {
  std::string id;           ///< "train.resnet", "E1.resnet", ...
  std::string status;       ///< computed | cached | trained | resumed
  double seconds = 0;       ///< wall time in this invocation
  double computed_seconds = 0;  ///< wall time of the computation that produced the result
};

struct ReproResult {
  nlohmann::json results;         ///< what DIR/results.json holds
  std::vector<StepRecord> steps;  ///< in execution order
  std::string results_path;       ///< DIR/results.json
  std::string report_index;       ///< DIR/report/index.html ("" when report is false)
  double seconds = 0;             ///< whole invocation
};

// Runs (or resumes) the reproduction. UserError for a bad preset, data set, device, or an --out
// that holds a reproduction with another preset, data set or seed.
ReproResult run_repro(const ReproOptions& options);

// Our numbers beside the paper's (report::compare_with_paper), as an aligned text table.
std::string summary_table(const nlohmann::json& results);


}  // namespace unravel::repro
