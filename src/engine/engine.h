// The evaluation engine (docs/design.md, "The evaluation engine"): all plans of a sweep evaluated
// batch by batch as a prefix tree (shared prefixes computed once), on an evaluation copy with
// batch-norm folded into the convolutions, under inference mode; and the plain reference engine
// (one full forward per plan) that must give bit-identical logits on the same copy.
// Also: batch-norm recalibration under a plan, and conv/linear FLOP counts.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/plan.h"
#include "core/precision.h"
#include "data/dataset.h"
#include "models/network.h"
#include "engine/metrics.h"

namespace unravel {

enum class Engine { Prefix, Reference };
Engine parse_engine(const std::string& name);  // "prefix" | "reference"; UserError otherwise
const char* engine_name(Engine e);

// A trie over plan steps. Node 0 is the root (the stem output); every other node is one step
// applied to its parent's output. Plans that agree on their first j steps share j nodes; equal
// plans end on the same node.
class PlanTrie {
 public:
  struct Node {
    Step step;                   ///< the step that produces this node's activation (not for root)
    int depth = 0;               ///< steps from the root
    std::vector<int> children;   ///< node ids
    std::vector<size_t> plans;   ///< plans that end here (the head runs on this activation)
  };
  explicit PlanTrie(const std::vector<Plan>& plans);
  const std::vector<Node>& nodes() const { return nodes_; }
  size_t num_plans() const { return num_plans_; }
  int64_t residual_steps() const;  ///< nodes whose step runs a residual branch (not deleted)
  int64_t deleted_steps() const;   ///< nodes whose step runs the shortcut only
  int64_t leaves() const;          ///< nodes where at least one plan ends (head evaluations)
  int max_depth() const;           ///< activations held at once during the walk (plus the root)

 private:
  std::vector<Node> nodes_;
  size_t num_plans_ = 0;
};

struct EngineOptions {
  EngineOptions() = default;
  /// prefix tree (default) or one full forward per plan
  EngineOptions& engine(Engine v) { engine_ = v; return *this; }
  /// images per batch; every plan sees the same batches in both engines
  EngineOptions& batch_size(int64_t v) { batch_size_ = v; return *this; }
  /// feed the network channels_last inputs (the copy's weights should match, see make_eval_copy)
  EngineOptions& channels_last(bool v) { channels_last_ = v; return *this; }
  /// rate/ETA lines on stderr under this label (empty: silent)
  EngineOptions& progress(std::string label) { progress_ = std::move(label); return *this; }
  /// called with the logits (B, classes) of plan p for the batch that starts at image `first`
  EngineOptions& on_logits(std::function<void(size_t p, int64_t first, const torch::Tensor&)> f) {
    on_logits_ = std::move(f);
    return *this;
  }
  /// resume: start at image `first` (a multiple of the batch size) with these metrics per plan
  EngineOptions& resume_from(int64_t first, std::vector<Metrics> metrics) {
    resume_first_ = first;
    resume_metrics_ = std::move(metrics);
    return *this;
  }
  /// called after every batch with the images done and the metrics so far (for progress files)
  EngineOptions& on_batch(std::function<void(int64_t done, const std::vector<Metrics>&)> f) {
    on_batch_ = std::move(f);
    return *this;
  }

  Engine engine_ = Engine::Prefix;
  int64_t batch_size_ = 250;
  bool channels_last_ = false;
  std::string progress_;
  std::function<void(size_t, int64_t, const torch::Tensor&)> on_logits_;
  int64_t resume_first_ = 0;
  std::vector<Metrics> resume_metrics_;
  std::function<void(int64_t, const std::vector<Metrics>&)> on_batch_;
};

// What an engine run computed, summed over batches (per image for the FLOP model).
struct EngineStats {
  int64_t images = 0, batches = 0;
  int64_t stem_evaluations = 0;      ///< per batch: 1 (prefix) or one per plan (reference)
  int64_t residual_evaluations = 0;  ///< block steps with the residual branch
  int64_t shortcut_evaluations = 0;  ///< deleted block steps (shortcut only)
  int64_t head_evaluations = 0;
  double flops = 0;    ///< conv + linear FLOPs actually computed (multiply-add = 2)
  double seconds = 0;  ///< wall time of the run
  double data_seconds = 0;  ///< of which waiting for images (decoding of streamed splits)
  nlohmann::json to_json() const;
};

// Per-image conv and linear FLOPs of each part of a network (multiply-add = 2).
struct FlopModel {
  double stem = 0, head = 0;
  std::vector<double> residual;  ///< (n+1) by block index; [0] unused
  std::vector<double> shortcut;  ///< (n+1) projection shortcut (type B) or 0
  double step(const Step& s) const { return s.deleted ? shortcut[s.block] : residual[s.block] + shortcut[s.block]; }
  double plan(const Plan& p) const;  ///< one full forward under p
};
FlopModel count_flops(models::Network& net);

// Precision (FP32, BF16): core/precision.h.

// A deep copy for evaluation: eval mode, batch-norm folded (unless fold is false), conv weights
// in channels_last (if asked, and always for BF16), in the given precision. The original is
// untouched.
models::Network make_eval_copy(const models::Network& net, bool fold, bool channels_last = false,
                               Precision precision = Precision::FP32);

// Evaluates every plan on every image of `split`. The network is used as given (pass an eval
// copy); all plans are validated against it first. Results are in the order of `plans`.
std::vector<Metrics> evaluate_plans(models::Network& net, const std::vector<Plan>& plans,
                                    const data::Split& split, const data::Normalizer& norm,
                                    const EngineOptions& opts = {}, EngineStats* stats = nullptr);

// ---- batch-norm recalibration (--recalibrate-bn N) ------------------------------------------

// Running statistics set to mean 0 / variance 1, counters to 0, momentum to "cumulative average"
// (libtorch's momentum = None), for every BatchNorm2d of the network.
void reset_batchnorm_statistics(models::Network& net);

// N batches of `batch_size` training images, shuffled by `seed`, not augmented (wraps over
// epochs when N batches exceed one epoch). The same batches serve every plan.
std::vector<torch::Tensor> recalibration_batches(const data::Split& train,
                                                 const data::Normalizer& norm, int n_batches,
                                                 int64_t batch_size, uint64_t seed);

// A fresh copy of `net` (unfolded weights) whose batch-norm statistics are recomputed under
// `plan` as the cumulative average over `batches` (train-mode forward, no gradients). Blocks the
// plan deletes keep reset statistics (they never run); a block used twice averages both uses.
// Returned in eval mode, unfolded.
models::Network recalibrated_copy(const models::Network& net, const Plan& plan,
                                  const std::vector<torch::Tensor>& batches);

}  // namespace unravel
