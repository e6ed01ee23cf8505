// Model families: parameter counts, block tables, forward under plans against a hand-written
// forward, and backward gates against finite differences.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "models/network.h"

using namespace unravel;
using namespace unravel::models;

namespace {

Network make(const std::string& name, int64_t c = 3, int64_t hw = 32, const std::string& sc = "A") {
  return Network(NetworkOptions(name).in_channels(c).input_size(hw, hw).shortcut(sc));
}

// Random BN statistics and affine parameters so that BN is not the identity.
void randomise_bn(Network& net, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& m : net->modules(false)) {
    if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      b->weight.uniform_(0.5, 1.5);
      b->bias.uniform_(-0.2, 0.2);
      b->running_mean.uniform_(-0.2, 0.2);
      b->running_var.uniform_(0.5, 1.5);
    }
  }
}

// The forward written out by hand from the block interface: the oracle for plan execution.
torch::Tensor hand_forward(Network& net, const torch::Tensor& x, const std::vector<int>& order,
                           const std::vector<int>& deleted) {
  torch::Tensor h = net->stem(x);
  for (int b : order) {
    auto& blk = net->block(b);
    bool del = std::find(deleted.begin(), deleted.end(), b) != deleted.end();
    if (del) h = blk.post(blk.shortcut(h));
    else if (blk.has_skip()) h = blk.post(blk.shortcut(h) + blk.residual(h));
    else h = blk.post(blk.residual(h));
  }
  return net->head(h);
}

}  // namespace

TEST(Models, ParameterCountsMatchThePapers) {
  // He et al. 2016, option A: ResNet-20 0.27M, ResNet-110 1.7M (CIFAR: 3x32x32, 10 classes).
  // By hand for ResNet-20: stem 3*16*9 + 32 = 464; stage 1: 3*(2*2304 + 64) = 14016; stage 2:
  // 4608 + 9216 + 128 + 2*(2*9216 + 128) = 51072; stage 3: 18432 + 36864 + 256 +
  // 2*(2*36864 + 256) = 203520; fc 64*10 + 10 = 650. Total 269722.
  EXPECT_EQ(make("resnet20")->num_parameters(), 269722);
  // ResNet-110: 18 blocks a stage; each extra block adds 2*2304+64, 2*9216+128, 2*36864+256.
  EXPECT_EQ(make("resnet110")->num_parameters(), 269722 + 15 * (4672 + 18560 + 73984));
  // Pre-activation: per block BN(in)+BN(out) instead of 2xBN(out), no stem BN, a final BN(64).
  // Differs from resnet20 by: -32 (stem BN) + 2*(16-32) + 2*(32-64) [first blocks of stages 2,3
  // have BN over their 16/32 input channels] + 128 (final BN).
  EXPECT_EQ(make("preresnet20")->num_parameters(), 269722 - 32 - 32 - 64 + 128);
  EXPECT_EQ(make("plain20")->num_parameters(), 269722);  // same layers, no skips, option A
  // torchvision resnet50: 25,557,032 parameters with 1000 classes.
  auto r50 = Network(NetworkOptions("resnet50").num_classes(1000).input_size(64, 64).shortcut("B"));
  EXPECT_EQ(r50->num_parameters(), 25557032);
}

TEST(Models, BlockTableOfPreResNet110) {
  auto net = make("preresnet110", 1, 28);
  ASSERT_EQ(net->num_blocks(), 54);
  std::vector<int> down;
  for (const auto& b : net->block_infos())
    if (b.downsample) down.push_back(b.index);
  EXPECT_EQ(down, (std::vector<int>{19, 37}));
  const auto& b19 = net->block_infos()[18];
  EXPECT_EQ(b19.stage, 2);
  EXPECT_EQ(b19.in_shape, (Shape{16, 28, 28}));
  EXPECT_EQ(b19.out_shape, (Shape{32, 14, 14}));
  EXPECT_EQ(net->block_infos()[53].out_shape, (Shape{64, 7, 7}));
  EXPECT_EQ(net->block_infos()[0].kind, "preact-basic");
}

TEST(Models, BottleneckNetsOnSmallInputs) {
  for (std::string name : {"resnet50", "preresnet50"}) {
    auto net = make(name, 3, 32, "B");
    EXPECT_EQ(net->num_blocks(), 16);
    std::vector<int> down;
    for (const auto& b : net->block_infos())
      if (b.downsample) down.push_back(b.index);
    EXPECT_EQ(down, (std::vector<int>{1, 4, 8, 14})) << name;
    net->eval();
    auto y = net->forward(torch::randn({2, 3, 32, 32}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 10}));
  }
  EXPECT_EQ(ModelSpec::parse("resnet200").blocks_per_stage, (std::vector<int>{3, 24, 36, 3}));
  EXPECT_EQ(ModelSpec::parse("resnet101").blocks_per_stage, (std::vector<int>{3, 4, 23, 3}));
  EXPECT_EQ(ModelSpec::parse("preresnet152").blocks_per_stage, (std::vector<int>{3, 8, 36, 3}));
}

TEST(Models, UnknownNamesAreRefused) {
  for (std::string bad : {"resnet21", "vgg16", "preresnet", "resnet2"}) {
    try {
      ModelSpec::parse(bad);
      ADD_FAILURE() << bad;
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos);
    }
  }
}

TEST(Models, PlansMatchAHandWrittenForward) {
  for (std::string name : {"resnet14", "preresnet14", "plain14"}) {
    for (std::string sc : {"A", "B"}) {
      auto net = make(name, 1, 12, sc);
      randomise_bn(net, 3);
      net->eval();
      torch::NoGradGuard ng;
      auto x = torch::randn({3, 1, 12, 12});
      struct Case { std::string text; std::vector<int> order, deleted; };
      std::vector<Case> cases = {
          {"intact", {1, 2, 3, 4, 5, 6}, {}},
          {"delete=2,3", {1, 2, 3, 4, 5, 6}, {2, 3}},
          {"swap=1:2", {2, 1, 3, 4, 5, 6}, {}},
          {"duplicate=6 delete=4", {1, 2, 3, 4, 5, 6, 6}, {4}},
          {"order=1,1,2,2,3,4,4,5,6,6", {1, 1, 2, 2, 3, 4, 4, 5, 6, 6}, {}},
      };
      for (const auto& c : cases) {
        auto plan = Plan::parse(c.text, net->num_blocks());
        auto want = hand_forward(net, x, c.order, c.deleted);
        auto got = net->forward(x, plan);
        EXPECT_TRUE(torch::allclose(got, want, 1e-6, 1e-6)) << name << " " << sc << " " << c.text;
      }
    }
  }
}

TEST(Models, DeletedBlockOutputsItsShortcut) {
  auto net = make("resnet14", 1, 12);
  randomise_bn(net, 5);
  net->eval();
  torch::NoGradGuard ng;
  auto x = torch::relu(torch::randn({2, 16, 12, 12}));
  Step del{1, /*deleted=*/true};
  EXPECT_TRUE(torch::equal(net->block(1).run(x, del), x));  // relu of a non-negative input
  auto x3 = torch::relu(torch::randn({2, 16, 12, 12}));
  auto y3 = net->block(3).run(x3, Step{3, true});  // downsampling: option A shortcut
  EXPECT_EQ(y3.sizes(), (std::vector<int64_t>{2, 32, 6, 6}));
  EXPECT_TRUE(torch::equal(y3.slice(1, 0, 16), x3.slice(2, 0, 12, 2).slice(3, 0, 12, 2)));
  EXPECT_EQ(y3.slice(1, 16, 32).abs().sum().item<float>(), 0.0f);
}

TEST(Models, ResidualScaleScalesTheBranch) {
  auto net = make("preresnet8", 1, 8);
  randomise_bn(net, 7);
  net->eval();
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 16, 8, 8});
  Step half{1};
  half.residual_scale = 0.5;
  auto want = net->block(1).shortcut(x) + 0.5 * net->block(1).residual(x);
  EXPECT_TRUE(torch::allclose(net->block(1).run(x, half), want, 1e-6, 1e-6));
  net->set_residual_scales({0.5, 1.0, 1.0});
  EXPECT_EQ(net->default_plan().str(), "scale=1:0.5");
}

// Backward gates: the gated gradient equals the finite-difference derivative of the function
// in which the gated-off branch is frozen at its base-point value.
TEST(Models, GatesMatchFiniteDifferences) {
  torch::manual_seed(11);
  for (std::string name : {"preresnet8", "resnet8"}) {
    auto net = make(name, 1, 6);
    net->to(torch::kFloat64);
    randomise_bn(net, 13);
    net->eval();
    auto x0 = torch::randn({1, 1, 6, 6}, torch::kFloat64);
    auto labels = torch::tensor({3}, torch::kInt64);
    for (Gate g : {Gate::ResidualOnly, Gate::ShortcutOnly}) {
      Plan plan = Plan::intact(3).gate(2, g);
      auto x = x0.clone().requires_grad_(true);
      auto loss = torch::nn::functional::cross_entropy(net->forward(x, plan), labels);
      auto grad = torch::autograd::grad({loss}, {x})[0];

      // frozen branch of block 2, evaluated at x0
      torch::Tensor frozen;
      {
        torch::NoGradGuard ng;
        auto h = net->block(1).run(net->stem(x0), Step{1});
        frozen = g == Gate::ResidualOnly ? net->block(2).shortcut(h) : net->block(2).residual(h);
      }
      auto f = [&](const torch::Tensor& xin) {
        torch::NoGradGuard ng;
        auto h = net->block(1).run(net->stem(xin), Step{1});
        auto& b2 = net->block(2);
        auto sum = g == Gate::ResidualOnly ? frozen + b2.residual(h) : b2.shortcut(h) + frozen;
        h = net->block(3).run(b2.post(sum), Step{3});
        return torch::nn::functional::cross_entropy(net->head(h), labels).item<double>();
      };
      const double eps = 1e-6;
      for (int64_t i = 0; i < x0.numel(); i += 5) {
        auto xp = x0.clone(), xm = x0.clone();
        xp.view(-1)[i] += eps;
        xm.view(-1)[i] -= eps;
        double fd = (f(xp) - f(xm)) / (2 * eps);
        EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-7 + 1e-5 * std::abs(fd))
            << name << " gate " << gate_name(g) << " element " << i;
      }
    }
  }
}

// Per-sample gates (batched path sampling): sample 0 gets the full gradient, sample 1 the
// gradient of the residual-gated-off network; each equals the single-sample computation.
TEST(Models, PerSampleGatesMatchSeparateBackwards) {
  auto net = make("preresnet8", 1, 6);
  net->to(torch::kFloat64);
  randomise_bn(net, 17);
  net->eval();
  auto x0 = torch::randn({1, 1, 6, 6}, torch::kFloat64);
  auto label = torch::tensor({2}, torch::kInt64);
  auto single = [&](const Plan& plan) {
    auto x = x0.clone().requires_grad_(true);
    auto loss = torch::nn::functional::cross_entropy(net->forward(x, plan), label);
    return torch::autograd::grad({loss}, {x})[0];
  };
  auto full = single(Plan::intact(3));
  auto gated = single(Plan::intact(3).gate(2, Gate::ShortcutOnly));
  ASSERT_FALSE(torch::allclose(full, gated));

  auto x = torch::cat({x0, x0}).requires_grad_(true);
  std::vector<StepExtras> extras(3);
  extras[1].grad_residual = torch::tensor({1.0, 0.0}, torch::kFloat64);
  auto logits = net->forward(x, Plan::intact(3), &extras);
  auto loss = torch::nn::functional::cross_entropy(logits, torch::cat({label, label}),
                                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  auto g = torch::autograd::grad({loss}, {x})[0];
  EXPECT_TRUE(torch::allclose(g[0], full[0], 1e-12, 1e-14));
  EXPECT_TRUE(torch::allclose(g[1], gated[0], 1e-12, 1e-14));
}

TEST(Models, CloneIsIndependentAndEqual) {
  auto net = make("resnet8", 1, 8);
  randomise_bn(net, 19);
  net->eval();
  auto copy = clone_network(net);
  auto x = torch::randn({2, 1, 8, 8});
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(net->forward(x), copy->forward(x)));
  copy->block(1).parameters()[0].add_(1.0);
  EXPECT_FALSE(torch::equal(net->forward(x), copy->forward(x)));
}
