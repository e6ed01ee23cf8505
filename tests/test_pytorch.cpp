// Cross-checks against Python PyTorch (Debian's python3-torch at /usr/bin/python3): logits of
// every family under several plans against an independent functional forward written in Python
// (scripts/crosscheck_forward.py), from a checkpoint that torch.load reads. The plans are explicit
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
