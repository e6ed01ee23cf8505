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
#include "train/distributed_options.h"

namespace unravel {

struct TrainOptions {
  std::string model = "preresnet20";       ///< model name (models/network.h)
  std::string data = "fashion-mnist";      ///< data spec (data/dataset.h)
  std::string out;                          ///< run directory (required)
  int epochs = 10;                          ///< total epochs; a larger value continues a run
  int64_t batch_size = 128;                 ///< mini-batch size
  double lr = 0.1;                          ///< peak learning rate
  double momentum = 0.9;                    ///< SGD momentum
  bool nesterov = false;                    ///< Nesterov momentum
  double weight_decay = 1e-4;               ///< L2 penalty added to the gradient
  std::string schedule = "step";            ///< step | cosine | constant
  std::vector<double> milestones = {0.5, 0.75};  ///< step schedule: fractions of the run
  double gamma = 0.1;                       ///< step schedule: factor at each milestone
  double warmup_epochs = 0;                 ///< linear warm-up from lr/10 (fractional epochs ok)
  std::string shortcut;                     ///< A (parameter-free), B (projection), "": the family's
  double stochastic_depth = 0;              ///< p_L of linear-decay stochastic depth; 0 = off
  std::string sd_mode = "batch";            ///< batch: one draw per mini-batch; sample: per image
  int active_blocks = 0;                    ///< k of n blocks active per mini-batch; 0 = off
  std::string active_test = "scaled";       ///< test time after k-of-n training: scaled | all
  bool augment = true;                      ///< random crop (pad 4) + horizontal flip
  int64_t train_subset = 0;                 ///< first N training images (0 = all)
  int64_t test_subset = 0;                  ///< first N test images (0 = all)
  int64_t val_split = 0;                    ///< hold out N training images for validation
  uint64_t seed = 0;                        ///< fixes init, order, augmentation, sampled plans
  int threads = 0;                          ///< 0 = all cores
  std::string device = "auto";              ///< auto | cpu | cuda
  int log_every = 50;                       ///< steps between metrics.jsonl step records
  int64_t eval_batch_size = 500;            ///< images per evaluation forward
  bool quiet = false;                       ///< no progress lines on stderr
  int stop_after = 0;                       ///< stop after this many epochs in this call (0 = run to
                                            ///< `epochs`); the same command later resumes the run
  // Data-parallel training (train/distributed.h): every rank runs this with the same options
  // but its own rank; each takes a contiguous shard of every mini-batch (--batch-size is the
  // global batch), gradients are averaged by all-reduce, rank 0 writes the run directory.
  DistributedOptions dist;                  ///< world size, this rank, where the ranks meet

  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);
};

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
