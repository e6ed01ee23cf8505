// The optimiser step (src/train/sgd.h): unravel::Sgd against the recurrences written out by hand,
// against torch.optim.SGD itself (run through /usr/bin/python3 on the same initial values and
// gradients), parameters that miss a gradient in a step, and an exact save/load round trip.
// Sections: closed form / torch.optim.SGD / parameters without a gradient / save and load.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "testing.h"
#include "train/checkpoint.h"
#include "train/sgd.h"

namespace unravel {
namespace {

using torch::Tensor;
using Named = std::vector<std::pair<std::string, Tensor>>;

Named params_of(const std::map<std::string, std::vector<double>>& values, torch::ScalarType dtype) {
  Named out;
  for (const auto& [name, v] : values)
    out.emplace_back(name, torch::tensor(v, torch::dtype(dtype)).requires_grad_(true));
  return out;
}

void set_grad(Tensor& p, const std::vector<double>& g) {
  p.mutable_grad() = torch::tensor(g, torch::dtype(p.scalar_type()));
}

std::vector<double> values(const Tensor& t) {
  const Tensor c = t.detach().to(torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// The update of torch.optim.SGD (dampening 0) for one element, written out:
//   d = g + wd p;  b = d (first step with a gradient), else b = m b + d;
//   step = nesterov ? d + m b : b  (m = 0: step = d, no buffer);  p = p - lr step.
struct ScalarSgd {
  SgdOptions o;
  double p = 0, b = 0;
  bool has_buffer = false;
  void step(double g, double lr) {
    const double d = g + o.weight_decay * p;
    double s = d;
    if (o.momentum != 0) {
      b = has_buffer ? o.momentum * b + d : d;
      has_buffer = true;
      s = o.nesterov ? d + o.momentum * b : b;
    }
    p -= lr * s;
  }
};

// ---- closed form ---------------------------------------------------------------------------------

// One parameter p0 = 1 with gradient 1 in each step, lr 0.1, weight decay 0.1, momentum 0.9:
// the first two steps worked out on paper.
TEST(Sgd, TwoStepsWorkedOutByHand) {
  struct Case {
    double momentum;
    bool nesterov;
    double p1, p2;
  };
  // plain:    d1 = 1.1, p1 = 1 - 0.11 = 0.89;   d2 = 1.089, p2 = 0.89 - 0.1089 = 0.7811
  // momentum: b1 = 1.1, p1 = 0.89;              b2 = 0.99 + 1.089 = 2.079, p2 = 0.89 - 0.2079 = 0.6821
  // Nesterov: step1 = 1.1 + 0.99 = 2.09, p1 = 0.791;  d2 = 1.0791, b2 = 0.99 + 1.0791 = 2.0691,
  //           step2 = 1.0791 + 1.86219 = 2.94129, p2 = 0.791 - 0.294129 = 0.496871
  for (const Case& c : {Case{0.0, false, 0.89, 0.7811}, Case{0.9, false, 0.89, 0.6821},
                        Case{0.9, true, 0.791, 0.496871}}) {
    SCOPED_TRACE(fmt::format("momentum {} nesterov {}", c.momentum, c.nesterov));
    Named ps = params_of({{"w", {1.0}}}, torch::kDouble);
    Sgd opt(ps, SgdOptions{c.momentum, /*weight_decay=*/0.1, c.nesterov});
    set_grad(ps[0].second, {1.0});
    opt.step(0.1);
    EXPECT_NEAR(values(ps[0].second)[0], c.p1, 1e-15);
    set_grad(ps[0].second, {1.0});
    opt.step(0.1);
    EXPECT_NEAR(values(ps[0].second)[0], c.p2, 1e-15);
  }
}

// Several elements and parameters, changing gradients and learning rates: every element follows
// the scalar recurrence, and the momentum buffers saved are the b of the recurrence.
TEST(Sgd, FollowsTheRecurrenceElementwise) {
  const std::vector<std::vector<double>> grads = {{0.5, -1.0, 2.0}, {-0.25, 0.75, 1.5}, {1.0, 1.0, -3.0}, {0.0, -2.0, 0.5}};
  const std::vector<double> lrs = {0.1, 0.05, 0.2, 0.01};
  for (const SgdOptions& o : {SgdOptions{0.0, 0.0, false}, SgdOptions{0.9, 1e-2, false}, SgdOptions{0.8, 0.05, true}}) {
    SCOPED_TRACE(fmt::format("momentum {} wd {} nesterov {}", o.momentum, o.weight_decay, o.nesterov));
    const std::vector<double> p0 = {1.0, -2.0, 0.5};
    Named ps = params_of({{"w", p0}}, torch::kDouble);
    Sgd opt(ps, o);
    std::vector<ScalarSgd> ref(3);
    for (int i = 0; i < 3; ++i) ref[i].o = o, ref[i].p = p0[i];
    for (size_t s = 0; s < grads.size(); ++s) {
      set_grad(ps[0].second, grads[s]);
      opt.step(lrs[s]);
      for (int i = 0; i < 3; ++i) ref[i].step(grads[s][i], lrs[s]);
      const auto got = values(ps[0].second);
      for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], ref[i].p, 1e-14) << "step " << s << " element " << i;
    }
    TensorMap saved;
    opt.save(saved);
    if (o.momentum == 0) {
      EXPECT_TRUE(saved.empty()) << "plain SGD keeps no buffer";
      continue;
    }
    ASSERT_EQ(saved.count("momentum.w"), 1u);
    const auto buf = values(saved.at("momentum.w"));
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(buf[i], ref[i].b, 1e-14) << "buffer element " << i;
  }
}

// ---- torch.optim.SGD -----------------------------------------------------------------------------

// The same float32 parameters and gradient sequence through torch.optim.SGD (dampening 0) in
// tests/data/sgd_reference.py: plain momentum and Nesterov with weight decay, and plain SGD; in
// step 3 parameter "b" has no gradient (torch skips it: p.grad is None). Final parameters and
// momentum buffers agree to 1e-6.
TEST(Sgd, MatchesTorchOptimSgd) {
  if (!testing::python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  testing::TempDir dir("sgd");
  const std::vector<SgdOptions> configs = {{0.9, 5e-4, false}, {0.9, 5e-4, true}, {0.0, 1e-3, false}, {0.5, 0.0, true}};
  const std::vector<double> lrs = {0.1, 0.1, 0.05, 0.02, 0.2};
  const int steps = static_cast<int>(lrs.size()), skip_step = 3;
  torch::manual_seed(42);
  TensorMap init = {{"param.a", torch::randn({3, 2})}, {"param.b", torch::randn({4})}};
  for (int s = 0; s < steps; ++s)
    for (const char* n : {"a", "b"})
      if (!(s == skip_step && std::string(n) == "b"))
        init[fmt::format("grad.{}.{}", s, n)] = torch::randn_like(init.at(std::string("param.") + n));
  save_tensors_atomic(dir.file("case.pt"), init);
  nlohmann::json cfg = nlohmann::json::array();
  for (const auto& o : configs) cfg.push_back({{"momentum", o.momentum}, {"weight_decay", o.weight_decay}, {"nesterov", o.nesterov}});
  testing::write_file(dir.file("case.json"), nlohmann::json{{"lrs", lrs}, {"configs", cfg}, {"names", {"a", "b"}}}.dump());
  const testing::CommandResult r = testing::run_python(testing::test_script("sgd_reference.py") + " " + dir.str());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const TensorMap want = load_tensors(dir.file("out.pt"));

  for (size_t c = 0; c < configs.size(); ++c) {
    SCOPED_TRACE("config " + cfg[c].dump());
    Named ps = {{"a", init.at("param.a").clone().requires_grad_(true)}, {"b", init.at("param.b").clone().requires_grad_(true)}};
    Sgd opt(ps, configs[c]);
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      for (auto& [n, p] : ps) {
        auto it = init.find(fmt::format("grad.{}.{}", s, n));
        if (it != init.end()) p.mutable_grad() = it->second.clone();
      }
      opt.step(lrs[s]);
    }
    TensorMap bufs;
    opt.save(bufs);
    for (const auto& [n, p] : ps) {
      const Tensor& ref = want.at(fmt::format("{}.param.{}", c, n));
      EXPECT_EQ(p.scalar_type(), torch::kFloat32);
      EXPECT_LE((p.detach() - ref).abs().max().item<double>(), 1e-6) << "parameter " << n;
      const std::string key = fmt::format("{}.momentum.{}", c, n);
      if (configs[c].momentum == 0) {
        EXPECT_EQ(want.count(key), 0u);
        EXPECT_EQ(bufs.count("momentum." + n), 0u);
        continue;
      }
      ASSERT_EQ(bufs.count("momentum." + n), 1u) << n;
      EXPECT_LE((bufs.at("momentum." + n) - want.at(key)).abs().max().item<double>(), 1e-6) << "buffer " << n;
    }
  }
}

// ---- parameters without a gradient ---------------------------------------------------------------

// A parameter without a gradient in a step (a block the sampled plan skipped) keeps its value and
// its momentum buffer; when it has a gradient again the buffer continues from where it was.
TEST(Sgd, ParametersWithoutAGradientAreLeftAloneAndKeepTheirMomentum) {
  const SgdOptions o{0.9, 0.01, false};
  Named ps = params_of({{"kept", {1.0, 2.0}}, {"skipped", {-1.0, 0.5}}}, torch::kDouble);
  Sgd opt(ps, o);
  ScalarSgd ref_skipped[2];
  for (int i = 0; i < 2; ++i) ref_skipped[i].o = o, ref_skipped[i].p = values(ps[1].second)[i];

  set_grad(ps[0].second, {0.3, -0.2});
  set_grad(ps[1].second, {1.0, -1.0});
  opt.step(0.1);
  for (int i = 0; i < 2; ++i) ref_skipped[i].step(i == 0 ? 1.0 : -1.0, 0.1);
  TensorMap before;
  opt.save(before);
  const Tensor buf_before = before.at("momentum.skipped").clone();
  const Tensor p_before = ps[1].second.detach().clone();

  opt.zero_grad();
  EXPECT_FALSE(ps[1].second.grad().defined()) << "zero_grad drops the gradients";
  set_grad(ps[0].second, {0.1, 0.1});  // "skipped" gets no gradient in this step
  opt.step(0.1);
  EXPECT_TRUE(torch::equal(ps[1].second.detach(), p_before)) << "a parameter without a gradient moved";
  TensorMap during;
  opt.save(during);
  EXPECT_TRUE(torch::equal(during.at("momentum.skipped"), buf_before)) << "its momentum changed";
  EXPECT_FALSE(torch::equal(during.at("momentum.kept"), before.at("momentum.kept")));

  opt.zero_grad();
  set_grad(ps[1].second, {0.5, 0.5});
  opt.step(0.1);
  for (int i = 0; i < 2; ++i) ref_skipped[i].step(0.5, 0.1);  // the recurrence without the skipped step
  const auto got = values(ps[1].second);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(got[i], ref_skipped[i].p, 1e-15) << "element " << i;
}

// ---- save and load -------------------------------------------------------------------------------

// Steps 1-3, save, steps 4-6 in the original; a fresh optimiser loaded from the save does steps
// 4-6 on a copy of the step-3 parameters: identical parameters and buffers, bit for bit. Done
// through a checkpoint file and through the map in memory (which must be a snapshot).
TEST(Sgd, SaveAndLoadContinueExactly) {
  for (bool nesterov : {false, true}) {
    for (bool through_file : {true, false}) {
      SCOPED_TRACE(fmt::format("nesterov {} through {}", nesterov, through_file ? "a file" : "memory"));
      const SgdOptions o{0.9, 1e-4, nesterov};
      torch::manual_seed(7);
      Named ps = {{"w", torch::randn({5, 3}).requires_grad_(true)}, {"v", torch::randn({7}).requires_grad_(true)}};
      std::vector<TensorMap> grads(6);
      for (auto& g : grads)
        for (auto& [n, p] : ps) g[n] = torch::randn_like(p);
      auto run_steps = [&](Sgd& opt, Named& params, int from, int to) {
        for (int s = from; s < to; ++s) {
          opt.zero_grad();
          for (auto& [n, p] : params) p.mutable_grad() = grads[s].at(n).clone();
          opt.step(0.05);
        }
      };
      Sgd a(ps, o);
      run_steps(a, ps, 0, 3);
      Named copy;
      for (const auto& [n, p] : ps) copy.emplace_back(n, p.detach().clone().requires_grad_(true));
      TensorMap saved;
      a.save(saved);
      testing::TempDir dir("sgd_ckpt");
      if (through_file) {
        save_tensors_atomic(dir.file("ckpt.pt"), saved);
        saved = load_tensors(dir.file("ckpt.pt"));
      }
      run_steps(a, ps, 3, 6);
      Sgd b(copy, o);
      b.load(saved, torch::kCPU);
      run_steps(b, copy, 3, 6);
      TensorMap ba, bb;
      a.save(ba);
      b.save(bb);
      for (size_t i = 0; i < ps.size(); ++i) {
        EXPECT_TRUE(torch::equal(ps[i].second, copy[i].second)) << ps[i].first;
        EXPECT_TRUE(torch::equal(ba.at("momentum." + ps[i].first), bb.at("momentum." + ps[i].first))) << ps[i].first;
      }
    }
  }
}

}  // namespace
}  // namespace unravel
