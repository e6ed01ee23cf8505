// Static description of one residual block: what `unravel info` prints and what plans are
// validated against. Torch-free so that plans and path arithmetic build without libtorch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace unravel {

using Shape = std::vector<int64_t>;  // (C, H, W) of one sample

struct BlockInfo {
  int index = 0;           // 1-based, as in the paper
  int stage = 0;           // 1-based stage (a stage ends where the resolution halves)
  bool downsample = false; // true when in_shape != out_shape (stride 2 and/or more channels)
  Shape in_shape;
  Shape out_shape;
  std::string kind;        // "basic", "preact-basic", "bottleneck", "preact-bottleneck", "plain"
};

std::string shape_string(const Shape& s);  // "16x28x28"

}  // namespace unravel
