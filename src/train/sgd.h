// SGD with momentum and weight decay written out, so that the momentum buffers are named (and
// checkpointed, and resumed exactly): the update of torch.optim.SGD with dampening 0.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "train/checkpoint.h"

namespace unravel {

struct SgdOptions {
  double momentum = 0.9;      ///< 0: plain SGD
  double weight_decay = 1e-4; ///< L2 penalty added to the gradient
  bool nesterov = false;      ///< Nesterov momentum
};

// d = g + wd p; buf = d (first step), buf = m buf + d; step = nesterov ? d + m buf : buf;
// p -= lr step. Parameters without a gradient in a step (blocks a sampled plan skipped) are
// left alone, buffers included.
class Sgd {
 public:
  Sgd(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, SgdOptions o);
  void zero_grad();
  void step(double lr);
  void save(TensorMap& m) const;                         // "momentum.<name>"
  void load(const TensorMap& m, torch::Device device);   // the buffers a checkpoint holds

 private:
  SgdOptions o_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::map<std::string, torch::Tensor> buf_;
};

}  // namespace unravel
