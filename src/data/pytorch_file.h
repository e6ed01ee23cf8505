// PyTorch files on the torch side: tensors that src/interop read (and checked) without torch,
// materialised as torch::Tensors. Used for tensors files (--data tensors:FILE), imported
// networks and checkpoints.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "interop/torch_file.h"

namespace unravel {

// A CPU tensor with the file's dtype, shape and values (a contiguous copy). UserError naming
// `where` for dtypes unravel does not use (complex).
torch::Tensor to_torch(const interop::TensorRef& t, const std::string& where);
// Shape as "3x64x7x7" for messages ("scalar" for 0-dim).
std::string shape_text(const std::vector<int64_t>& sizes);

}  // namespace unravel
