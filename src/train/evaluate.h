// Test-set evaluation of a network under a plan: top-1/top-5 error, loss, per-class error.
// One evaluation path for every command: the engine of engine/engine.h.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

#include "core/plan.h"
#include "core/precision.h"
#include "data/dataset.h"
#include "engine/metrics.h"
#include "models/network.h"

namespace unravel {

struct EvalOptions {
  int64_t batch_size = 500;       ///< images per forward pass (on the network's device)
  bool progress = false;          ///< rate/ETA lines on stderr
  Precision precision = Precision::FP32;  ///< arithmetic of the evaluation copy (core/precision.h)
  /// called with the logits (B, classes) of the batch that starts at position `first`
  std::function<void(int64_t first, const torch::Tensor& logits)> on_logits;
};

// The plan through the evaluation engine (engine/engine.h: a sweep of one plan, on an eval copy
// with batch norm folded), so that `eval`, `lesion` and training agree to the last digit.
Metrics evaluate(models::Network& net, const Plan& plan, const data::Split& split,
                 const data::Normalizer& norm, const EvalOptions& opts = {});

}  // namespace unravel
