// Classification metrics summed over batches: top-1/top-5 counts, summed cross-entropy, per
// class; exactly mergeable across batches, shards and resumed runs.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace unravel {

// Accumulates classification metrics over batches of logits.
struct Metrics {
  explicit Metrics(int64_t num_classes = 10);
  void add(const torch::Tensor& logits, const torch::Tensor& labels);  // (B,K), (B)
  void merge(const Metrics& o);
  int64_t n = 0, correct = 0, correct5 = 0;
  double loss_sum = 0;  // summed cross-entropy
  std::vector<int64_t> class_n, class_correct;
  double top1_error() const;
  double top5_error() const;
  double loss() const;
  std::vector<double> per_class_error() const;
  // {"top1_error","top5_error","loss","correct","n","per_class_error"}
  nlohmann::json to_json() const;
  // The raw counts, exactly ({"n","correct","correct5","loss_sum","class_n","class_correct"}),
  // and back: for progress files that a resumed run continues from.
  nlohmann::json counts() const;
  static Metrics from_counts(const nlohmann::json& j);
};

}  // namespace unravel
