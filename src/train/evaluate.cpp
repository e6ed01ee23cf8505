// evaluate(): a sweep of one plan through the evaluation engine.
#include "train/evaluate.h"

#include "engine/engine.h"

namespace unravel {

Metrics evaluate(models::Network& net, const Plan& plan, const data::Split& split, const data::Normalizer& norm,
                 const EvalOptions& opts) {
  models::Network copy = make_eval_copy(net, /*fold=*/true, /*channels_last=*/false, opts.precision);
  EngineOptions eo;
  eo.batch_size(opts.batch_size);
  if (opts.progress) eo.progress("eval");
  if (opts.on_logits) eo.on_logits([&](size_t, int64_t first, const torch::Tensor& l) { opts.on_logits(first, l); });
  return evaluate_plans(copy, {plan}, split, norm, eo)[0];
}

}  // namespace unravel
