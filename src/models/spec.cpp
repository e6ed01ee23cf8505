// Model names (see spec.h): torchvision's table, the CIFAR-style families N = 6n+2, bottlenecks.
#include "models/spec.h"

#include <fmt/format.h>

#include <regex>

#include "core/errors.h"
#include "core/util.h"

namespace unravel::models {

const char* family_name(Family f) {
  return f == Family::ResNet ? "resnet" : f == Family::PreResNet ? "preresnet" : "plain";
}

namespace {

// torchvision.models' ResNets (0.14): block type, blocks per stage, groups, width per group.
struct TorchvisionArch {
  const char* name;
  bool bottleneck;
  std::vector<int> blocks;
  int64_t groups, width_per_group;
  int depth;
};

const std::vector<TorchvisionArch>& torchvision_table() {
  static const std::vector<TorchvisionArch> t = {
      {"resnet18", false, {2, 2, 2, 2}, 1, 64, 18},
      {"resnet34", false, {3, 4, 6, 3}, 1, 64, 34},
      {"resnet50", true, {3, 4, 6, 3}, 1, 64, 50},
      {"resnet101", true, {3, 4, 23, 3}, 1, 64, 101},
      {"resnet152", true, {3, 8, 36, 3}, 1, 64, 152},
      {"wide_resnet50_2", true, {3, 4, 6, 3}, 1, 128, 50},
      {"wide_resnet101_2", true, {3, 4, 23, 3}, 1, 128, 101},
      {"resnext50_32x4d", true, {3, 4, 6, 3}, 32, 4, 50},
      {"resnext101_32x8d", true, {3, 4, 23, 3}, 32, 8, 101},
      {"resnext101_64x4d", true, {3, 4, 23, 3}, 64, 4, 101},
  };
  return t;
}

}  // namespace

const std::vector<std::string>& ModelSpec::torchvision_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : torchvision_table()) v.push_back(a.name);
    return v;
  }();
  return names;
}

ModelSpec ModelSpec::parse(const std::string& name) {
  ModelSpec s;
  s.name = name;
  for (const auto& a : torchvision_table()) {
    if (name != a.name) continue;
    s.family = Family::ResNet;
    s.bottleneck = a.bottleneck;
    s.imagenet = true;
    s.blocks_per_stage = a.blocks;
    s.groups = a.groups;
    s.width_per_group = a.width_per_group;
    s.depth = a.depth;
    s.torchvision = true;
    s.default_shortcut = "B";
    return s;
  }
  static const std::regex re("^(resnet|preresnet|plain)([0-9]{1,5})$");
  std::smatch m;
  const std::string help =
      "use resnetN, preresnetN or plainN (N = 6n+2), resnet200, preresnet50-200, or torchvision's resnet18-152, "
      "wide_resnet50_2/101_2, resnext50_32x4d/101_32x8d/101_64x4d";
  if (!std::regex_match(name, m, re)) throw UserError(fmt::format("unknown model '{}': {}", elide_middle(name), help));
  s.family = m[1] == "resnet" ? Family::ResNet : m[1] == "preresnet" ? Family::PreResNet : Family::Plain;
  s.depth = std::stoi(m[2]);
  if (s.family != Family::Plain && (s.depth == 50 || s.depth == 101 || s.depth == 152 || s.depth == 200)) {
    // resnet50/101/152 are torchvision's (above); resnet200 and the pre-activation ones are the
    // same layout (He et al.'s ImageNet ResNets, projection shortcuts)
    s.bottleneck = true;
    s.imagenet = true;
    s.default_shortcut = "B";
    s.blocks_per_stage = s.depth == 50    ? std::vector<int>{3, 4, 6, 3}
                         : s.depth == 101 ? std::vector<int>{3, 4, 23, 3}
                         : s.depth == 152 ? std::vector<int>{3, 8, 36, 3}
                                          : std::vector<int>{3, 24, 36, 3};
    return s;
  }
  if (s.depth < 8 || (s.depth - 2) % 6 != 0 || s.depth > 6002)
    throw UserError(fmt::format("unknown model '{}': depth {} is not 6n+2; {}", name, s.depth, help));
  int n = (s.depth - 2) / 6;
  s.blocks_per_stage = {n, n, n};
  return s;
}

}  // namespace unravel::models
