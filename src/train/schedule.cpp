// Learning-rate schedules and the plans sampled per mini-batch in training (stochastic depth,
// k active blocks), with their test-time residual scales.
#include <fmt/format.h>

#include <cmath>
#include <numeric>

#include "core/errors.h"
#include "train/trainer.h"

namespace unravel {

double learning_rate(const TrainOptions& o, double t) {
  double lr = o.lr;
  if (o.schedule == Schedule::Step) {
    for (double m : o.milestones)
      if (t >= m * o.epochs) lr *= o.gamma;
  } else if (o.schedule == Schedule::Cosine) {
    lr = 0.5 * o.lr * (1.0 + std::cos(M_PI * std::min(1.0, t / o.epochs)));
  }
  if (o.warmup_epochs > 0 && t < o.warmup_epochs) lr *= 0.1 + 0.9 * t / o.warmup_epochs;
  return lr;
}

std::vector<double> survival_probabilities(int n, double p_last) {
  std::vector<double> p(n);
  for (int l = 1; l <= n; ++l) p[l - 1] = 1.0 - static_cast<double>(l) / n * (1.0 - p_last);
  return p;
}

Plan sample_stochastic_depth(int n, double p_last, Rng& rng) {
  Plan plan = Plan::intact(n);
  auto p = survival_probabilities(n, p_last);
  for (int l = 0; l < n; ++l)
    if (rng.uniform() >= p[l]) plan.steps()[l].deleted = true;
  return plan;
}

Plan sample_active_blocks(int n, int k, Rng& rng) {
  if (k < 0 || k > n) throw UserError(fmt::format("--active-blocks {} is not in 0..{}", k, n));
  Plan plan(Plan::intact(n));
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  for (Step& s : plan.steps()) s.deleted = true;
  for (int i : sample_without_replacement(idx, k, rng)) plan.steps()[i].deleted = false;
  return plan;
}

std::vector<double> test_time_scales(const TrainOptions& o, int n_blocks) {
  if (o.stochastic_depth > 0) return survival_probabilities(n_blocks, o.stochastic_depth);
  if (o.active_blocks > 0 && o.active_test == ActiveTest::Scaled)
    return std::vector<double>(n_blocks, static_cast<double>(o.active_blocks) / n_blocks);
  return {};
}

Rng training_plan_rng(uint64_t seed, int epoch) { return Rng::stream(mix(seed, static_cast<uint64_t>(epoch)), 1); }

}  // namespace unravel
