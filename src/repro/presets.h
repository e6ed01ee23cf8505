// The presets of `unravel repro`: what each reproduction computes (networks, data, schedules,
// samples per experiment) and the quantities derived from the network's size. Torch-free.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace unravel::repro {

// One row of the preset table: everything that decides what a reproduction computes.
enum class PresetKind {
  Paper,     ///< train the four networks of the paper, then E1 and E3-E9 on them
  ImageNet,  ///< import a pretrained network and run E2 (single deletions), E3, E4, E6 on it
};

struct Preset {
  std::string name;     ///< smoke | quick | paper | full | imagenet
  PresetKind kind = PresetKind::Paper;
  std::string purpose;  ///< one line for --list-presets
  std::string model;    ///< the pre-activation ResNet
  std::string plain_model;  ///< the plain control (empty: plainN of the ResNet's depth)
  std::string data;     ///< default data set (--data overrides)
  int epochs = 1;       ///< training epochs of every network
  int64_t batch_size = 128;
  double lr = 0.1;                          ///< peak learning rate (step schedule, /10 at milestones)
  double plain_lr = 0.1;                    ///< the same for the plain control (a deep plain net
                                            ///< does not start learning at 0.1 in a short run)
  std::vector<double> milestones{0.5, 0.75};
  double warmup_epochs = 0;                 ///< linear warm-up from lr/10
  int64_t train_subset = 0;                 ///< first N training images (0 = all)
  int64_t test_subset = 0;                  ///< first N test images of every evaluation (0 = all)
  int lesion_samples = 1;                   ///< E3 / E4: random sets per k
  int64_t random_test_subset = 0;           ///< E3 / E4: first N test images (0 = all of them)
  int recalibrate_batches = 50;             ///< E7: batches of 128 training images that re-estimate
                                            ///< batch-norm statistics under the test-time plan
  std::string e7_rule = "scaled";           ///< E7's reported test-time rule: scaled | all
  bool e7_recalibrate = false;              ///< E7 reports re-estimated statistics
  int64_t grad_samples = 1;                 ///< E6 sample: random paths per length
  int64_t grad_batch = 32;                  ///< E6: images of the one training batch
  int sign_samples = 16;                    ///< E6 exact: random-sign draws
  double budget_s = 0;                      ///< target wall time on 2 idle cores (0 = none)
  int threads = 0;                          ///< CPU threads unless --threads is given (0 = all cores)

  nlohmann::json to_json() const;
};

// The table (smoke, quick, paper, full, imagenet).
const std::vector<Preset>& presets();
// UserError naming --preset for an unknown name.
const Preset& find_preset(const std::string& name);
// The table as aligned text, for --list-presets and --help.
std::string presets_table();

// Quantities derived from the preset and the network size n (blocks of the ResNet).
struct Sizes {
  int n = 0;                   ///< residual blocks
  int active_blocks = 0;       ///< E7: round(23/54 n), at least 1
  double stochastic_depth = 0.5;  ///< E9: p_L of linear decay
  int delete_k_max = 1;        ///< E3: k = 1..~n/2
  int swap_k_max = 0;          ///< E4: k = 1..~n/3 (capped by the disjoint same-shape pairs; 0 = none)
  std::vector<int> deleted;    ///< E8: d = 1, 10, 20 clipped below n, deduplicated
  int x = 11;                  ///< E8: path length, 11 scaled to n (11 of 54)

  nlohmann::json to_json() const;
};
// swap_pairs: disjoint pairs of same-shape blocks available (E4 cap).
Sizes derive_sizes(int n, int swap_pairs);

}  // namespace unravel::repro
