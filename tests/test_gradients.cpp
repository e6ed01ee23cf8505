// Gradient per path length: the exact decomposition and the sampled paths against brute force
// over all 2^n paths, the ordinary gradient and the network's backward gates against finite
// differences, and the random-sign estimator's unbiasedness. Tiny float64 networks (3 or 6
// blocks, 1x8x8 inputs).
// Sections: exact == brute per length (and sum_k g_k == the ordinary gradient == finite
// differences) / plain networks / sampled norms == brute norms / random-sign estimator / gates
// against finite differences / path sets, counts, errors, output (shares and the effective range
// recomputed). Std reported: sample: the sample std (n-1) of the sampled path norms; brute: the
// population std over all paths of a length; both pinned below.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/errors.h"
#include "paths/gradients.h"
#include "testing.h"

namespace unravel::paths {

void PrintTo(BnMode m, std::ostream* os) { *os << bn_mode_name(m); }  // readable test names

namespace {

using models::Network;
using models::NetworkOptions;
using torch::Tensor;

// Batch-norm parameters and running statistics away from their initial 1/0 values, so that the
// eval and train modes differ and every BN has a non-trivial Jacobian.
void randomize_batchnorm(Network& net) {
  torch::NoGradGuard no_grad;
  for (const auto& m : net->modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0.0, 0.2);
      bn->running_mean.normal_(0.0, 0.2);
      bn->running_var.uniform_(0.5, 1.5);
    }
  }
}

Network make_net(const std::string& model, const std::string& shortcut = "A", uint64_t seed = 1) {
  torch::manual_seed(seed);
  Network net(NetworkOptions(model).in_channels(1).input_size(8, 8).num_classes(5).shortcut(shortcut));
  net->to(torch::kFloat64);
  randomize_batchnorm(net);
  net->eval();
  return net;
}

struct Batch {
  Tensor images;  // (B, 1, 8, 8) float64
  Tensor labels;  // (B) int64
};

Batch make_batch(int64_t b = 3, uint64_t seed = 7) {
  torch::manual_seed(seed);
  return {torch::randn({b, 1, 8, 8}, torch::kFloat64), torch::randint(0, 5, {b}, torch::kLong)};
}

double max_abs(const Tensor& t) { return t.abs().max().item<double>(); }

// Central-difference step. ReLUs make the functions piecewise smooth: a step crossing a kink
// spoils the difference (seen at 1e-6 with these seeds); at 1e-7 rounding is still ~1e-9 relative.
constexpr double kFdStep = 1e-7;

// "k" -> the blocks of bitmask `mask` (bit i-1 = block i).
std::vector<int> blocks_of(uint32_t mask, int n) {
  std::vector<int> s;
  for (int i = 0; i < n; ++i)
    if ((mask >> i) & 1u) s.push_back(i + 1);
  return s;
}

uint32_t mask_of(const std::vector<int>& set) {
  uint32_t m = 0;
  for (int b : set) m |= 1u << (b - 1);
  return m;
}

std::vector<Tensor> buffers_copy(Network& net) {
  std::vector<Tensor> out;
  for (const auto& b : net->buffers()) out.push_back(b.clone());
  return out;
}

// ---- exact == brute, per length, elementwise ------------------------------------------------

using Config = std::tuple<std::string, std::string, BnMode>;  // model, shortcut, bn

class ExactVsBrute : public ::testing::TestWithParam<Config> {};

TEST_P(ExactVsBrute, PerLengthSumsAgreeElementwise) {
  const auto& [model, shortcut, bn] = GetParam();
  Network net = make_net(model, shortcut);
  const Batch batch = make_batch();
  const auto before = buffers_copy(net);
  GradientOptions o;
  o.bn = bn;
  o.keep_tensors = true;
  o.sign_samples = 0;
  const GradientResult ex = exact_gradients(net, batch.images, batch.labels, o);
  const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
  const int n = net->num_blocks();
  ASSERT_EQ(n, 6);
  ASSERT_EQ(static_cast<int>(ex.g.size()), n + 1);
  ASSERT_EQ(static_cast<int>(br.g.size()), n + 1);

  const double scale = max_abs(br.grad);
  ASSERT_GT(scale, 0);
  EXPECT_LE(max_abs(ex.grad - br.grad), 1e-13 * scale) << "ordinary gradient differs";
  for (int k = 0; k <= n; ++k) {
    const double diff = max_abs(ex.g[k] - br.g[k]);
    EXPECT_LE(diff, 1e-10 * max_abs(br.g[k])) << "g_" << k << ": exact and brute differ by " << diff;
    EXPECT_GT(ex.lengths[k].norm, 0) << "g_" << k << " vanished: the comparison would be empty";
    EXPECT_NEAR(ex.lengths[k].norm, br.lengths[k].norm, 1e-10 * br.lengths[k].norm);
    EXPECT_EQ(ex.lengths[k].paths, br.lengths[k].paths);
  }
  // sum over lengths == autograd gradient: the library's own check, and the sum formed here
  // against an independent autograd call
  EXPECT_LT(ex.residual, 1e-10);
  EXPECT_LT(br.residual, 1e-10);
  const Tensor g = input_gradient(net, batch.images, batch.labels, bn);
  Tensor sum = torch::zeros_like(g);
  for (const Tensor& gk : ex.g) sum += gk;
  EXPECT_LE(max_abs(sum - g), 1e-12 * max_abs(g)) << "sum over lengths of g_k is not the gradient";
  EXPECT_LE(max_abs(ex.grad - g), 1e-13 * max_abs(g));
  // running statistics and the module mode survive the analysis
  const auto after = buffers_copy(net);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << "buffer " << i;
  EXPECT_FALSE(net->is_training());
}

INSTANTIATE_TEST_SUITE_P(
    Nets, ExactVsBrute,
    ::testing::Values(Config{"preresnet14", "A", BnMode::Eval}, Config{"preresnet14", "A", BnMode::Train},
                      Config{"preresnet14", "B", BnMode::Eval}, Config{"preresnet14", "B", BnMode::Train},
                      Config{"resnet14", "A", BnMode::Eval}, Config{"resnet14", "A", BnMode::Train},
                      Config{"resnet14", "B", BnMode::Eval}, Config{"resnet14", "B", BnMode::Train}),
    [](const ::testing::TestParamInfo<Config>& info) {
      return std::get<0>(info.param) + std::get<1>(info.param) +
             (std::get<2>(info.param) == BnMode::Train ? "Train" : "Eval");
    });

// Test-time residual scales (stochastic depth, scaled short-path training) enter every method.
TEST(Gradients, ResidualScalesAreHonoured) {
  Network net = make_net("resnet14", "A", 21);
  net->set_residual_scales({0.5, 1.0, 0.8, 0.3, 1.0, 0.6});
  const Batch batch = make_batch(3, 21);
  GradientOptions o;
  o.keep_tensors = true;
  o.sign_samples = 0;
  const GradientResult ex = exact_gradients(net, batch.images, batch.labels, o);
  const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
  EXPECT_LT(ex.residual, 1e-10);
  for (size_t k = 0; k < ex.g.size(); ++k)
    EXPECT_LE(max_abs(ex.g[k] - br.g[k]), 1e-10 * max_abs(br.g[k])) << "length " << k;
  const std::vector<std::vector<int>> sets{{}, {4}, {1, 4}, {2, 3, 6}, {1, 2, 3, 4, 5, 6}};
  const auto norms = path_gradient_norms(net, batch.images, batch.labels, sets, o);
  for (size_t i = 0; i < sets.size(); ++i)
    EXPECT_NEAR(norms[i], br.path_norms[mask_of(sets[i])], 1e-10 * norms[i]) << "set " << i;
  net->set_residual_scales({});
  const GradientResult plain_scales = exact_gradients(net, batch.images, batch.labels, o);
  EXPECT_GT(std::abs(plain_scales.lengths[1].norm - ex.lengths[1].norm), 1e-3 * ex.lengths[1].norm);
}

// The ordinary gradient d loss / d h0 that every decomposition must sum to, against central
// differences of the intact network's loss as a function of the stem output, in both batch-norm
// modes; and the exact method's sum over lengths against the same differences.
TEST(Gradients, OrdinaryGradientMatchesFiniteDifferences) {
  for (BnMode bn : {BnMode::Eval, BnMode::Train}) {
    for (const std::string model : {"preresnet8", "resnet8"}) {
      SCOPED_TRACE(model + (bn == BnMode::Train ? " train" : " eval"));
      Network net = make_net(model, "B", 19);
      const Batch batch = make_batch(3, 19);
      const Tensor g = input_gradient(net, batch.images, batch.labels, bn);
      GradientOptions o;
      o.bn = bn;
      o.keep_tensors = true;
      o.sign_samples = 0;
      const GradientResult ex = exact_gradients(net, batch.images, batch.labels, o);
      Tensor sum = torch::zeros_like(g);
      for (const Tensor& gk : ex.g) sum += gk;
      const auto before = buffers_copy(net);
      net->train(bn == BnMode::Train);
      Tensor h0;
      {
        torch::NoGradGuard ng;
        h0 = net->stem(batch.images);
      }
      auto loss = [&](const Tensor& start) {
        torch::NoGradGuard ng;
        Tensor h = start;
        for (int i = 1; i <= net->num_blocks(); ++i) {
          Step st;
          st.block = i;
          h = net->block(i).run(h, st);
        }
        return torch::nn::functional::cross_entropy(net->head(h), batch.labels).item<double>();
      };
      torch::manual_seed(5);
      for (int d = 0; d < 3; ++d) {
        const Tensor dir = torch::randn_like(h0);
        const double fd = (loss(h0 + kFdStep * dir) - loss(h0 - kFdStep * dir)) / (2 * kFdStep);
        EXPECT_NEAR((g * dir).sum().item<double>(), fd, 1e-6 * std::max(1e-3, std::abs(fd))) << "direction " << d;
        EXPECT_NEAR((sum * dir).sum().item<double>(), fd, 1e-6 * std::max(1e-3, std::abs(fd))) << "direction " << d;
      }
      net->eval();
      // the train-mode forward passes above moved the running statistics: put them back
      torch::NoGradGuard ng;
      auto bufs = net->buffers();
      for (size_t i = 0; i < bufs.size(); ++i) bufs[i].copy_(before[i]);
    }
  }
}

TEST(Gradients, BatchNormModeChangesTheGradient) {
  Network net = make_net("preresnet8");
  const Batch batch = make_batch();
  const Tensor ge = input_gradient(net, batch.images, batch.labels, BnMode::Eval);
  const Tensor gt = input_gradient(net, batch.images, batch.labels, BnMode::Train);
  EXPECT_GT(max_abs(ge - gt), 1e-3 * max_abs(ge));  // otherwise the train-mode tests test nothing
}

// ---- plain networks: a single path of length n ---------------------------------------------

TEST(Gradients, PlainNetHasOnlyTheFullLengthPath) {
  Network net = make_net("plain8");
  const Batch batch = make_batch();
  const int n = net->num_blocks();
  ASSERT_EQ(n, 3);
  EXPECT_EQ(forced_blocks(net), (std::vector<int>{1, 2, 3}));
  GradientOptions o;
  o.keep_tensors = true;
  o.sign_samples = 8;
  const GradientResult ex = exact_gradients(net, batch.images, batch.labels, o);
  const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(ex.lengths[k].paths, "0");
    EXPECT_EQ(max_abs(ex.g[k]), 0.0) << "length " << k;
    EXPECT_EQ(ex.lengths[k].total, 0.0);
  }
  EXPECT_EQ(ex.lengths[n].paths, "1");
  EXPECT_LE(max_abs(ex.g[n] - ex.grad), 1e-12 * max_abs(ex.grad));
  EXPECT_LE(max_abs(br.g[n] - ex.grad), 1e-12 * max_abs(ex.grad));
  // one path: its squared norm is known exactly, whatever the signs
  EXPECT_NEAR(ex.lengths[n].sum_sq, ex.lengths[n].norm * ex.lengths[n].norm, 1e-12 * ex.lengths[n].sum_sq);
  EXPECT_EQ(ex.effective_range, (std::pair<int, int>{n, n}));
  EXPECT_EQ(br.lengths[n].samples, 1);

  GradientOptions so;
  so.samples = 4;
  const GradientResult sr = sample_gradients(net, batch.images, batch.labels, so);
  EXPECT_EQ(sr.lengths[0].samples, 0);
  EXPECT_NEAR(sr.lengths[n].mean, ex.lengths[n].norm, 1e-12 * ex.lengths[n].norm);
}

// ---- sampled path norms == brute-force path norms -----------------------------------------

TEST(Gradients, SampledNormsEqualBruteForceNorms) {
  for (BnMode bn : {BnMode::Eval, BnMode::Train}) {
    for (const std::string model : {"preresnet14", "resnet14"}) {
      SCOPED_TRACE(model + (bn == BnMode::Train ? " train" : " eval"));
      Network net = make_net(model, "B", 3);
      const Batch batch = make_batch(4, 11);
      const int n = net->num_blocks();
      GradientOptions o;
      o.bn = bn;
      o.keep_tensors = true;
      const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
      std::vector<std::vector<int>> sets;
      for (int k = 0; k <= n; ++k) {
        auto s = sample_path_sets(n, k, 5, /*seed=*/42);
        sets.insert(sets.end(), s.begin(), s.end());
      }
      std::vector<SampleEngine> engines{SampleEngine::Chain};
      if (bn == BnMode::Eval) engines.push_back(SampleEngine::Replicated);
      for (SampleEngine e : engines) {
        GradientOptions so = o;
        so.engine = e;
        so.max_rows = 2 * batch.images.size(0);  // two paths per replicated pass: several passes
        const auto norms = path_gradient_norms(net, batch.images, batch.labels, sets, so);
        ASSERT_EQ(norms.size(), sets.size());
        for (size_t i = 0; i < sets.size(); ++i) {
          const double want = br.path_norms[mask_of(sets[i])];
          EXPECT_NEAR(norms[i], want, 1e-10 * want)
              << sample_engine_name(e) << " path " << mask_of(sets[i]);
        }
      }
      // one path through the public single-path call
      const auto one = path_gradient(net, batch.images, batch.labels, {2, 5}, bn);
      EXPECT_NEAR(one.norm().item<double>(), br.path_norms[mask_of({2, 5})], 1e-12 * br.path_norms[mask_of({2, 5})]);
    }
  }
}

TEST(Gradients, ReplicatedEngineRefusesTrainMode) {
  Network net = make_net("preresnet8");
  const Batch batch = make_batch();
  GradientOptions o;
  o.bn = BnMode::Train;
  o.engine = SampleEngine::Replicated;
  EXPECT_THROW(path_gradient_norms(net, batch.images, batch.labels, {{1}}, o), UserError);
}

TEST(Gradients, SampleMethodStatisticsMatchBruteNormsOfTheSameSets) {
  Network net = make_net("preresnet14", "A", 5);
  const Batch batch = make_batch(3, 5);
  const int n = net->num_blocks();
  GradientOptions o;
  o.keep_tensors = true;
  o.samples = 9;
  o.min_length = 1;
  o.max_length = 4;
  o.seed = 77;
  const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
  const GradientResult sr = sample_gradients(net, batch.images, batch.labels, o);
  ASSERT_EQ(sr.lengths.size(), 4u);
  for (int k = 1; k <= 4; ++k) {
    const auto sets = sample_path_sets(n, k, 9, 77);
    double s = 0, s2 = 0;
    for (const auto& set : sets) {
      const double x = br.path_norms[mask_of(set)];
      s += x;
      s2 += x * x;
    }
    const double mean = s / 9, var = (s2 - 9 * mean * mean) / 8;
    const LengthStats& ls = sr.lengths[k - 1];
    EXPECT_EQ(ls.length, k);
    EXPECT_EQ(ls.samples, 9);
    EXPECT_NEAR(ls.mean, mean, 1e-10 * mean);
    EXPECT_NEAR(ls.mean_sq, s2 / 9, 1e-10 * s2 / 9);
    // the sample std (n - 1 = 8), not the population std (n = 9), which is 6% smaller
    EXPECT_NEAR(ls.std, std::sqrt(var), 1e-6 * mean);
    EXPECT_GT(std::abs(ls.std - std::sqrt(var * 8 / 9)), 0.02 * std::sqrt(var));
    EXPECT_NEAR(ls.total, mean * std::tgamma(n + 1) / std::tgamma(k + 1) / std::tgamma(n - k + 1),
                1e-9 * ls.total);
    EXPECT_TRUE(std::isnan(ls.norm));
  }
  EXPECT_TRUE(std::isnan(sr.residual));
  unravel::testing::expect_gradient_arithmetic(to_json(sr));  // shares and range over lengths 1..4
  // brute force reports the population std (n) over all C(n, k) paths of a length
  for (int k = 0; k <= n; ++k) {
    std::vector<double> xs;
    for (uint32_t mask = 0; mask < (1u << n); ++mask)
      if (__builtin_popcount(mask) == k) xs.push_back(br.path_norms[mask]);
    double mean = 0, ss = 0;
    for (double x : xs) mean += x / xs.size();
    for (double x : xs) ss += (x - mean) * (x - mean);
    const double population = std::sqrt(ss / xs.size());
    EXPECT_NEAR(br.lengths[k].mean, mean, 1e-12 * mean) << "length " << k;
    EXPECT_NEAR(br.lengths[k].std, population, 1e-9 * mean) << "length " << k;
    if (xs.size() > 1) {
      EXPECT_GT(std::abs(br.lengths[k].std - std::sqrt(ss / (xs.size() - 1))), 1e-3 * population);
    }
  }
  unravel::testing::expect_gradient_arithmetic(to_json(br));
}

// ---- random-sign estimator ------------------------------------------------------------------

// With M independent draws, the estimate of sum_{|S|=k} ||g_S||^2 is a mean of M i.i.d. values:
// it must lie within 4 standard errors of the brute-force value (two-sided normal tail 6e-5 per
// length; the draws are seeded, so the test is deterministic). Length 0 and n hold one path
// each, whose squared norm the estimator returns exactly.
// Eval mode draws signs per sample, train mode one per block for the whole batch.
class RandomSigns : public ::testing::TestWithParam<BnMode> {};

TEST_P(RandomSigns, EstimatorIsUnbiased) {
  Network net = make_net("resnet14", "B", 9);
  const Batch batch = make_batch(3, 9);
  const int n = net->num_blocks();
  GradientOptions o;
  o.bn = GetParam();
  o.sign_samples = 300;
  o.seed = 2024;
  const GradientResult ex = exact_gradients(net, batch.images, batch.labels, o);
  const GradientResult br = brute_gradients(net, batch.images, batch.labels, o);
  for (int k = 0; k <= n; ++k) {
    const LengthStats& e = ex.lengths[k];
    const LengthStats& b = br.lengths[k];
    SCOPED_TRACE("length " + std::to_string(k));
    ASSERT_GT(b.sum_sq, 0);
    if (k == 0 || k == n) {
      EXPECT_NEAR(e.sum_sq, b.sum_sq, 1e-10 * b.sum_sq);
      EXPECT_NEAR(e.sum_sq_se, 0.0, 1e-10 * b.sum_sq);
      continue;
    }
    EXPECT_GT(e.sum_sq_se, 0);
    EXPECT_LT(e.sum_sq_se, 0.25 * b.sum_sq) << "too few draws for a meaningful test";
    EXPECT_LT(std::abs(e.sum_sq - b.sum_sq), 4 * e.sum_sq_se)
        << "estimate " << e.sum_sq << " +- " << e.sum_sq_se << " vs exact " << b.sum_sq;
    EXPECT_NEAR(e.mean_sq * e.count, e.sum_sq, 1e-12 * e.sum_sq);
    EXPECT_NEAR(e.total, std::sqrt(e.mean_sq) * e.count, 1e-12 * e.total);
  }
}

INSTANTIATE_TEST_SUITE_P(BnModes, RandomSigns, ::testing::Values(BnMode::Eval, BnMode::Train),
                         [](const ::testing::TestParamInfo<BnMode>& info) {
                           return std::string(bn_mode_name(info.param));
                         });

// ---- gates against finite differences -------------------------------------------------------

// (kFdStep, the central-difference step, is defined at the top of the file.)

// Input of block b of the intact network (no grad).
Tensor block_input(Network& net, const Tensor& images, int b) {
  torch::NoGradGuard no_grad;
  Tensor h = net->stem(images);
  for (int i = 1; i < b; ++i) {
    Step st;
    st.block = i;
    h = net->block(i).run(h, st);
  }
  return h;
}

// Gated backward of one block vs the central difference of the function whose gated-off branch
// is frozen at its value at the base point x0: ResidualOnly -> post(s(x0) + r(x)),
// ShortcutOnly -> post(s(x) + r(x0)); compared along 3 random directions.
TEST(Gradients, BlockGatesMatchFiniteDifferencesOfFrozenBranches) {
  for (BnMode bn : {BnMode::Eval, BnMode::Train}) {
    for (const std::string model : {"preresnet14", "resnet14"}) {
      for (const std::string shortcut : {"A", "B"}) {
        Network net = make_net(model, shortcut, 13);
        net->train(bn == BnMode::Train);
        const Batch batch = make_batch(3, 13);
        for (int b : {1, 3, 5}) {  // identity shortcut, downsampling (stage 2), downsampling (stage 3)
          SCOPED_TRACE(model + shortcut + " block " + std::to_string(b) +
                       (bn == BnMode::Train ? " train" : " eval"));
          models::BlockImpl& blk = net->block(b);
          const Tensor x0 = block_input(net, batch.images, b);
          torch::manual_seed(b);
          Tensor w;  // cotangent of the block output
          Tensor s0, r0;
          {
            torch::NoGradGuard ng;
            s0 = blk.shortcut(x0);
            r0 = blk.residual(x0);
            w = torch::randn_like(blk.post(s0 + r0));
          }
          for (Gate gate : {Gate::ResidualOnly, Gate::ShortcutOnly}) {
            Step st;
            st.block = b;
            st.gate = gate;
            Tensor x = x0.clone().requires_grad_(true);
            Tensor y = blk.run(x, st);
            const Tensor gx = torch::autograd::grad({(y * w).sum()}, {x})[0];
            auto f = [&](const Tensor& xx) {
              torch::NoGradGuard ng;
              Tensor z = gate == Gate::ResidualOnly ? s0 + blk.residual(xx) : blk.shortcut(xx) + r0;
              return (blk.post(z) * w).sum().item<double>();
            };
            for (int d = 0; d < 3; ++d) {
              const Tensor dir = torch::randn_like(x0);
              const double h = kFdStep;
              const double fd = (f(x0 + h * dir) - f(x0 - h * dir)) / (2 * h);
              const double an = (gx * dir).sum().item<double>();
              EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd)))
                  << gate_name(gate) << " direction " << d;
            }
          }
        }
      }
    }
  }
}

// A whole path: its gradient (through the gates, and as the exact method sees it) is the
// derivative of the network in which every block's unused branch is frozen at its value in the
// intact forward pass. Checked along random directions by central differences.
TEST(Gradients, PathGradientMatchesFiniteDifferencesOfFrozenNetwork) {
  for (BnMode bn : {BnMode::Eval, BnMode::Train}) {
    for (const std::string model : {"preresnet8", "resnet8"}) {
      Network net = make_net(model, "B", 17);
      const Batch batch = make_batch(3, 17);
      const int n = net->num_blocks();
      for (uint32_t mask : {0u, 2u, 5u, 7u}) {
        SCOPED_TRACE(model + " path " + std::to_string(mask) + (bn == BnMode::Train ? " train" : " eval"));
        const Tensor g = path_gradient(net, batch.images, batch.labels, blocks_of(mask, n), bn);
        net->train(bn == BnMode::Train);
        std::vector<Tensor> s0(n + 1), r0(n + 1);
        Tensor h0;
        {
          torch::NoGradGuard ng;
          h0 = net->stem(batch.images);
          Tensor h = h0;
          for (int i = 1; i <= n; ++i) {
            s0[i] = net->block(i).shortcut(h);
            r0[i] = net->block(i).residual(h);
            h = net->block(i).post(s0[i] + r0[i]);
          }
        }
        auto loss = [&](const Tensor& start) {
          torch::NoGradGuard ng;
          Tensor h = start;
          for (int i = 1; i <= n; ++i) {
            models::BlockImpl& blk = net->block(i);
            const bool res = (mask >> (i - 1)) & 1u;
            h = blk.post(res ? s0[i] + blk.residual(h) : blk.shortcut(h) + r0[i]);
          }
          return torch::nn::functional::cross_entropy(net->head(h), batch.labels).item<double>();
        };
        net->eval();
        torch::manual_seed(mask + 1);
        for (int d = 0; d < 2; ++d) {
          const Tensor dir = torch::randn_like(h0);
          const double h = kFdStep;
          net->train(bn == BnMode::Train);
          const double fd = (loss(h0 + h * dir) - loss(h0 - h * dir)) / (2 * h);
          net->eval();
          const double an = (g * dir).sum().item<double>();
          EXPECT_NEAR(an, fd, 1e-6 * std::max(1e-3, std::abs(fd))) << "direction " << d;
        }
      }
    }
  }
}

// ---- path sets, counts, errors, output ------------------------------------------------------

TEST(Gradients, SamplePathSetsAreUniformSubsetsAndDeterministic) {
  const auto a = sample_path_sets(6, 2, 3000, 5);
  const auto b = sample_path_sets(6, 2, 3000, 5);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, sample_path_sets(6, 2, 3000, 6));
  std::vector<int> hits(7, 0);
  for (const auto& s : a) {
    ASSERT_EQ(s.size(), 2u);
    EXPECT_LT(s[0], s[1]);
    for (int x : s) ++hits[x];
  }
  // each block in a set with probability 1/3: 1000 +- 26 per block, 5 standard deviations allowed
  for (int i = 1; i <= 6; ++i) EXPECT_NEAR(hits[i], 1000, 130) << "block " << i;
  // forced blocks are in every set; impossible lengths give no sets
  for (const auto& s : sample_path_sets(5, 3, 50, 1, {2, 4})) {
    EXPECT_EQ(s.size(), 3u);
    EXPECT_TRUE(std::find(s.begin(), s.end(), 2) != s.end());
    EXPECT_TRUE(std::find(s.begin(), s.end(), 4) != s.end());
  }
  EXPECT_TRUE(sample_path_sets(5, 1, 50, 1, {2, 4}).empty());
  EXPECT_EQ(sample_path_sets(4, 0, 3, 1), (std::vector<std::vector<int>>{{}, {}, {}}));
}

TEST(Gradients, PathCounts) {
  EXPECT_EQ(path_count_decimal(54, 27), "1946939425648112");
  EXPECT_EQ(path_count(54, 27), 1946939425648112.0);
  EXPECT_EQ(path_count_decimal(6, 2), "15");
  EXPECT_EQ(path_count_decimal(5, 4, 3), "2");  // C(2, 1)
  EXPECT_EQ(path_count_decimal(5, 2, 3), "0");
  EXPECT_EQ(path_count(5, 2, 3), 0.0);
}

TEST(Gradients, BruteForceRefusesLargeNetworks) {
  Network net(NetworkOptions("preresnet110").in_channels(1).input_size(8, 8));
  const Batch batch = make_batch();
  try {
    brute_gradients(net, batch.images.to(torch::kFloat32), batch.labels, GradientOptions());
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("54 blocks"), std::string::npos) << e.what();
  }
}

TEST(Gradients, BadOptionsAreUserErrors) {
  EXPECT_THROW(parse_bn_mode("batch"), UserError);
  EXPECT_EQ(parse_bn_mode("train"), BnMode::Train);
  EXPECT_THROW(parse_sample_engine("fast"), UserError);
  Network net = make_net("preresnet8");
  const Batch batch = make_batch();
  GradientOptions o;
  o.max_length = 4;  // 3 blocks
  EXPECT_THROW(sample_gradients(net, batch.images, batch.labels, o), UserError);
  EXPECT_THROW(parse_gradient_method("magic"), UserError);
  EXPECT_EQ(parse_gradient_method("sample"), GradientMethod::Sample);
  EXPECT_STREQ(method_name(GradientMethod::Brute), "brute");
}

TEST(Gradients, AveragingAndJson) {
  Network net = make_net("preresnet8");
  const Batch b1 = make_batch(3, 1), b2 = make_batch(3, 2);
  GradientOptions o;
  o.sign_samples = 4;
  const GradientResult r1 = exact_gradients(net, b1.images, b1.labels, o);
  const GradientResult r2 = exact_gradients(net, b2.images, b2.labels, o);
  const GradientResult avg = average_results({r1, r2}, 0.9);
  EXPECT_EQ(avg.batches, 2);
  for (size_t k = 0; k < avg.lengths.size(); ++k) {
    EXPECT_DOUBLE_EQ(avg.lengths[k].norm, (r1.lengths[k].norm + r2.lengths[k].norm) / 2);
    // exact: mean squares average; rms, mean and total follow from them
    const double ms = (r1.lengths[k].mean_sq + r2.lengths[k].mean_sq) / 2;
    EXPECT_DOUBLE_EQ(avg.lengths[k].mean_sq, ms);
    EXPECT_DOUBLE_EQ(avg.lengths[k].mean, std::sqrt(ms));
    EXPECT_DOUBLE_EQ(avg.lengths[k].total, std::sqrt(ms) * avg.lengths[k].count);
    EXPECT_DOUBLE_EQ(avg.lengths[k].sum_sq_se,
                     std::hypot(r1.lengths[k].sum_sq_se, r2.lengths[k].sum_sq_se) / 2);
    EXPECT_EQ(avg.lengths[k].samples, 8);
  }
  EXPECT_DOUBLE_EQ(avg.residual, std::max(r1.residual, r2.residual));
  // shares = total / sum of totals and the effective range, recomputed from the totals
  const nlohmann::json j = to_json(avg);
  unravel::testing::expect_gradient_arithmetic(j);
  unravel::testing::expect_gradient_arithmetic(to_json(r1));
  EXPECT_EQ(j["method"], "exact");
  EXPECT_EQ(j["n"], 3);
  ASSERT_EQ(j["lengths"].size(), 4u);
  EXPECT_EQ(j["lengths"][1]["length"], 1);
  EXPECT_EQ(j["lengths"][1]["paths"], "3");
  EXPECT_TRUE(j["lengths"][1]["std"].is_null());  // exact has no single-path std
  EXPECT_TRUE(j["lengths"][1]["norm"].is_number());
  EXPECT_EQ(j["effective_range"].size(), 2u);
  EXPECT_TRUE(j["residual"].is_number());
  EXPECT_TRUE(j.contains("seconds"));
  const std::string csv = to_csv(avg);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "length,paths,norm,mean,std,total,rms,mean_sq,mean_sq_se,sum_sq,sum_sq_se,share,samples");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
}

}  // namespace
}  // namespace unravel::paths
