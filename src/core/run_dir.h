// The run directory, the unit every command takes: a network made by `unravel train` or
// `unravel import`, with what it is and how it did. This file owns the schema; the trainer, the
// importer, run loading, repro and the report read and write through it. Torch-free.
//
//   DIR/config.json    what the run is: RunConfig (below)
//   DIR/checkpoint.pt  the weights (and optimiser state) of the last finished epoch: a zip
//                      archive that PyTorch's torch.load reads (train/checkpoint.h)
//   DIR/summary.json   the results of that epoch and the checkpoint's fingerprint
//   DIR/metrics.jsonl  one JSON object a line: {"type":"step",...} and {"type":"epoch",...}
//   DIR/.lock          held by the one process that writes the directory (core/run_lock.h)
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/run_lock.h"

namespace unravel {

constexpr int kRunSchemaVersion = 1;

struct NetworkConfig {
  int64_t in_channels = 0, height = 0, width = 0, num_classes = 0;
  std::string shortcut;        ///< "A" or "B"
  int num_blocks = 0;
  int64_t num_parameters = 0;
};

struct RunConfig {
  int schema_version = kRunSchemaVersion;
  std::string command;                   ///< "train" | "import"
  std::string model;                     ///< architecture name (models/network.h)
  std::string data;                      ///< data spec of training ("" for imported networks)
  uint64_t seed = 0;
  nlohmann::json options = nlohmann::json::object();  ///< the command's options as run
  NetworkConfig network;
  std::vector<double> mean, std;         ///< "normalizer": per-channel, in [0, 1] units
  std::vector<double> residual_scales;   ///< test-time residual scales (empty: all 1)
  std::vector<std::string> class_names;
  nlohmann::json sizes = nlohmann::json::object();     ///< train: {"train","val","test"} images
  nlohmann::json source = nlohmann::json::object();    ///< import: {"file","format","fingerprint",...}
  nlohmann::json versions = nlohmann::json::object();  ///< build_info() and the libtorch version
  int threads = 0, world_size = 1;
  std::string device, created, updated;
};
void to_json(nlohmann::json& j, const RunConfig& c);
// Throws nlohmann::json::exception for missing fields or wrong types (RunDirectory names the file).
void from_json(const nlohmann::json& j, RunConfig& c);

// Which checkpoint a result came from: results and summaries carry {"epoch", "fingerprint"}.
struct CheckpointRef {
  int epoch = 0;
  std::string fingerprint;  ///< file_fingerprint() of checkpoint.pt (core/hash.h)
  nlohmann::json to_json() const { return {{"epoch", epoch}, {"fingerprint", fingerprint}}; }
};

class RunDirectory {
 public:
  explicit RunDirectory(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/config.json"; }
  std::string checkpoint_path() const { return dir_ + "/checkpoint.pt"; }
  std::string summary_path() const { return dir_ + "/summary.json"; }
  std::string metrics_path() const { return dir_ + "/metrics.jsonl"; }

  bool has_config() const;
  bool has_checkpoint() const;
  // UserError naming the file: missing, unreadable, or a field missing or of the wrong type.
  RunConfig read_config() const;
  void write_config(const RunConfig& c) const;  // atomic
  // summary.json, or an empty object when there is none yet. UserError when it is not an object.
  nlohmann::json read_summary() const;
  // Atomic; `summary` gets "schema_version" and "checkpoint" (the ref given).
  void write_summary(nlohmann::json summary, const CheckpointRef& checkpoint) const;
  // The checkpoint as the summary records it, checked against the file. `consistent` is false
  // when the file's fingerprint is not the recorded one (a crash between the checkpoint and the
  // summary write, or a file changed since); `epoch` is then the summary's.
  struct CheckpointState {
    CheckpointRef ref;        ///< the file's fingerprint, the summary's epoch
    bool consistent = false;  ///< the summary describes this file
    bool recorded = false;    ///< the summary records a checkpoint at all
  };
  CheckpointState checkpoint_state() const;
  // Creates the directory, takes its lock (UserError naming the holder when another process has
  // it) and removes temp files that dead writers left.
  RunLock open_for_writing(const std::string& what) const;

 private:
  std::string dir_;
};

}  // namespace unravel
