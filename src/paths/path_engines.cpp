// The recorded forward pass and the two single-path engines behind the gradient methods.
#include "paths/path_engines.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "core/util.h"
#include "train/run.h"

namespace unravel::paths::detail {

namespace F = torch::nn::functional;

double sq_norm(const torch::Tensor& t) {
  if (!t.defined()) return 0.0;
  return t.detach().to(torch::kFloat64).pow(2).sum().item<double>();
}

torch::Tensor mean_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return F::cross_entropy(logits, labels);
}

torch::Tensor stem_output(Network& net, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return net->stem(images);  // (B, C1, H1, W1)
}

torch::Tensor run_blocks(Network& net, torch::Tensor h, const Plan& plan,
                         const std::vector<models::StepExtras>* extras) {
  const auto& steps = plan.steps();
  for (size_t s = 0; s < steps.size(); ++s)
    h = net->block(steps[s].block).run(h, steps[s], extras ? &(*extras)[s] : nullptr);
  return h;
}

torch::Tensor input_gradient_impl(Network& net, const torch::Tensor& images,
                                  const torch::Tensor& labels) {
  torch::Tensor h0 = stem_output(net, images).requires_grad_(true);
  torch::Tensor loss = mean_loss(net->head(run_blocks(net, h0, net->default_plan())), labels);
  return torch::autograd::grad({loss}, {h0})[0];
}

torch::Tensor path_gradient_impl(Network& net, const torch::Tensor& h0_base,
                                 const torch::Tensor& labels, const std::vector<uint8_t>& flags) {
  Plan plan = net->default_plan();
  for (Step& st : plan.steps())
    st.gate = flags[st.block - 1] ? Gate::ResidualOnly : Gate::ShortcutOnly;
  torch::Tensor h0 = h0_base.detach().requires_grad_(true);
  torch::Tensor loss = mean_loss(net->head(run_blocks(net, h0, plan)), labels);
  return torch::autograd::grad({loss}, {h0})[0];
}

Tape record_tape(Network& net, const torch::Tensor& images, const torch::Tensor& labels) {
  const Plan plan = net->default_plan();
  Tape tape;
  torch::Tensor h = stem_output(net, images);
  for (const Step& st : plan.steps()) {
    if (st.deleted || st.block < 1 || st.block > net->num_blocks())
      throw std::logic_error("gradients: the default plan must run every block once");
    models::BlockImpl& blk = net->block(st.block);
    BlockTape b;
    b.block = st.block;
    b.x = h.detach().requires_grad_(true);
    b.has_skip = blk.has_skip();
    auto branches = blk.branches(b.x, st);
    b.s = branches.shortcut;
    b.r = branches.residual;
    b.s_identity = b.s.defined() && b.s.is_same(b.x);
    b.z = models::BlockImpl::join(b.s, b.r);
    b.y = blk.post(b.z);
    if (blk.post_is_relu()) {
      b.mask = (b.y > 0).to(b.y.scalar_type());
    } else {
      b.post_identity = b.y.is_same(b.z);
    }
    h = b.y;
    tape.blocks.push_back(std::move(b));
  }
  torch::Tensor out = h.detach().requires_grad_(true);
  torch::Tensor loss = mean_loss(net->head(out), labels);
  tape.v_out = torch::autograd::grad({loss}, {out})[0];
  return tape;
}

namespace {

// P^T v (undefined = zero).
torch::Tensor post_vjp(const BlockTape& b, const torch::Tensor& v) {
  if (!v.defined() || b.post_identity) return v;
  if (b.mask.defined()) return v * b.mask;
  return torch::autograd::grad({b.y}, {b.z}, {v}, /*retain_graph=*/true)[0];
}

// S^T gs + R^T gr at the block input (undefined arguments and result = zero).
torch::Tensor block_vjp(const BlockTape& b, const torch::Tensor& gs, const torch::Tensor& gr) {
  torch::Tensor result;
  std::vector<torch::Tensor> outs, cots;
  if (gr.defined()) {
    outs.push_back(b.r);
    cots.push_back(gr);
  }
  if (gs.defined() && b.has_skip) {
    if (b.s_identity) {
      result = gs;
    } else {
      outs.push_back(b.s);
      cots.push_back(gs);
    }
  }
  if (!outs.empty()) {
    torch::Tensor g = torch::autograd::grad(outs, {b.x}, cots, /*retain_graph=*/true,
                                            /*create_graph=*/false, /*allow_unused=*/true)[0];
    if (g.defined()) result = result.defined() ? result + g : g;
  }
  return result;
}

// Rows of one replicated backward when not given: about 1 GiB of saved activations.
int64_t auto_rows(Network& net, int64_t batch, torch::ScalarType dtype) {
  double per_row = 0;
  for (const BlockInfo& bi : net->block_infos()) {
    double in = 1, out = 1;
    for (int64_t d : bi.in_shape) in *= static_cast<double>(d);
    for (int64_t d : bi.out_shape) out *= static_cast<double>(d);
    per_row += 4 * in + 4 * out;  // a generous count of the tensors a block saves
  }
  per_row *= static_cast<double>(c10::elementSize(dtype));
  const double budget = 1024.0 * 1024 * 1024;
  int64_t rows = per_row > 0 ? static_cast<int64_t>(budget / per_row) : batch;
  return std::max(batch, std::min(rows, 64 * batch));
}

}  // namespace

std::vector<torch::Tensor> decompose(const Tape& tape, const std::vector<torch::Tensor>* eps) {
  std::vector<torch::Tensor> v{tape.v_out};
  for (int pos = static_cast<int>(tape.blocks.size()) - 1; pos >= 0; --pos) {
    const BlockTape& b = tape.blocks[pos];
    std::vector<torch::Tensor> u(v.size());
    for (size_t k = 0; k < v.size(); ++k) u[k] = post_vjp(b, v[k]);
    std::vector<torch::Tensor> next(v.size() + 1);
    for (size_t k = 0; k <= v.size(); ++k) {
      torch::Tensor gs = k < u.size() ? u[k] : torch::Tensor();
      torch::Tensor gr = k >= 1 ? u[k - 1] : torch::Tensor();
      if (gr.defined() && eps) gr = gr * (*eps)[pos];
      next[k] = block_vjp(b, gs, gr);
    }
    v = std::move(next);
  }
  return v;
}

// Sets are visited in the order of their choices from the last block down, so that a set
// reuses the cotangents of the longest suffix it shares with the previous one.
std::vector<double> chain_norms(const Tape& tape, const std::vector<std::vector<uint8_t>>& flags,
                                Progress* progress) {
  const int n = static_cast<int>(tape.blocks.size());
  std::vector<size_t> order(flags.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::lexicographical_compare(flags[a].rbegin(), flags[a].rend(), flags[b].rbegin(),
                                        flags[b].rend());
  });
  std::vector<torch::Tensor> stack(n + 1);  // stack[d]: cotangent after the last d blocks
  stack[0] = tape.v_out;
  std::vector<double> norms(flags.size(), 0.0);
  const std::vector<uint8_t>* prev = nullptr;
  int64_t done = 0;
  for (size_t idx : order) {
    apply_thread_policy();
    const std::vector<uint8_t>& f = flags[idx];
    int depth = 0;
    if (prev)
      while (depth < n && f[n - 1 - depth] == (*prev)[n - 1 - depth]) ++depth;
    for (int d = depth; d < n; ++d) {
      const BlockTape& b = tape.blocks[n - 1 - d];
      torch::Tensor u = post_vjp(b, stack[d]);
      stack[d + 1] = f[n - 1 - d] ? block_vjp(b, torch::Tensor(), u) : block_vjp(b, u, torch::Tensor());
    }
    norms[idx] = std::sqrt(sq_norm(stack[n]));
    prev = &f;
    if (progress) progress->update(++done);
  }
  return norms;
}

// R paths per forward/backward: the batch repeated R times with per-sample backward gate masks.
// The loss is the sum over replicas of each replica's mean loss, so each replica's gradient is
// exactly its path's gradient.
std::vector<double> replicated_norms(Network& net, const torch::Tensor& images,
                                     const torch::Tensor& labels,
                                     const std::vector<std::vector<uint8_t>>& flags,
                                     int64_t max_rows, Progress* progress) {
  const int64_t batch = images.size(0);
  const Plan plan = net->default_plan();
  const torch::Tensor h0_base = stem_output(net, images);  // (B, C1, H1, W1)
  const int64_t rows = max_rows > 0 ? max_rows : auto_rows(net, batch, h0_base.scalar_type());
  const int64_t per_pass = std::max<int64_t>(1, rows / batch);
  const auto opts = h0_base.options();
  std::vector<double> norms(flags.size(), 0.0);
  const int64_t total = static_cast<int64_t>(flags.size());
  for (int64_t start = 0; start < total; start += per_pass) {
    apply_thread_policy();
    const int64_t r = std::min(per_pass, total - start);
    std::vector<models::StepExtras> extras(plan.steps().size());
    for (size_t s = 0; s < plan.steps().size(); ++s) {
      const int pos = plan.steps()[s].block - 1;
      std::vector<double> take(r);
      for (int64_t j = 0; j < r; ++j) take[j] = flags[start + j][pos] ? 1.0 : 0.0;
      torch::Tensor per_replica = torch::tensor(take, torch::kFloat64).to(opts);  // (r)
      extras[s].grad_residual = per_replica.repeat_interleave(batch);                // (r*B)
      extras[s].grad_shortcut = 1.0 - extras[s].grad_residual;                      // (r*B)
    }
    torch::Tensor h0 = h0_base.repeat({r, 1, 1, 1}).requires_grad_(true);  // (r*B, C1, H1, W1)
    torch::Tensor logits = net->head(run_blocks(net, h0, plan, &extras));
    torch::Tensor loss =
        F::cross_entropy(logits, labels.repeat({r}),
                         F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
        static_cast<double>(batch);
    torch::Tensor g = torch::autograd::grad({loss}, {h0})[0].reshape({r, -1});
    torch::Tensor nr = g.to(torch::kFloat64).pow(2).sum(1).sqrt().cpu();
    for (int64_t j = 0; j < r; ++j) norms[start + j] = nr[j].item<double>();
    if (progress) progress->update(start + r);
  }
  return norms;
}

}  // namespace unravel::paths::detail
