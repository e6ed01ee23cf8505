// Residual network families and their execution under a plan. Blocks are registered by name
// ("blocks.17.conv1.weight"), so a block is found by its paper index and not by position.
#include "models/network.h"

#include <fmt/format.h>

#include "core/errors.h"
#include "core/util.h"

namespace unravel::models {

namespace F = torch::nn::functional;
using torch::Tensor;

// ----------------------------------------------------------------------------------------------
// Model names

// ----------------------------------------------------------------------------------------------
// Building pieces

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).groups(groups).bias(false));
}

torch::nn::BatchNorm2d bn(int64_t c) { return torch::nn::BatchNorm2d(c); }

// conv followed by BN, or the folded conv (with bias) once fold_pair has run.
Tensor conv_bn(const Tensor& x, torch::nn::Conv2d& c, torch::nn::BatchNorm2d& b, bool folded) {
  return folded ? c->forward(x) : b->forward(c->forward(x));
}

// W' = W * g / sqrt(var + eps), b' = beta - g * mean / sqrt(var + eps). Evaluation only. The
// convolution was built without a bias (its "bias" parameter slot is empty and cannot be filled
// again), so b' is registered as the buffer "folded_bias" that conv->bias shares: Module::to()
// then moves and converts it with everything else (device, bfloat16).
void fold_pair(torch::nn::Conv2d& c, torch::nn::BatchNorm2d& b) {
  torch::NoGradGuard ng;
  auto inv = b->weight / torch::sqrt(b->running_var + b->options.eps());  // (C)
  c->weight.mul_(inv.view({-1, 1, 1, 1}));
  c->bias = c->register_buffer("folded_bias", b->bias - b->running_mean * inv);
}

// Option A: subsample with the stride, append zero channels (no parameters).
Tensor shortcut_a(const Tensor& x, int64_t stride, int64_t out_channels) {
  Tensor y = stride > 1 ? x.slice(2, 0, x.size(2), stride).slice(3, 0, x.size(3), stride) : x;
  const int64_t extra = out_channels - x.size(1);
  if (extra > 0) y = F::pad(y, F::PadFuncOptions({0, 0, 0, 0, 0, extra}));
  return y;
}

// The shortcut of every block family: identity, option A, or option B (1x1 conv + BN).
struct Shortcut {
  bool identity = true, projection = false, folded = false;
  int64_t stride = 1, out_channels = 0;
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};

  void init(torch::nn::Module& owner, int64_t in, int64_t out, int64_t s, const std::string& type) {
    stride = s;
    out_channels = out;
    identity = (in == out && s == 1);
    projection = !identity && type == "B";
    if (projection) {
      conv = owner.register_module("shortcut_conv", models::conv(in, out, 1, s));
      norm = owner.register_module("shortcut_bn", bn(out));
    }
  }
  Tensor operator()(const Tensor& x) {
    if (identity) return x;
    if (projection) return conv_bn(x, conv, norm, folded);
    return shortcut_a(x, stride, out_channels);
  }
  void fold() {
    if (projection && !folded) fold_pair(conv, norm);
    folded = true;
  }
};

// Original (post-activation) basic block; also the plain block (no skip).
class BasicBlock : public BlockImpl {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride, const std::string& shortcut, bool skip) {
    conv1 = register_module("conv1", conv(in, out, 3, stride));
    bn1 = register_module("bn1", bn(out));
    conv2 = register_module("conv2", conv(out, out, 3, 1));
    bn2 = register_module("bn2", bn(out));
    // plain blocks use the parameter-free shortcut only when deleted
    sc.init(*this, in, out, stride, skip ? shortcut : "A");
    has_skip_ = skip;
    info_.kind = skip ? "basic" : "plain";
  }
  Tensor residual(const Tensor& x) override {
    Tensor h = torch::relu(conv_bn(x, conv1, bn1, folded));
    return conv_bn(h, conv2, bn2, folded);
  }
  Tensor shortcut(const Tensor& x) override { return sc(x); }
  Tensor post(const Tensor& y) override { return torch::relu(y); }
  bool post_is_relu() const override { return true; }
  void fold_batchnorm() override {
    if (folded) return;
    fold_pair(conv1, bn1);
    fold_pair(conv2, bn2);
    sc.fold();
    folded = true;
  }

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  Shortcut sc;
  bool folded = false;
};

// Pre-activation basic block (He et al. 2016b): BN-ReLU-conv-BN-ReLU-conv, identity after the sum.
class PreActBlock : public BlockImpl {
 public:
  PreActBlock(int64_t in, int64_t out, int64_t stride, const std::string& shortcut) {
    bn1 = register_module("bn1", bn(in));
    conv1 = register_module("conv1", conv(in, out, 3, stride));
    bn2 = register_module("bn2", bn(out));
    conv2 = register_module("conv2", conv(out, out, 3, 1));
    sc.init(*this, in, out, stride, shortcut);
    info_.kind = "preact-basic";
  }
  Tensor residual(const Tensor& x) override {
    Tensor h = torch::relu(bn1->forward(x));
    h = torch::relu(conv_bn(h, conv1, bn2, folded));
    return conv2->forward(h);
  }
  Tensor shortcut(const Tensor& x) override { return sc(x); }
  void fold_batchnorm() override {
    if (folded) return;
    fold_pair(conv1, bn2);  // bn1 follows the sum of the previous block: nothing to fold into
    sc.fold();
    folded = true;
  }

 private:
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  Shortcut sc;
  bool folded = false;
};

// Bottleneck block (1x1 reduce to `width`, 3x3 with the stride and `groups`, 1x1 expand to
// `out`), post- or pre-activation. torchvision: width = planes * width_per_group / 64 * groups,
// out = 4 * planes.
class BottleneckBlock : public BlockImpl {
 public:
  BottleneckBlock(int64_t in, int64_t width, int64_t out, int64_t stride, int64_t groups, const std::string& shortcut,
                  bool preact)
      : preact_(preact) {
    if (preact) bn0 = register_module("bn0", bn(in));
    conv1 = register_module("conv1", conv(in, width, 1, 1));
    bn1 = register_module("bn1", bn(width));
    conv2 = register_module("conv2", conv(width, width, 3, stride, groups));
    bn2 = register_module("bn2", bn(width));
    conv3 = register_module("conv3", conv(width, out, 1, 1));
    if (!preact) bn3 = register_module("bn3", bn(out));
    sc.init(*this, in, out, stride, shortcut);
    info_.kind = preact ? "preact-bottleneck" : "bottleneck";
  }
  Tensor residual(const Tensor& x) override {
    Tensor h = preact_ ? torch::relu(bn0->forward(x)) : x;
    h = torch::relu(conv_bn(h, conv1, bn1, folded));
    h = torch::relu(conv_bn(h, conv2, bn2, folded));
    return preact_ ? conv3->forward(h) : conv_bn(h, conv3, bn3, folded);
  }
  Tensor shortcut(const Tensor& x) override { return sc(x); }
  Tensor post(const Tensor& y) override { return preact_ ? y : torch::relu(y); }
  bool post_is_relu() const override { return !preact_; }
  void fold_batchnorm() override {
    if (folded) return;
    fold_pair(conv1, bn1);
    fold_pair(conv2, bn2);
    if (!preact_) fold_pair(conv3, bn3);
    sc.fold();
    folded = true;
  }

 private:
  bool preact_;
  torch::nn::BatchNorm2d bn0{nullptr}, bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  Shortcut sc;
  bool folded = false;
};

// Post-activation stem: conv-BN-ReLU (ImageNet nets: 7x7/2 and a 3x3/2 max-pool), foldable.
class StemImpl : public torch::nn::Module {
 public:
  StemImpl(int64_t in, int64_t out, bool imagenet, bool with_bn) : pool_(imagenet), with_bn_(with_bn) {
    conv1 = register_module("conv", conv(in, out, imagenet ? 7 : 3, imagenet ? 2 : 1));
    if (with_bn) bn1 = register_module("bn", bn(out));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = with_bn_ ? torch::relu(conv_bn(x, conv1, bn1, folded)) : conv1->forward(x);
    if (pool_) h = F::max_pool2d(h, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    return h;
  }
  void fold() {
    if (with_bn_ && !folded) fold_pair(conv1, bn1);
    folded = true;
  }

 private:
  bool pool_, with_bn_, folded = false;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
};
TORCH_MODULE(Stem);

// Head: (BN-ReLU for pre-activation nets) -> global average pool -> linear.
class HeadImpl : public torch::nn::Module {
 public:
  HeadImpl(int64_t channels, int64_t classes, bool preact) {
    if (preact) norm = register_module("bn", bn(channels));
    fc = register_module("fc", torch::nn::Linear(channels, classes));
  }
  Tensor forward(const Tensor& h) {
    Tensor x = norm ? torch::relu(norm->forward(h)) : h;
    x = x.mean({2, 3});  // (B, C)
    return fc->forward(x);
  }
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Head);

}  // namespace

// ----------------------------------------------------------------------------------------------
// Gates and one block under one plan step

Tensor grad_gate(const Tensor& x, const Tensor& mask) {
  if (!x.requires_grad()) return x;
  Tensor m = mask.to(x.dtype());
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = -1;
  m = m.view(shape);
  Tensor y = x.view_as(x);
  y.register_hook([m](Tensor g) { return g * m; });
  return y;
}

BlockImpl::Branches BlockImpl::branches(const Tensor& x, const Step& step) {
  Branches b;
  if (has_skip_ || step.deleted) b.shortcut = shortcut(x);
  if (!step.deleted) {
    b.residual = residual(x);
    if (step.residual_scale != 1.0) b.residual = b.residual * step.residual_scale;
  }
  return b;
}

Tensor BlockImpl::join(const Tensor& s, const Tensor& r) {
  return s.defined() && r.defined() ? s + r : (s.defined() ? s : r);
}

Tensor BlockImpl::run(const Tensor& x, const Step& step, const StepExtras* extras) {
  auto [s, r] = branches(x, step);
  if (r.defined() && extras && extras->residual_mask.defined()) {
    std::vector<int64_t> shape(r.dim(), 1);
    shape[0] = -1;
    r = r * extras->residual_mask.to(r.dtype()).view(shape);
  }
  if (step.gate == Gate::ResidualOnly || step.gate == Gate::None) {
    if (s.defined()) s = s.detach();
  }
  if (step.gate == Gate::ShortcutOnly || step.gate == Gate::None) {
    if (r.defined()) r = r.detach();
  }
  if (extras && extras->grad_residual.defined() && r.defined()) r = grad_gate(r, extras->grad_residual);
  if (extras && extras->grad_shortcut.defined() && s.defined()) s = grad_gate(s, extras->grad_shortcut);
  return post(join(s, r));
}

// ----------------------------------------------------------------------------------------------
// The network

NetworkImpl::NetworkImpl(const NetworkOptions& opts) : opts_(opts), spec_(ModelSpec::parse(opts.model_)) {
  if (opts_.shortcut_.empty()) opts_.shortcut_ = spec_.default_shortcut;
  if (opts_.shortcut_ != "A" && opts_.shortcut_ != "B")
    throw UserError(fmt::format("shortcut must be A or B, got '{}'", elide_middle(opts_.shortcut_)));
  if (opts_.in_channels_ < 1 || opts_.height_ < 1 || opts_.width_ < 1 || opts_.num_classes_ < 2 ||
      opts_.in_channels_ > 64 || opts_.height_ > 8192 || opts_.width_ > 8192 || opts_.num_classes_ > 1000000)
    throw UserError(fmt::format("invalid network input {}x{}x{} with {} classes", opts_.in_channels_,
                                opts_.height_, opts_.width_, opts_.num_classes_));
  const bool preact = spec_.family == Family::PreResNet;
  const bool skip = spec_.family != Family::Plain;
  auto blocks = register_module("blocks", std::make_shared<torch::nn::Module>());
  int64_t channels = 0;
  Stem stem{nullptr};
  auto add_block = [&](std::shared_ptr<BlockImpl> b, size_t stage) {
    blocks_.push_back(std::move(b));
    infos_.push_back({});
    infos_.back().stage = static_cast<int>(stage) + 1;
  };
  if (spec_.imagenet) {
    stem = Stem(opts_.in_channels_, 64, /*imagenet=*/true, /*with_bn=*/true);
    channels = 64;
    for (size_t st = 0; st < spec_.blocks_per_stage.size(); ++st) {
      const int64_t planes = 64LL << st;
      for (int j = 0; j < spec_.blocks_per_stage[st]; ++j) {
        const int64_t stride = (st > 0 && j == 0) ? 2 : 1;
        if (spec_.bottleneck) {
          const int64_t width = planes * spec_.width_per_group / 64 * spec_.groups, out = planes * 4;
          add_block(std::make_shared<BottleneckBlock>(channels, width, out, stride, spec_.groups, opts_.shortcut_,
                                                      preact), st);
          channels = out;
        } else {
          add_block(std::make_shared<BasicBlock>(channels, planes, stride, opts_.shortcut_, skip), st);
          channels = planes;
        }
      }
    }
  } else {
    stem = Stem(opts_.in_channels_, 16, /*imagenet=*/false, /*with_bn=*/!preact);
    channels = 16;
    for (size_t st = 0; st < spec_.blocks_per_stage.size(); ++st) {
      const int64_t out = 16LL << st;
      for (int j = 0; j < spec_.blocks_per_stage[st]; ++j) {
        const int64_t stride = (st > 0 && j == 0) ? 2 : 1;
        if (preact) add_block(std::make_shared<PreActBlock>(channels, out, stride, opts_.shortcut_), st);
        else add_block(std::make_shared<BasicBlock>(channels, out, stride, opts_.shortcut_, skip), st);
        channels = out;
      }
    }
  }
  stem_ = register_module("stem", stem.ptr());
  head_ = register_module("head", Head(channels, opts_.num_classes_, preact).ptr());
  for (size_t i = 0; i < blocks_.size(); ++i) blocks->register_module(std::to_string(i + 1), blocks_[i]);

  init_weights();
  fill_block_table();
}

void NetworkImpl::init_weights() {
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* c = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(b->weight);
      torch::nn::init::zeros_(b->bias);
    }
  }
}

void NetworkImpl::fill_block_table() {
  torch::NoGradGuard ng;
  const bool was_training = is_training();
  eval();
  Tensor h = stem(torch::zeros({1, opts_.in_channels_, opts_.height_, opts_.width_}));
  auto shape_of = [](const Tensor& t) { return Shape{t.size(1), t.size(2), t.size(3)}; };
  for (size_t i = 0; i < blocks_.size(); ++i) {
    BlockInfo& info = infos_[i];
    const int stage = info.stage;
    info = blocks_[i]->info();
    info.index = static_cast<int>(i) + 1;
    info.stage = stage;
    info.in_shape = shape_of(h);
    h = blocks_[i]->run(h, Step{static_cast<int>(i) + 1});
    info.out_shape = shape_of(h);
    info.downsample = info.in_shape != info.out_shape;
    blocks_[i]->info_ = info;
  }
  train(was_training);
}

BlockImpl& NetworkImpl::block(int index) { return *block_ptr(index); }

std::shared_ptr<BlockImpl> NetworkImpl::block_ptr(int index) {
  if (index < 1 || index > num_blocks())
    throw UserError(fmt::format("block {} is out of range (the network has blocks 1-{})", index, num_blocks()));
  return blocks_[index - 1];
}

void NetworkImpl::set_residual_scales(const std::vector<double>& s) {
  if (!s.empty() && static_cast<int>(s.size()) != num_blocks())
    throw UserError(fmt::format("{} residual scales given for {} blocks", s.size(), num_blocks()));
  scales_ = s;
}

Plan NetworkImpl::default_plan() const {
  Plan p = Plan::intact(num_blocks());
  for (size_t i = 0; i < scales_.size(); ++i) p.steps()[i].residual_scale = scales_[i];
  return p;
}

// The blocks' convolutions pick their kernels by the memory format of their weights, which
// make_eval_copy puts in channels_last (its option, and always in bf16). The stem cannot pass that
// format on when its input has one channel (the two layouts are then the same bytes, and the
// convolution answers in NCHW), and every block would then add an NCHW shortcut to a
// channels_last residual, which runs about 8x slower than adding two tensors of one format (in
// bf16 the sweep lost 20% to it). So the stem's output takes the format of the blocks' weights.
Tensor NetworkImpl::stem(const Tensor& x) {
  Tensor h = static_cast<StemImpl*>(stem_.get())->forward(x);
  if (blocks_.empty() || h.dim() != 4) return h;
  for (const auto& w : blocks_.front()->parameters()) {
    if (w.dim() != 4 || w.size(1) < 2) continue;  // one input channel: either format
    const bool cl = w.is_contiguous(at::MemoryFormat::ChannelsLast) && !w.is_contiguous();
    return cl ? h.contiguous(at::MemoryFormat::ChannelsLast) : h;
  }
  return h;
}

Tensor NetworkImpl::head(const Tensor& h) {
  return static_cast<HeadImpl*>(head_.get())->forward(h);
}

Tensor NetworkImpl::forward(const Tensor& x) { return forward(x, default_plan()); }

Tensor NetworkImpl::forward(const Tensor& x, const Plan& plan, const std::vector<StepExtras>* extras) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == opts_.in_channels_, "network '", spec_.name, "' expects input (B, ",
              opts_.in_channels_, ", H, W), got ", x.sizes());
  plan.validate(infos_);
  if (extras && extras->size() != plan.steps().size())
    throw UserError(fmt::format("{} step extras for a plan of {} steps", extras->size(), plan.steps().size()));
  Tensor h = stem(x);
  const auto& steps = plan.steps();
  for (size_t i = 0; i < steps.size(); ++i)
    h = blocks_[steps[i].block - 1]->run(h, steps[i], extras ? &(*extras)[i] : nullptr);
  return head(h);
}

void NetworkImpl::fold_batchnorm() {
  TORCH_CHECK(!is_training(), "fold_batchnorm() is for evaluation copies in eval mode");
  static_cast<StemImpl*>(stem_.get())->fold();
  for (auto& b : blocks_) b->fold_batchnorm();
}

int64_t NetworkImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

Network clone_network(const Network& net) {
  Network copy(net->options());
  auto ref = net->parameters().front();
  copy->to(ref.device(), ref.scalar_type());  // before copying, so float64 stays exact
  torch::NoGradGuard ng;
  auto src_p = net->named_parameters(), src_b = net->named_buffers();
  for (auto& p : copy->named_parameters()) p.value().copy_(src_p[p.key()]);
  for (auto& b : copy->named_buffers()) b.value().copy_(src_b[b.key()]);
  copy->set_residual_scales(net->residual_scales());
  copy->eval();
  return copy;
}

}  // namespace unravel::models
