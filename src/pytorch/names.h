// Parameter names between unravel's networks and PyTorch's: torchvision's ResNets use
// torchvision's names (conv1, bn1, layer2.0.downsample.0, fc), every other family unravel's own
// (stem.conv, blocks.5.shortcut_conv, head.fc), which python/unravel_models.py builds too.
// Torch-free.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace unravel::pytorch {

// The PyTorch name of each of our parameters and buffers ("blocks.5.conv1.weight" ->
// "layer2.1.conv1.weight" for a torchvision architecture with blocks {2, 2, 2, 2}; unchanged
// otherwise). `ours` are the names of named_parameters() and named_buffers().
std::map<std::string, std::string> pytorch_names(const std::vector<std::string>& ours, bool torchvision,
                                                 const std::vector<int>& blocks_per_stage);

// A torchvision architecture whose layout fits the names and shapes a file holds (block counts
// per layer, bottleneck or basic, groups and widths), or "" if none does. `shape` gives the shape
// of a name, empty when absent.
std::string guess_torchvision_arch(const std::vector<std::string>& names,
                                   const std::map<std::string, std::vector<int64_t>>& shapes);

}  // namespace unravel::pytorch
