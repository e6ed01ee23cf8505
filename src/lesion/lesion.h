// The lesion study of `unravel lesion` (E1-E4, E9, docs/experiments.md): build the plans of the
// requested sweeps, evaluate them all in one engine run, optionally recalibrate batch-norm per
// plan, and report the results as JSON, CSV and a readable table.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "engine/engine.h"
#include "lesion/sweeps.h"
#include "models/network.h"
#include "train/distributed.h"
#include "train/evaluate.h"

namespace unravel::lesion {

struct LesionOptions {
  bool single = false;               ///< --single: every block deleted alone (E1, E2, E9)
  std::string delete_random;         ///< --delete-random K1:K2 (E3); empty: off
  std::string swap_random;           ///< --swap-random K1:K2 (E4); empty: off
  std::string duplicate_random;      ///< --duplicate-random K1:K2; empty: off
  int samples = 10;                  ///< --samples: random plans per k
  std::string plans_file;            ///< --plans FILE; empty: off
  uint64_t seed = 0;                 ///< seed of the random sweeps
  int recalibrate_bn = 0;            ///< --recalibrate-bn N: batches per plan; 0: off
  int64_t recalibrate_batch_size = 128;  ///< images per recalibration batch
  bool fold = true;                  ///< fold batch-norm into the convolutions (--no-fold: off)
  bool channels_last = false;        ///< channels_last activations and weights
  Precision precision = Precision::FP32;  ///< --precision: arithmetic of the evaluation copies
  EngineOptions engine;              ///< engine, batch size, progress label
  /// Progress file (one process only; "" = none): a sweep that finds one written for the same
  /// network, plans, images and options continues from it; it is rewritten atomically at most
  /// every `progress_interval_s` during the sweep and removed when the sweep is done.
  std::string progress_file;
  double progress_interval_s = 10;
};

// The plans of every requested sweep, in the order single, delete-random, swap-random,
// duplicate-random, plans file. UserError when no sweep is requested or a sweep is impossible.
std::vector<Lesion> generate_lesions(const LesionOptions& o, const Plan& base,
                                     const std::vector<BlockInfo>& blocks);

struct LesionResult {
  Plan base;                          ///< the default plan of the network (the baseline)
  std::vector<Lesion> lesions;
  Metrics baseline;
  std::vector<Metrics> metrics;       ///< per lesion
  std::optional<Metrics> baseline_recalibrated;
  std::vector<Metrics> recalibrated;  ///< per lesion, when recalibrating
  EngineStats stats;                  ///< of the engine run (all plans at once)
  double seconds = 0;                 ///< whole study, recalibration included
};

// Evaluates the baseline and every lesion on `test` with one engine run (on an evaluation copy;
// `net` is not modified), then, when o.recalibrate_bn > 0, each plan again on its own copy with
// batch-norm statistics recomputed on training batches of `train`.
// With a communicator of several ranks (all calling this with the same arguments), each rank
// runs the engine on its shard of the test images and recalibrates its share of the distinct
// plans (on all test images); every rank returns the whole result. Engine statistics count
// the work of all ranks over rank 0's time.
LesionResult run_lesion(const models::Network& net, const std::vector<Lesion>& lesions,
                        const data::Split& test, const data::Split& train,
                        const data::Normalizer& norm, const LesionOptions& o,
                        Communicator* comm = nullptr);

// What a sweep's progress file (LesionOptions::progress_file) holds.
struct SweepCounts {
  int64_t engine_done = 0;                      ///< test images every plan has been counted on
  std::vector<Metrics> engine;                  ///< per plan, the baseline first, over those images
  std::map<std::string, Metrics> recalibrated;  ///< by plan text: recalibrated plans, on all test images
};

// Reads the progress file of the sweep `key` (what run_lesion records: weights, plan texts,
// "images", "batch_size", options) of a network with `num_classes` classes. Every count is
// checked: one entry per plan, engine_done in 0..images and a whole number of batches (or all
// images), 0 <= correct <= correct5 <= n, n equal to the images counted, num_classes per-class
// counts with 0 <= class_correct <= class_n summing to correct and n, loss_sum finite and >= 0,
// recalibrated entries named by a plan of the sweep. Returns false when there is nothing usable:
// no file (silently), or after one line on stderr naming the file and the reason (unreadable,
// written for another sweep, a count that cannot be); the sweep then starts over, never with
// counts it cannot trust. Throws nothing for bad files.
bool read_progress_file(const std::string& path, const nlohmann::json& key, int64_t num_classes, SweepCounts& out);

// Mean / std / min / max / median of the top-1 error per (sweep, kind, k), in order of first
// appearance; with "recalibrated" statistics when present. "std" is the sample std (n - 1; 0 for
// one plan; core/stats.h); the std column of to_table is the same.
nlohmann::json summarize(const LesionResult& r);

// {"baseline", "plans", "summary", "engine", "seconds", "engine_stats", "blocks", ...}: see
// `unravel lesion --help`. Fields the caller knows (model, data, seed, threads) are added there.
nlohmann::json to_json(const LesionResult& r, const std::vector<BlockInfo>& blocks,
                       const LesionOptions& o);

// One row per plan, the baseline first (kind "intact", k 0). Columns:
// plan,kind,k,blocks,top1_error,top5_error,loss,correct,n,kendall_tau
// and, when recalibrating, recal_top1_error,recal_correct. Fields are quoted as RFC 4180 asks.
std::string to_csv(const LesionResult& r);

// Human-readable tables for stdout: the single-deletion table (block, stage, downsampling,
// error, change against the baseline), the per-k summary of random sweeps, custom plans.
std::string to_table(const LesionResult& r, const std::vector<BlockInfo>& blocks);

}  // namespace unravel::lesion
