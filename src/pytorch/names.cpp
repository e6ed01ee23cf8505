// Name mapping and architecture guessing (see names.h).
#include "pytorch/names.h"

#include <fmt/format.h>

#include <regex>

#include "models/spec.h"

namespace unravel::pytorch {

std::map<std::string, std::string> pytorch_names(const std::vector<std::string>& ours, bool torchvision,
                                                 const std::vector<int>& blocks_per_stage) {
  std::map<std::string, std::string> out;
  // block index (1-based) -> "layerS.J"
  std::vector<std::string> layer_of{""};
  for (size_t s = 0; s < blocks_per_stage.size(); ++s)
    for (int j = 0; j < blocks_per_stage[s]; ++j) layer_of.push_back(fmt::format("layer{}.{}", s + 1, j));
  static const std::regex block_re(R"(^blocks\.([0-9]+)\.(.*)$)");
  for (const std::string& name : ours) {
    if (!torchvision) {
      out[name] = name;
      continue;
    }
    std::smatch m;
    std::string mapped;
    if (name.rfind("stem.conv.", 0) == 0) {
      mapped = "conv1." + name.substr(10);
    } else if (name.rfind("stem.bn.", 0) == 0) {
      mapped = "bn1." + name.substr(8);
    } else if (name.rfind("head.fc.", 0) == 0) {
      mapped = "fc." + name.substr(8);
    } else if (std::regex_match(name, m, block_re)) {
      const size_t index = std::stoul(m[1]);
      std::string rest = m[2];
      if (rest.rfind("shortcut_conv.", 0) == 0) rest = "downsample.0." + rest.substr(14);
      else if (rest.rfind("shortcut_bn.", 0) == 0) rest = "downsample.1." + rest.substr(12);
      mapped = (index < layer_of.size() ? layer_of[index] : name) + "." + rest;
    } else {
      mapped = name;
    }
    out[name] = mapped;
  }
  return out;
}

std::string guess_torchvision_arch(const std::vector<std::string>& names,
                                   const std::map<std::string, std::vector<int64_t>>& shapes) {
  static const std::regex layer_re(R"(^layer([1-4])\.([0-9]+)\.)");
  std::vector<int> blocks(4, 0);
  bool bottleneck = false;
  for (const std::string& n : names) {
    std::smatch m;
    if (!std::regex_search(n, m, layer_re)) continue;
    const int s = std::stoi(m[1]) - 1, j = std::stoi(m[2]);
    blocks[s] = std::max(blocks[s], j + 1);
    if (n.find(".conv3.") != std::string::npos) bottleneck = true;
  }
  auto shape = [&](const std::string& k) {
    auto it = shapes.find(k);
    return it == shapes.end() ? std::vector<int64_t>{} : it->second;
  };
  for (const std::string& arch : models::ModelSpec::torchvision_names()) {
    const models::ModelSpec s = models::ModelSpec::parse(arch);
    if (s.blocks_per_stage != blocks || s.bottleneck != bottleneck) continue;
    if (bottleneck) {  // width and groups of the first block's 3x3 convolution
      const auto w = shape("layer1.0.conv2.weight");  // (width, width / groups, 3, 3)
      if (w.size() != 4 || w[1] == 0) continue;
      const int64_t width = 64 * s.width_per_group / 64 * s.groups;
      if (w[0] != width || w[0] / w[1] != s.groups) continue;
    }
    return arch;
  }
  return "";
}

}  // namespace unravel::pytorch
