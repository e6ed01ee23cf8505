// The readers of each --data kind (internal to src/data): each returns a whole Dataset or throws
// a UserError naming the file and the problem.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace unravel::data {

// Random streams of the data module (the second argument of mix() with the user's seed).
constexpr uint64_t kStreamShuffle = 1, kStreamAugment = 2, kStreamValSplit = 3,
                   kStreamSynthPrototypes = 4, kStreamSynthTrain = 5, kStreamSynthTest = 6;

Dataset load_idx_dataset(const DataSpec& spec);      // idx.cpp: mnist, fashion-mnist
Dataset load_cifar10(const DataSpec& spec);          // cifar.cpp
Dataset load_cifar100(const DataSpec& spec);         // cifar.cpp
Dataset load_synthetic(const DataSpec& spec);        // synthetic.cpp
Dataset load_tensor_file(const DataSpec& spec);      // tensor_file.cpp
Dataset load_image_folder(const DataSpec& spec);     // image_folder.cpp

// Checks every label byte against the class count: "<path>: label 12 at position 5 is out of
// range (classes 0..9)".
void check_labels(const torch::Tensor& labels_u8, int64_t num_classes, const std::string& path,
                  const char* word = "label");

torch::Tensor to_long_tensor(const std::vector<int64_t>& v);  // (N) int64 copy

// idx.cpp: one IDX file (raw or gzipped) of `ndims` dims as flat uint8, its dims in `dims` (fuzz/tests).
torch::Tensor read_idx_file(const std::string& path, int ndims, const char* what, std::vector<int64_t>& dims);

}  // namespace unravel::data
