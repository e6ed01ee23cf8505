// Training of the model families on a data set into a run directory: SGD with momentum,
// step/cosine schedules with warm-up, stochastic depth and short-path (k active blocks)
// training, atomic checkpoints and exact resumption.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/plan.h"
#include "core/random.h"
#include "train/options.h"

namespace unravel {

struct TrainSummary {
  int epochs_done = 0;
  double test_error = 1, best_val_error = 1;
  int best_val_epoch = 0;
  double seconds = 0;
  nlohmann::json json;  // what summary.json holds
};

// Trains into opts.out, resuming from its checkpoint when the directory holds the same run.
// Throws UserError for bad options, a directory that holds a different run, or a loss that
// became NaN/inf (the last good checkpoint is kept).
TrainSummary train(const TrainOptions& opts);

// Learning rate at fractional epoch t of a run of `epochs` epochs.
double learning_rate(const TrainOptions& o, double t);

// Sampling of training-time plans. Block l of n (1-based) survives with
// p_l = 1 - l/n (1 - p_L) (Huang et al. 2016, linear decay).
std::vector<double> survival_probabilities(int n, double p_last);
// Stochastic depth, one draw per mini-batch: blocks that are dropped run their shortcut only.
Plan sample_stochastic_depth(int n, double p_last, Rng& rng);
// Exactly k of n blocks active, chosen uniformly; the others run their shortcut only.
Plan sample_active_blocks(int n, int k, Rng& rng);
// The generator of an epoch's sampled training plans (its own stream of the seed).
Rng training_plan_rng(uint64_t seed, int epoch);
// Test-time residual scales of a trained run (empty: all 1).
std::vector<double> test_time_scales(const TrainOptions& o, int n_blocks);

}  // namespace unravel
