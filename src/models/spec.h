// Model names: the families unravel builds and what a name means (block type, stem, blocks per
// stage, groups and widths, default shortcut). Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace unravel::models {

enum class Family { ResNet, PreResNet, Plain };
const char* family_name(Family f);  // "resnet", "preresnet", "plain"

struct ModelSpec {
  std::string name;                    // as given: "preresnet110", "resnet50", "resnext50_32x4d"
  Family family = Family::PreResNet;   // post-activation, pre-activation or no skips
  bool bottleneck = false;             // 1x1-3x3-1x1 blocks (else two 3x3 convolutions)
  bool imagenet = false;               // 7x7/2 stem + 3x3/2 max-pool, widths 64-512 (else CIFAR:
                                       // 3x3 stem, widths 16-64)
  std::vector<int> blocks_per_stage;   // {18,18,18} for preresnet110, {3,4,6,3} for resnet50
  int depth = 0;
  int64_t groups = 1;                  // grouped 3x3 convolutions of bottlenecks (ResNeXt)
  int64_t width_per_group = 64;        // bottleneck width = planes * width_per_group / 64 * groups
  bool torchvision = false;            // torchvision.models.<name>: its layout and parameter names
  std::string default_shortcut = "A";  // what --shortcut means when not given
  // Throws UserError("unknown model 'x': ...") for names that are not one of the families.
  static ModelSpec parse(const std::string& name);
  // Every torchvision architecture unravel builds (--arch of `unravel import`).
  static const std::vector<std::string>& torchvision_names();
};

}  // namespace unravel::models
