// A run directory (config.json, checkpoint, metrics.jsonl, summary.json) and the ways the
// experiment commands obtain a network: from a trained run, or freshly initialised by seed.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/run_dir.h"
#include "data/dataset.h"
#include "engine/compute.h"
#include "models/network.h"

namespace unravel {

struct LoadedNetwork {
  models::Network net{nullptr};
  data::Normalizer norm;
  std::string data_spec;    // the data set the run was trained on ("" for imported networks)
  RunConfig config;         // config.json of the run (default for a random network)
  std::string run_dir;      // "" for a random network
  CheckpointRef checkpoint; // which weights: epoch and fingerprint of checkpoint.pt
};

// The network a run directory describes, freshly initialised (no weights loaded).
models::Network build_network(const RunConfig& c);
// Reads DIR/config.json and the latest checkpoint, checked against the fingerprint summary.json
// records for it. UserError names the directory or file.
LoadedNetwork load_run(const std::string& dir);
// A randomly initialised network shaped for the data set; the same seed gives the same weights.
LoadedNetwork random_network(const std::string& model, uint64_t seed, const data::Dataset& ds,
                             const std::string& shortcut = "");

// The common "--run DIR | --model NAME --seed S" + "--data" + "--test-subset" of the experiment
// commands: loads the network and the data (the run's data set unless data_spec is given).
struct ExperimentInput {
  std::string run_dir;          ///< trained run (wins over model)
  std::string model;            ///< random network of this name
  uint64_t seed = 0;            ///< seed of the random network
  std::string data_spec;        ///< empty: the run's data set, else fashion-mnist
  std::string shortcut;         ///< for a random network ("": the family's default)
};
struct Experiment {
  LoadedNetwork loaded;
  data::Dataset dataset;
};
Experiment load_experiment(const ExperimentInput& in);

// What every result JSON says about its inputs: {"schema_version", "model", "run", "checkpoint":
// {epoch, fingerprint} (null for a random network), "data", "test_n", "skipped_files" (files of a
// streamed split left out as unreadable), "build"}.
nlohmann::json provenance(const Experiment& ex, const data::Split& test);

}  // namespace unravel
