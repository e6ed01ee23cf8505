// Residual networks as `stem -> blocks[1..n] -> head`, run under an execution plan (core/plan.h).
// resnetN (post-activation), preresnetN (pre-activation), plainN (no skips: the control of E1),
// N = 6n+2 with 16/32/64 channels; torchvision's ImageNet ResNets (resnet18/34/50/101/152,
// wide_resnet50_2/101_2, resnext50_32x4d/101_32x8d/101_64x4d) and resnet200, preresnet50-200.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "core/block_info.h"
#include "core/plan.h"
#include "models/spec.h"

namespace unravel::models {

struct NetworkOptions {
  NetworkOptions() = default;
  explicit NetworkOptions(std::string model) : model_(std::move(model)) {}
  /// model name, see ModelSpec
  NetworkOptions& model(std::string v) { model_ = std::move(v); return *this; }
  /// input channels (1 for Fashion-MNIST, 3 for CIFAR)
  NetworkOptions& in_channels(int64_t v) { in_channels_ = v; return *this; }
  /// input height and width (shapes in the block table follow from them)
  NetworkOptions& input_size(int64_t h, int64_t w) { height_ = h; width_ = w; return *this; }
  NetworkOptions& num_classes(int64_t v) { num_classes_ = v; return *this; }
  /// "A" (subsample + zero channels, no parameters), "B" (1x1 conv + BN), "" (the family's:
  /// A for the CIFAR families, B for the ImageNet ones, as in torchvision)
  NetworkOptions& shortcut(std::string v) { shortcut_ = std::move(v); return *this; }

  std::string model_ = "preresnet20";
  int64_t in_channels_ = 3, height_ = 32, width_ = 32, num_classes_ = 10;
  std::string shortcut_;
};

// Per-sample extras for one step of a plan (training with per-sample stochastic depth, and the
// batched path sampling of E6). Undefined tensors mean "not used".
struct StepExtras {
  torch::Tensor residual_mask;   // (B) float: forward multiplies the residual branch per sample
  torch::Tensor grad_residual;   // (B) float 0/1: backward multiplies the residual gradient
  torch::Tensor grad_shortcut;   // (B) float 0/1: backward multiplies the shortcut gradient
};

// One block: y = post(shortcut(x) + residual(x)); plain blocks: y = post(residual(x)), and the
// shortcut is used only when the block is deleted.
class BlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor residual(const torch::Tensor& x) = 0;
  virtual torch::Tensor shortcut(const torch::Tensor& x) = 0;
  virtual torch::Tensor post(const torch::Tensor& y) { return y; }
  virtual bool post_is_relu() const { return false; }
  bool has_skip() const { return has_skip_; }
  const BlockInfo& info() const { return info_; }
  // Fold every conv->BN pair of this block into the conv (evaluation only; not reversible).
  virtual void fold_batchnorm() = 0;
  // The two branches under one plan step, the one definition the forward (run) and the gradient
  // tape (paths/path_engines.cpp) share: shortcut(x) where the block has a skip connection or is
  // deleted (else undefined); residual(x) times the step's residual scale (undefined when deleted).
  struct Branches {
    torch::Tensor shortcut, residual;
  };
  Branches branches(const torch::Tensor& x, const Step& step);
  // What post() is applied to: shortcut + residual, or the one that is defined.
  static torch::Tensor join(const torch::Tensor& shortcut, const torch::Tensor& residual);
  // The block under one plan step (forward gates and scale, backward gates).
  torch::Tensor run(const torch::Tensor& x, const Step& step, const StepExtras* extras = nullptr);

 protected:
  friend class NetworkImpl;  // fills in the block table
  bool has_skip_ = true;
  BlockInfo info_;
};

class NetworkImpl : public torch::nn::Module {
 public:
  explicit NetworkImpl(const NetworkOptions& opts);

  const NetworkOptions& options() const { return opts_; }
  const ModelSpec& spec() const { return spec_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  const std::vector<BlockInfo>& block_infos() const { return infos_; }
  BlockImpl& block(int index);  // 1-based
  std::shared_ptr<BlockImpl> block_ptr(int index);

  // Test-time residual scales of the trained network (stochastic depth: survival p_l;
  // short-path training with the "scaled" convention: K/n). Empty = all 1.
  void set_residual_scales(const std::vector<double>& s);
  const std::vector<double>& residual_scales() const { return scales_; }
  // The plan every experiment starts from: all blocks in order, with the residual scales above.
  Plan default_plan() const;

  torch::Tensor stem(const torch::Tensor& x);   // (B,Cin,H,W) -> (B,C1,H1,W1)
  torch::Tensor head(const torch::Tensor& h);   // (B,C,h,w) -> (B, classes) logits
  torch::Tensor forward(const torch::Tensor& x);  // default_plan()
  torch::Tensor forward(const torch::Tensor& x, const Plan& plan,
                        const std::vector<StepExtras>* extras = nullptr);  // extras per step

  // Evaluation copy helpers.
  void fold_batchnorm();  // every foldable conv->BN pair, in place; call on an eval copy
  int64_t num_parameters() const;

 private:
  void init_weights();      // He initialisation for convolutions, batch norm as the identity
  void fill_block_table();  // infos_ from one probe forward (batch 1, eval mode, no grad)

  NetworkOptions opts_;
  ModelSpec spec_;
  std::shared_ptr<torch::nn::Module> stem_, head_;  // concrete types live in network.cpp
  std::vector<std::shared_ptr<BlockImpl>> blocks_;
  std::vector<BlockInfo> infos_;
  std::vector<double> scales_;
};
TORCH_MODULE(Network);

// A deep copy (parameters and buffers) for evaluation; the copy is in eval mode.
Network clone_network(const Network& net);

// Backward gate: identity forward; backward multiplies the gradient by `mask` ((B) per sample).
torch::Tensor grad_gate(const torch::Tensor& x, const torch::Tensor& mask);

}  // namespace unravel::models
