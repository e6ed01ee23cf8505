// Cross-checks against Python PyTorch (Debian's python3-torch at /usr/bin/python3): logits of
// every family under several plans against an independent functional forward written in Python
// (scripts/crosscheck_forward.py), from a checkpoint that torch.load reads; and the gradients of
// a bf16 training step (train --precision bf16) against torch.autocast
// (scripts/crosscheck_autocast.py). The plans are explicit
// data written here (the order of blocks, the deleted blocks, the residual scales), never plans
// that unravel parsed: unravel runs them as steps built from that data, Python applies the same
// data to its own forward and also reads the text form with its own small parser. Skipped where
// python3-torch is absent.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <set>

#include "core/util.h"
#include "engine/compute.h"
#include "testing.h"
#include "train/checkpoint.h"

using namespace unravel;
namespace fs = std::filesystem;
namespace ut = unravel::testing;

namespace {

// A plan as plain data: blocks in the order they run (repeats run a block again), the blocks
// whose every step runs its shortcut only, the residual scale of each block (default 1), and the
// same plan in the text form of README "Execution plans".
struct ExplicitPlan {
  std::string text;
  std::vector<int> order;
  std::set<int> deleted;
  std::map<int, double> scales;
};

// The six-block networks (two blocks per stage; blocks 1 and 2 are the only same-shape pair).
const std::vector<ExplicitPlan>& six_block_plans() {
  static const std::vector<ExplicitPlan> plans = {
      {"intact", {1, 2, 3, 4, 5, 6}, {}, {}},
      {"delete=2,3", {1, 2, 3, 4, 5, 6}, {2, 3}, {}},
      {"swap=1:2 delete=5", {2, 1, 3, 4, 5, 6}, {5}, {}},
      {"duplicate=4 scale=6:0.5", {1, 2, 3, 4, 4, 5, 6}, {}, {{6, 0.5}}},
      {"order=1,1,2,3,4,5,6,6", {1, 1, 2, 3, 4, 5, 6, 6}, {}, {}},
      {"scale=1:0.5,4:2 delete=1", {1, 2, 3, 4, 5, 6}, {1}, {{1, 0.5}, {4, 2.0}}},
      {"order=1,2,2,3-6 delete=2 scale=4:2,6:-0.5", {1, 2, 2, 3, 4, 5, 6}, {2}, {{4, 2.0}, {6, -0.5}}},
  };
  return plans;
}

// The plan's steps built straight from the data (no parsing).
Plan plan_of(const ExplicitPlan& e, int n_blocks) {
  Plan p = Plan::intact(n_blocks);
  p.steps().clear();
  for (int b : e.order) {
    Step s;
    s.block = b;
    s.deleted = e.deleted.count(b) > 0;
    auto it = e.scales.find(b);
    s.residual_scale = it == e.scales.end() ? 1.0 : it->second;
    p.steps().push_back(s);
  }
  return p;
}

nlohmann::json json_of(const ExplicitPlan& e) {
  nlohmann::json scales = nlohmann::json::object();
  for (const auto& [b, s] : e.scales) scales[std::to_string(b)] = s;
  return {{"text", e.text}, {"order", e.order}, {"deleted", e.deleted}, {"scales", scales}};
}

// Batch norm that is not the identity.
void randomize_batchnorm(models::Network& net) {
  torch::NoGradGuard ng;
  for (auto& m : net->modules(false))
    if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      b->weight.uniform_(0.5, 1.5);
      b->bias.uniform_(-0.3, 0.3);
      b->running_mean.uniform_(-0.3, 0.3);
      b->running_var.uniform_(0.5, 2.0);
    }
}

}  // namespace

TEST(PyTorch, ForwardUnderPlansMatchesAnIndependentImplementation) {
  if (!ut::python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  for (std::string model : {"preresnet14", "resnet14", "plain14"}) {
    for (std::string sc : {"A", "B"}) {
      SCOPED_TRACE(model + " shortcut " + sc);
      ut::TempDir dir("pt");
      torch::manual_seed(23);
      models::Network net(models::NetworkOptions(model).in_channels(2).input_size(10, 10).shortcut(sc));
      net->to(torch::kFloat64);
      randomize_batchnorm(net);
      net->eval();
      auto x = torch::randn({3, 2, 10, 10}, torch::kFloat64);
      nlohmann::json plans = nlohmann::json::array();
      TensorMap logits;
      torch::NoGradGuard ng;
      const auto& cases = six_block_plans();
      for (size_t i = 0; i < cases.size(); ++i) {
        const Plan p = plan_of(cases[i], net->num_blocks());
        p.validate(net->block_infos());
        // unravel's parser reads the text form to the same steps
        EXPECT_EQ(Plan::parse(cases[i].text, net->num_blocks()), p) << cases[i].text;
        plans.push_back(json_of(cases[i]));
        logits["logits." + std::to_string(i)] = net->forward(x, p);
      }
      // the plans change the logits (so that agreeing on them says something)
      EXPECT_FALSE(torch::allclose(logits.at("logits.0"), logits.at("logits.1")));
      write_json_atomic(dir.file("case.json"), {{"model", model}, {"shortcut", sc}, {"plans", plans}});
      save_tensors_atomic(dir.file("weights.pt"), network_state(net));
      save_tensors_atomic(dir.file("input.pt"), {{"x", x}});
      save_tensors_atomic(dir.file("logits.pt"), logits);
      const ut::CommandResult r =
          ut::run_python(std::string(UNRAVEL_TEST_SOURCE_DIR) + "/scripts/crosscheck_forward.py " + dir.str());
      EXPECT_EQ(r.code, 0) << r.out << r.err;
      EXPECT_EQ(ut::count_lines(r.out), static_cast<int>(cases.size())) << r.out;  // one line per plan
    }
  }
}

// One training-mode forward and backward, as the trainer does it (MixedPrecision around the
// forward, float32 logits into the loss), in fp32 and in bf16, against the same step in PyTorch
// plainly and under torch.autocast("cpu", torch.bfloat16) on the same weights and batch.
TEST(PyTorch, Bf16TrainingStepMatchesTorchAutocast) {
  if (!ut::python_has("torch")) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  for (std::string model : {"preresnet14", "resnet14"}) {
    SCOPED_TRACE(model);
    ut::TempDir dir("pt-bf16");
    torch::manual_seed(29);
    models::Network net(models::NetworkOptions(model).in_channels(1).input_size(12, 12).shortcut("B"));
    randomize_batchnorm(net);
    auto x = torch::randn({16, 1, 12, 12});
    auto y = torch::randint(0, 10, {16}, torch::kLong);
    save_tensors_atomic(dir.file("weights.pt"), network_state(net));  // before any step changes the statistics
    net->train();
    TensorMap grads;
    for (Precision p : {Precision::FP32, Precision::BF16}) {
      const std::string tag = precision_name(p);
      net->zero_grad();
      torch::Tensor logits;
      {
        MixedPrecision autocast(p, torch::kCPU);
        logits = net->forward(x, Plan::intact(net->num_blocks()));
        // inside the scope the classifier ran in bf16 (or not)
        EXPECT_EQ(logits.scalar_type(), p == Precision::BF16 ? torch::kBFloat16 : torch::kFloat);
      }
      EXPECT_EQ(torch::conv2d(x, torch::ones({1, 1, 3, 3})).scalar_type(), torch::kFloat);  // scope gone
      auto loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), y);
      loss.backward();
      grads[tag + ".loss"] = loss.detach();
      for (const auto& kv : net->named_parameters()) {
        ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
        EXPECT_EQ(kv.value().grad().scalar_type(), torch::kFloat) << kv.key();  // float32 master weights
        grads[tag + "." + kv.key()] = kv.value().grad().clone();
      }
    }
    write_json_atomic(dir.file("case.json"), {{"model", model}, {"shortcut", "B"}, {"classes", 10}, {"in_channels", 1}});
    save_tensors_atomic(dir.file("batch.pt"), {{"x", x}, {"y", y}});
    save_tensors_atomic(dir.file("grads.pt"), grads);
    const ut::CommandResult r =
        ut::run_python(std::string(UNRAVEL_TEST_SOURCE_DIR) + "/scripts/crosscheck_autocast.py " + dir.str());
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    std::cout << model << ": " << r.out;
    // the same kernels on both sides: equal up to the order of sums (0 when measured)
    EXPECT_LT(j.at("fp32").get<double>(), 1e-5) << r.out;
    EXPECT_LT(j.at("bf16").get<double>(), 1e-4) << r.out;
    // and bf16 did run: it moved some gradient by over 1% of that gradient's size
    EXPECT_GT(j.at("bf16_vs_fp32").get<double>(), 1e-2) << r.out;
    for (const char* k : {"fp32_loss", "bf16_loss"})
      EXPECT_NEAR(j.at(k)[0].get<double>(), j.at(k)[1].get<double>(), 1e-5) << k;
  }
}
