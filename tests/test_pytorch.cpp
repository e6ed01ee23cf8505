// Cross-checks against Python PyTorch (Debian's python3-torch at /usr/bin/python3): logits of
// every family under several plans against an independent functional forward written in
// Python, from a checkpoint that torch.load reads. Skipped where python3-torch is absent.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/util.h"
#include "train/checkpoint.h"

using namespace unravel;
namespace fs = std::filesystem;

namespace {

bool python_torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

std::string script() {
  return std::string(UNRAVEL_TEST_SOURCE_DIR) + "/scripts/crosscheck_forward.py";
}

}  // namespace

TEST(PyTorch, ForwardUnderPlansMatchesAnIndependentImplementation) {
  if (!python_torch_available()) GTEST_SKIP() << "/usr/bin/python3 has no torch (apt-get install python3-torch)";
  for (std::string model : {"preresnet14", "resnet14", "plain14"}) {
    for (std::string sc : {"A", "B"}) {
      const fs::path dir = fs::temp_directory_path() / fmt::format("unravel_pt_{}_{}_{}", model, sc, ::getpid());
      fs::create_directories(dir);
      torch::manual_seed(23);
      models::Network net(models::NetworkOptions(model).in_channels(2).input_size(10, 10).shortcut(sc));
      net->to(torch::kFloat64);
      {
        torch::NoGradGuard ng;  // BN that is not the identity
        for (auto& m : net->modules(false))
          if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
            b->weight.uniform_(0.5, 1.5);
            b->bias.uniform_(-0.3, 0.3);
            b->running_mean.uniform_(-0.3, 0.3);
            b->running_var.uniform_(0.5, 2.0);
          }
      }
      net->eval();
      auto x = torch::randn({3, 2, 10, 10}, torch::kFloat64);
      std::vector<std::string> texts = {"intact", "delete=2,3", "swap=1:2 delete=5", "duplicate=4 scale=6:0.5",
                                        "order=1,1,2,3,4,5,6,6"};
      nlohmann::json plans = nlohmann::json::array();
      TensorMap logits;
      torch::NoGradGuard ng;
      for (size_t i = 0; i < texts.size(); ++i) {
        Plan p = Plan::parse(texts[i], net->num_blocks());
        nlohmann::json order = nlohmann::json::array(), deleted = nlohmann::json::array(), scales = nlohmann::json::array();
        for (const auto& s : p.steps()) {
          order.push_back(s.block);
          deleted.push_back(s.deleted);
          scales.push_back(s.residual_scale);
        }
        plans.push_back({{"text", texts[i]}, {"order", order}, {"deleted", deleted}, {"scales", scales}});
        logits["logits." + std::to_string(i)] = net->forward(x, p);
      }
      write_json_atomic((dir / "case.json").string(), {{"model", model}, {"shortcut", sc}, {"plans", plans}});
      save_tensors_atomic((dir / "weights.pt").string(), network_state(net));
      save_tensors_atomic((dir / "input.pt").string(), {{"x", x}});
      save_tensors_atomic((dir / "logits.pt").string(), logits);
      const std::string cmd = "/usr/bin/python3 " + script() + " " + dir.string() + " > " + (dir / "log").string() + " 2>&1";
      int rc = std::system(cmd.c_str());
      EXPECT_EQ(rc, 0) << model << " " << sc << ":\n" << read_text_file((dir / "log").string());
      fs::remove_all(dir);
    }
  }
}
