// SGD with momentum (see sgd.h).
#include "train/sgd.h"

namespace unravel {

Sgd::Sgd(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, SgdOptions o)
    : o_(o), params_(named_params) {}

void Sgd::zero_grad() {
  for (auto& [n, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

void Sgd::step(double lr) {
  torch::NoGradGuard ng;
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;  // blocks skipped in this mini-batch
    torch::Tensor d = p.grad();
    if (o_.weight_decay != 0) d = d.add(p, o_.weight_decay);
    if (o_.momentum != 0) {
      auto it = buf_.find(name);
      if (it == buf_.end()) it = buf_.emplace(name, d.clone()).first;
      else it->second.mul_(o_.momentum).add_(d);
      d = o_.nesterov ? d.add(it->second, o_.momentum) : it->second;
    }
    p.add_(d, -lr);
  }
}

void Sgd::save(TensorMap& m) const {
  for (const auto& [n, b] : buf_) m["momentum." + n] = b.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);  // a snapshot
}

void Sgd::load(const TensorMap& m, torch::Device device) {
  for (const auto& [n, p] : params_) {
    auto it = m.find("momentum." + n);
    if (it != m.end()) buf_[n] = it->second.to(device, p.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  }
}

}  // namespace unravel
