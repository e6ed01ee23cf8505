// The options of a training run: every field with its default, the closed sets as enums, the JSON
// form recorded in config.json, validation, and the options that define a run (a resume must
// agree on them).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/precision.h"
#include "train/distributed_options.h"

namespace unravel {

// Learning-rate schedule: x gamma at each milestone, a cosine to zero, or constant.
enum class Schedule { Step, Cosine, Constant };
// Stochastic depth draws: one plan per mini-batch, or per image (residual masks).
enum class SdMode { Batch, Sample };
// Test time after k-of-n training: residual branches scaled by k/n, or all at scale 1.
enum class ActiveTest { Scaled, All };

const char* name(Schedule s);    // "step" | "cosine" | "constant"
const char* name(SdMode m);      // "batch" | "sample"
const char* name(ActiveTest a);  // "scaled" | "all"
// Parsed from their names; UserError naming `option` ("schedule", "--schedule") otherwise.
Schedule parse_schedule(const std::string& text, const std::string& option);
SdMode parse_sd_mode(const std::string& text, const std::string& option);
ActiveTest parse_active_test(const std::string& text, const std::string& option);

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
  Schedule schedule = Schedule::Step;       ///< step | cosine | constant
  std::vector<double> milestones = {0.5, 0.75};  ///< step schedule: fractions of the run
  double gamma = 0.1;                       ///< step schedule: factor at each milestone
  double warmup_epochs = 0;                 ///< linear warm-up from lr/10 (fractional epochs ok)
  std::string shortcut;                     ///< A (parameter-free), B (projection), "": the family's
  double stochastic_depth = 0;              ///< p_L of linear-decay stochastic depth; 0 = off
  SdMode sd_mode = SdMode::Batch;           ///< batch: one draw per mini-batch; sample: per image
  int active_blocks = 0;                    ///< k of n blocks active per mini-batch; 0 = off
  ActiveTest active_test = ActiveTest::Scaled;  ///< test time after k-of-n training: scaled | all
  bool augment = true;                      ///< random crop (pad 4) + horizontal flip
  int64_t train_subset = 0;                 ///< first N training images (0 = all)
  int64_t test_subset = 0;                  ///< first N test images (0 = all)
  int64_t val_split = 0;                    ///< hold out N training images for validation
  uint64_t seed = 0;                        ///< fixes init, order, augmentation, sampled plans
  int threads = 0;                          ///< 0 = all cores
  std::string device = "auto";              ///< auto | cpu | cuda
  Precision precision = Precision::FP32;    ///< fp32 | bf16: autocast forward (core/precision.h)
  int log_every = 50;                       ///< steps between metrics.jsonl step records
  int64_t eval_batch_size = 500;            ///< images per evaluation forward
  bool quiet = false;                       ///< no progress lines on stderr
  int stop_after = 0;                       ///< stop after this many epochs in this call (0 = run to
                                            ///< `epochs`); the same command later resumes the run
  // Data-parallel training (train/distributed.h): every rank runs this with the same options
  // but its own rank; each takes a contiguous shard of every mini-batch (--batch-size is the
  // global batch), gradients are averaged by all-reduce, rank 0 writes the run directory.
  DistributedOptions dist;                  ///< world size, this rank, where the ranks meet

  // config.json's "options": every field above but out, quiet, stop_after and the rank. from_json
  // takes the keys present (others keep their defaults); a value of the wrong type or outside
  // its closed set is a UserError naming the option.
  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);
  // UserError naming the flag for a value out of range (the trainer calls it first).
  void validate() const;
};

// The options that define a run: a resume must agree on all of them (epochs may grow).
extern const std::vector<const char*> kRunDefiningOptions;

// What a new --epochs does to the learning rate when `done` epochs of a run planned for `before`
// are trained: the schedule is that of the new total from epoch done+1 on (milestones and the
// cosine are fractions of the run), while the epochs trained keep the rates they had.
std::string epochs_change_rule(const TrainOptions& now, int before, int done);

}  // namespace unravel
