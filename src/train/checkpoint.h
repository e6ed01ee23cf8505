// Checkpoints: one pickled dict of named tensors (readable by Python's torch.load), written
// atomically. Keys: "param.<name>", "buffer.<name>", "momentum.<name>", "epoch".
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

#include "models/network.h"

namespace unravel {

using TensorMap = std::map<std::string, torch::Tensor>;

void save_tensors_atomic(const std::string& path, const TensorMap& tensors);
TensorMap load_tensors(const std::string& path);  // UserError naming the file

// Copies "param.*" and "buffer.*" into the network; a missing name or another shape is a
// UserError naming the file, the tensor and both shapes (a different architecture).
void load_network_state(models::Network& net, const TensorMap& tensors, const std::string& path);
TensorMap network_state(models::Network& net);  // "param.*" and "buffer.*", on the CPU

}  // namespace unravel
