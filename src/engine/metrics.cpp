// Classification metrics (see metrics.h).
#include "engine/metrics.h"

namespace unravel {

Metrics::Metrics(int64_t num_classes) : class_n(num_classes, 0), class_correct(num_classes, 0) {}

void Metrics::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::NoGradGuard ng;
  auto lg = logits.to(torch::kCPU, torch::kFloat64);  // (B, K)
  auto y = labels.to(torch::kCPU);                     // (B)
  loss_sum += torch::nn::functional::cross_entropy(
                  lg, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
  auto pred = lg.argmax(1);
  auto hit = pred.eq(y);
  const int64_t k = std::min<int64_t>(5, lg.size(1));
  auto top5 = std::get<1>(lg.topk(k, 1)).eq(y.unsqueeze(1)).any(1);
  n += y.size(0);
  correct += hit.sum().item<int64_t>();
  correct5 += top5.sum().item<int64_t>();
  auto ya = y.accessor<int64_t, 1>();
  auto ha = hit.accessor<bool, 1>();
  for (int64_t i = 0; i < y.size(0); ++i) {
    if (ya[i] >= static_cast<int64_t>(class_n.size())) {
      class_n.resize(ya[i] + 1, 0);
      class_correct.resize(ya[i] + 1, 0);
    }
    class_n[ya[i]]++;
    class_correct[ya[i]] += ha[i];
  }
}

void Metrics::merge(const Metrics& o) {
  n += o.n;
  correct += o.correct;
  correct5 += o.correct5;
  loss_sum += o.loss_sum;
  if (o.class_n.size() > class_n.size()) {
    class_n.resize(o.class_n.size(), 0);
    class_correct.resize(o.class_n.size(), 0);
  }
  for (size_t c = 0; c < o.class_n.size(); ++c) {
    class_n[c] += o.class_n[c];
    class_correct[c] += o.class_correct[c];
  }
}

double Metrics::top1_error() const { return n ? 1.0 - static_cast<double>(correct) / n : 0.0; }
double Metrics::top5_error() const { return n ? 1.0 - static_cast<double>(correct5) / n : 0.0; }
double Metrics::loss() const { return n ? loss_sum / n : 0.0; }

std::vector<double> Metrics::per_class_error() const {
  std::vector<double> e(class_n.size(), 0.0);
  for (size_t c = 0; c < class_n.size(); ++c)
    e[c] = class_n[c] ? 1.0 - static_cast<double>(class_correct[c]) / class_n[c] : 0.0;
  return e;
}

nlohmann::json Metrics::to_json() const {
  return {{"top1_error", top1_error()}, {"top5_error", top5_error()}, {"loss", loss()},
          {"correct", correct},         {"n", n},                     {"per_class_error", per_class_error()}};
}

nlohmann::json Metrics::counts() const {
  return {{"n", n},           {"correct", correct},    {"correct5", correct5},
          {"loss_sum", loss_sum}, {"class_n", class_n}, {"class_correct", class_correct}};
}

Metrics Metrics::from_counts(const nlohmann::json& j) {
  Metrics m(0);
  m.n = j.at("n").get<int64_t>();
  m.correct = j.at("correct").get<int64_t>();
  m.correct5 = j.at("correct5").get<int64_t>();
  m.loss_sum = j.at("loss_sum").get<double>();
  m.class_n = j.at("class_n").get<std::vector<int64_t>>();
  m.class_correct = j.at("class_correct").get<std::vector<int64_t>>();
  return m;
}

}  // namespace unravel
