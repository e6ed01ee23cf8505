// Gradient per path length: exact decomposition, sampled paths (E6) and brute force.
// See gradients.h for the definitions and docs/design.md ("The gradient per path length") for
// the idea.
#include "paths/gradients.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "core/errors.h"
#include "core/random.h"
#include "core/util.h"
#include "paths/path_counts.h"
#include "train/run.h"

namespace unravel::paths {

namespace F = torch::nn::functional;
using models::Network;

namespace {

// Random streams of this file: sampled path sets use stream k (the path length), the random
// signs of the exact method this one.
constexpr uint64_t kStreamSigns = 0x5167ULL;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Squared Frobenius norm accumulated in double; an undefined tensor is zero.
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

// Runs the steps of `plan` from h0 (the input of the first step) with the network's gates.
torch::Tensor run_blocks(Network& net, torch::Tensor h, const Plan& plan,
                         const std::vector<models::StepExtras>* extras = nullptr) {
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

// The path given by per-block flags (index block-1: 1 = residual) through Plan gates.
torch::Tensor path_gradient_impl(Network& net, const torch::Tensor& h0_base,
                                 const torch::Tensor& labels, const std::vector<uint8_t>& flags) {
  Plan plan = net->default_plan();
  for (Step& st : plan.steps())
    st.gate = flags[st.block - 1] ? Gate::ResidualOnly : Gate::ShortcutOnly;
  torch::Tensor h0 = h0_base.detach().requires_grad_(true);
  torch::Tensor loss = mean_loss(net->head(run_blocks(net, h0, plan)), labels);
  return torch::autograd::grad({loss}, {h0})[0];
}

// ---- the recorded forward pass of the exact method and of the chain engine -----------------

// One block of the intact forward, each with its own graph: x is a detached leaf, so the
// vector-Jacobian products of one block never run into the blocks before it.
struct BlockTape {
  int block = 0;
  torch::Tensor x;     // input (B, C, H, W), leaf requiring grad
  torch::Tensor s;     // shortcut(x); undefined when the block has no skip
  torch::Tensor r;     // residual(x) * residual_scale
  torch::Tensor z;     // s + r (or r)
  torch::Tensor y;     // post(z), the block output
  torch::Tensor mask;  // post is ReLU: (y > 0) in the dtype of y; undefined otherwise
  bool has_skip = true;
  bool s_identity = false;     // shortcut(x) is x itself: S^T is the identity
  bool post_identity = false;  // post(z) is z itself: P^T is the identity
};

struct Tape {
  std::vector<BlockTape> blocks;  // in plan order (block b at position b-1 for the default plan)
  torch::Tensor v_out;            // d loss / d (output of the last block)
};

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
    if (b.has_skip) {
      b.s = blk.shortcut(b.x);
      b.s_identity = b.s.is_same(b.x);
    }
    b.r = blk.residual(b.x);
    if (st.residual_scale != 1.0) b.r = b.r * st.residual_scale;
    b.z = b.has_skip ? b.s + b.r : b.r;
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

// The per-length recursion: v_k <- S^T(P^T v_k) + eps_i R^T(P^T v_{k-1}), last block first.
// Returns g_0..g_n at the input of block 1 (undefined = zero). eps: per plan position, signs
// broadcast over the cotangent, (1,1,1,1) or per sample (B,1,1,1).
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

// Chain engine: ||g_S|| per set; flags[i][pos] = 1 when the block at plan position pos takes its
// residual branch. Sets are visited in the order of their choices from the last block down, so
// that a set reuses the cotangents of the longest suffix it shares with the previous one.
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

// Replicated engine (batch norm in eval mode only): R paths per forward/backward, the batch
// repeated R times with per-sample backward gate masks. The loss is the sum over replicas of
// each replica's mean loss, so each replica's gradient is exactly its path's gradient.
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

// Per-length statistics of a list of single-path norms; `population`: exact over all paths.
void fill_norm_stats(LengthStats& ls, const std::vector<double>& norms, bool population) {
  const double m = static_cast<double>(norms.size());
  ls.samples = static_cast<int64_t>(norms.size());
  if (norms.empty()) return;
  double s = 0, s2 = 0;
  for (double x : norms) {
    s += x;
    s2 += x * x;
  }
  ls.mean = s / m;
  ls.mean_sq = s2 / m;
  double var = 0, var_sq = 0;  // two passes: no cancellation
  for (double x : norms) {
    var += (x - ls.mean) * (x - ls.mean);
    var_sq += (x * x - ls.mean_sq) * (x * x - ls.mean_sq);
  }
  const auto [lo, hi] = std::minmax_element(norms.begin(), norms.end());
  if (*lo == *hi) var = var_sq = 0;  // one path sampled repeatedly: no rounding noise
  if (population) {
    ls.std = std::sqrt(var / m);
    ls.mean_sq_se = 0;
  } else {
    ls.std = m > 1 ? std::sqrt(var / (m - 1)) : kNaN;
    ls.mean_sq_se = m > 1 ? std::sqrt(var_sq / (m - 1) / m) : kNaN;
  }
  ls.rms = std::sqrt(ls.mean_sq);
  ls.sum_sq = ls.mean_sq * ls.count;
  ls.sum_sq_se = ls.mean_sq_se * ls.count;
  ls.total = ls.mean * ls.count;
}

LengthStats empty_length(int n, int k, int forced) {
  LengthStats ls;
  ls.length = k;
  ls.paths = path_count_decimal(n, k, forced);
  ls.count = path_count(n, k, forced);
  return ls;
}

// A length without any path: every magnitude is zero.
void zero_length(LengthStats& ls) {
  ls.mean = ls.std = ls.rms = ls.mean_sq = ls.mean_sq_se = ls.sum_sq = ls.sum_sq_se = ls.total = 0;
  if (std::isnan(ls.norm)) ls.norm = 0;
}

// Shares and effective range from the totals (or, when some total is missing, the norms).
void finish_summary(GradientResult& r, double mass) {
  r.mass = mass;
  std::vector<double> w;
  bool totals = !r.lengths.empty();
  for (const auto& ls : r.lengths) totals = totals && std::isfinite(ls.total);
  r.effective_basis = totals ? "total" : "norm";
  for (const auto& ls : r.lengths) w.push_back(totals ? ls.total : ls.norm);
  double sum = 0;
  for (double x : w) sum += std::isfinite(x) ? x : 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(w[i])) w[i] = 0;
    r.lengths[i].share = sum > 0 ? w[i] / sum : kNaN;
  }
  if (w.empty()) return;
  auto range = shortest_range(w, mass);
  double held = 0;
  for (int i = range.first; i <= range.second; ++i) held += w[i];
  r.effective_range = {r.lengths[range.first].length, r.lengths[range.second].length};
  r.effective_share = sum > 0 ? held / sum : kNaN;
}

std::vector<uint8_t> flags_of(const std::vector<int>& set, int n, const std::vector<int>& forced) {
  std::vector<uint8_t> f(n, 0);
  for (int b : set) {
    if (b < 1 || b > n)
      throw std::invalid_argument(fmt::format("path set names block {} of {}", b, n));
    f[b - 1] = 1;
  }
  for (int b : forced)
    if (!f[b - 1])
      throw std::invalid_argument(
          fmt::format("path set omits block {}, which has no skip connection", b));
  return f;
}

}  // namespace

// ---- small public pieces -----------------------------------------------------------------

BnMode parse_bn_mode(const std::string& text) {
  if (text == "eval") return BnMode::Eval;
  if (text == "train") return BnMode::Train;
  throw UserError("--bn '" + text + "': expected eval or train");
}

const char* bn_mode_name(BnMode m) { return m == BnMode::Train ? "train" : "eval"; }

SampleEngine parse_sample_engine(const std::string& text) {
  if (text == "auto") return SampleEngine::Auto;
  if (text == "chain") return SampleEngine::Chain;
  if (text == "replicated") return SampleEngine::Replicated;
  throw UserError("--engine '" + text + "': expected auto, chain or replicated");
}

const char* sample_engine_name(SampleEngine e) {
  switch (e) {
    case SampleEngine::Chain: return "chain";
    case SampleEngine::Replicated: return "replicated";
    default: return "auto";
  }
}

AnalysisModeGuard::AnalysisModeGuard(Network& net, BnMode bn)
    : net_(net), was_training_(net->is_training()) {
  torch::NoGradGuard no_grad;
  for (const auto& b : net_->buffers()) saved_.push_back(b.clone());
  net_->train(bn == BnMode::Train);
}

AnalysisModeGuard::~AnalysisModeGuard() {
  torch::NoGradGuard no_grad;
  auto buffers = net_->buffers();
  for (size_t i = 0; i < buffers.size() && i < saved_.size(); ++i) buffers[i].copy_(saved_[i]);
  net_->train(was_training_);
}

std::vector<int> forced_blocks(Network& net) {
  std::vector<int> f;
  for (int b = 1; b <= net->num_blocks(); ++b)
    if (!net->block(b).has_skip()) f.push_back(b);
  return f;
}

std::string path_count_decimal(int n, int k, int forced) {
  return binomial(n - forced, k - forced).to_string();  // "0" outside 0..n-forced
}

double path_count(int n, int k, int forced) {
  const int free = n - forced, j = k - forced;
  if (free < 0 || j < 0 || j > free) return 0.0;
  const int jj = std::min(j, free - j);
  double c = 1;
  for (int i = 1; i <= jj; ++i) c = c * (free - jj + i) / i;
  return c < 9e15 ? std::round(c) : c;  // integral below 2^53
}

torch::Tensor input_gradient(Network& net, const torch::Tensor& images, const torch::Tensor& labels,
                             BnMode bn) {
  torch::AutoGradMode grad_mode(true);
  AnalysisModeGuard guard(net, bn);
  return input_gradient_impl(net, images, labels);
}

torch::Tensor path_gradient(Network& net, const torch::Tensor& images, const torch::Tensor& labels,
                            const std::vector<int>& residual_blocks, BnMode bn) {
  torch::AutoGradMode grad_mode(true);
  AnalysisModeGuard guard(net, bn);
  const auto flags = flags_of(residual_blocks, net->num_blocks(), forced_blocks(net));
  return path_gradient_impl(net, stem_output(net, images), labels, flags);
}

std::vector<std::vector<int>> sample_path_sets(int n, int k, int64_t count, uint64_t seed,
                                               const std::vector<int>& forced) {
  std::vector<std::vector<int>> sets;
  const int j = k - static_cast<int>(forced.size());
  std::vector<int> free;
  for (int b = 1; b <= n; ++b)
    if (!std::binary_search(forced.begin(), forced.end(), b)) free.push_back(b);
  if (j < 0 || j > static_cast<int>(free.size())) return sets;
  Rng rng = Rng::stream(seed, static_cast<uint64_t>(k));
  sets.reserve(count);
  for (int64_t c = 0; c < count; ++c) {
    std::vector<int> set = sample_without_replacement(free, j, rng);
    set.insert(set.end(), forced.begin(), forced.end());
    std::sort(set.begin(), set.end());
    sets.push_back(std::move(set));
  }
  return sets;
}

std::vector<double> path_gradient_norms(Network& net, const torch::Tensor& images,
                                        const torch::Tensor& labels,
                                        const std::vector<std::vector<int>>& sets,
                                        const GradientOptions& opts) {
  torch::AutoGradMode grad_mode(true);
  const int n = net->num_blocks();
  const std::vector<int> forced = forced_blocks(net);
  // Identical sets (common for short and long lengths) are computed once.
  std::map<std::vector<uint8_t>, size_t> index;
  std::vector<std::vector<uint8_t>> unique;
  std::vector<size_t> which(sets.size());
  for (size_t i = 0; i < sets.size(); ++i) {
    auto f = flags_of(sets[i], n, forced);
    auto it = index.find(f);
    if (it == index.end()) {
      it = index.emplace(f, unique.size()).first;
      unique.push_back(std::move(f));
    }
    which[i] = it->second;
  }
  SampleEngine engine = opts.engine == SampleEngine::Auto ? SampleEngine::Chain : opts.engine;
  if (engine == SampleEngine::Replicated && opts.bn == BnMode::Train)
    throw UserError("--engine replicated needs --bn eval: batch statistics couple the replicas");
  AnalysisModeGuard guard(net, opts.bn);
  std::unique_ptr<Progress> progress;
  if (opts.progress)
    progress = std::make_unique<Progress>(fmt::format("sample ({})", sample_engine_name(engine)),
                                          static_cast<int64_t>(unique.size()), "paths");
  std::vector<double> unique_norms;
  if (engine == SampleEngine::Chain) {
    // The tape's positions follow the default plan; flags are per block index.
    Tape tape = record_tape(net, images, labels);
    std::vector<std::vector<uint8_t>> by_pos(unique.size(), std::vector<uint8_t>(tape.blocks.size()));
    for (size_t i = 0; i < unique.size(); ++i)
      for (size_t p = 0; p < tape.blocks.size(); ++p)
        by_pos[i][p] = unique[i][tape.blocks[p].block - 1];
    unique_norms = chain_norms(tape, by_pos, progress.get());
  } else {
    unique_norms = replicated_norms(net, images, labels, unique, opts.max_rows, progress.get());
  }
  if (progress) progress->finish();
  std::vector<double> norms(sets.size());
  for (size_t i = 0; i < sets.size(); ++i) norms[i] = unique_norms[which[i]];
  return norms;
}

// ---- the three methods ---------------------------------------------------------------------

GradientResult exact_gradients(Network& net, const torch::Tensor& images,
                               const torch::Tensor& labels, const GradientOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::AutoGradMode grad_mode(true);
  AnalysisModeGuard guard(net, opts.bn);
  const int n = net->num_blocks();
  const int forced = static_cast<int>(forced_blocks(net).size());
  GradientResult r;
  r.method = "exact";
  r.n = n;
  r.bn = opts.bn;
  r.batch_size = images.size(0);

  Tape tape = record_tape(net, images, labels);
  std::vector<torch::Tensor> g = decompose(tape, nullptr);  // g[k], k = 0..n
  const torch::Tensor grad = input_gradient_impl(net, images, labels);
  torch::Tensor sum = torch::zeros_like(grad);
  for (auto& gk : g) {
    if (!gk.defined()) gk = torch::zeros_like(grad);
    sum = sum + gk;
  }
  r.grad_norm = std::sqrt(sq_norm(grad));
  r.residual = std::sqrt(sq_norm(sum - grad)) / r.grad_norm;

  // Random signs: q[m][k] = ||g_k(eps_m)||^2, an unbiased draw of sum_{|S|=k} ||g_S||^2: the
  // cross terms between two paths carry a sign product of mean zero. With batch norm in eval
  // mode a sample's gradient depends on its own cotangent only, so each sample gets its own
  // signs (cross terms still vanish, and the B samples average their noise); batch statistics
  // (train mode) mix samples, and one sign per block is shared by the batch.
  const int M = std::max(0, opts.sign_samples);
  std::vector<std::vector<double>> q(M, std::vector<double>(n + 1, 0.0));
  Rng rng = Rng::stream(opts.seed, kStreamSigns);
  const int64_t batch = images.size(0);
  const int64_t sign_rows = opts.bn == BnMode::Eval ? batch : 1;
  std::vector<torch::Tensor> eps(tape.blocks.size());
  std::vector<double> draw(sign_rows);
  std::unique_ptr<Progress> progress;
  if (opts.progress && M > 0) progress = std::make_unique<Progress>("exact signs", M, "draws");
  for (int m = 0; m < M; ++m) {
    apply_thread_policy();
    for (auto& e : eps) {
      for (double& d : draw) d = rng.coin() ? 1.0 : -1.0;
      e = torch::tensor(draw, torch::kFloat64).to(grad.options()).view({sign_rows, 1, 1, 1});
    }
    std::vector<torch::Tensor> ge = decompose(tape, &eps);
    for (int k = 0; k <= n; ++k) q[m][k] = sq_norm(ge[k]);
    if (progress) progress->update(m + 1);
  }
  if (progress) progress->finish();

  for (int k = 0; k <= n; ++k) {
    LengthStats ls = empty_length(n, k, forced);
    ls.norm = std::sqrt(sq_norm(g[k]));
    if (ls.count == 0) {
      zero_length(ls);
    } else if (M > 0) {
      double s = 0;
      for (int m = 0; m < M; ++m) s += q[m][k];
      const double est = s / M;
      double var = 0;
      for (int m = 0; m < M; ++m) var += (q[m][k] - est) * (q[m][k] - est);
      ls.sum_sq = est;
      ls.sum_sq_se = M > 1 ? std::sqrt(var / (M - 1) / M) : kNaN;
      ls.mean_sq = est / ls.count;
      ls.mean_sq_se = ls.sum_sq_se / ls.count;
      ls.rms = std::sqrt(ls.mean_sq);
      ls.mean = ls.rms;
      ls.total = ls.rms * ls.count;
      ls.samples = M;
    }
    r.lengths.push_back(ls);
  }
  if (opts.keep_tensors) {
    r.g = g;
    r.grad = grad;
  }
  finish_summary(r, opts.mass);
  r.seconds = seconds_since(t0);
  return r;
}

GradientResult sample_gradients(Network& net, const torch::Tensor& images,
                                const torch::Tensor& labels, const GradientOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  const int n = net->num_blocks();
  const int a = opts.min_length, b = opts.max_length < 0 ? n : opts.max_length;
  if (a < 0 || b > n || a > b)
    throw UserError(fmt::format("--lengths {}:{}: expected 0 <= a <= b <= {} (blocks)", a, b, n));
  if (opts.samples < 1)
    throw UserError(fmt::format("--samples {}: expected at least 1", opts.samples));
  const std::vector<int> forced = forced_blocks(net);
  std::vector<std::vector<int>> sets;
  std::vector<std::pair<size_t, size_t>> span;  // per length: [begin, end) in sets
  for (int k = a; k <= b; ++k) {
    auto s = sample_path_sets(n, k, opts.samples, opts.seed, forced);
    span.emplace_back(sets.size(), sets.size() + s.size());
    sets.insert(sets.end(), s.begin(), s.end());
  }
  const std::vector<double> norms = path_gradient_norms(net, images, labels, sets, opts);
  GradientResult r;
  r.method = "sample";
  r.n = n;
  r.bn = opts.bn;
  r.batch_size = images.size(0);
  r.engine = sample_engine_name(opts.engine == SampleEngine::Auto ? SampleEngine::Chain
                                                                  : opts.engine);
  for (int k = a; k <= b; ++k) {
    LengthStats ls = empty_length(n, k, static_cast<int>(forced.size()));
    const auto [from, to] = span[k - a];
    if (ls.count == 0) {
      zero_length(ls);
      ls.norm = kNaN;
    } else {
      fill_norm_stats(ls, std::vector<double>(norms.begin() + from, norms.begin() + to), false);
    }
    r.lengths.push_back(ls);
  }
  finish_summary(r, opts.mass);
  r.seconds = seconds_since(t0);
  return r;
}

GradientResult brute_gradients(Network& net, const torch::Tensor& images,
                               const torch::Tensor& labels, const GradientOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  const int n = net->num_blocks();
  if (n > 16)
    throw UserError(fmt::format(
        "--method brute: {} has {} blocks, brute force allows at most 16 (use --method exact)",
        net->spec().name, n));
  torch::AutoGradMode grad_mode(true);
  AnalysisModeGuard guard(net, opts.bn);
  const std::vector<int> forced = forced_blocks(net);
  uint32_t forced_mask = 0;
  for (int b : forced) forced_mask |= 1u << (b - 1);

  const torch::Tensor grad = input_gradient_impl(net, images, labels);
  const torch::Tensor h0 = stem_output(net, images);
  std::vector<torch::Tensor> g(n + 1);
  std::vector<std::vector<double>> norms(n + 1);
  GradientResult r;
  const uint32_t all = 1u << n;
  if (opts.keep_tensors) r.path_norms.assign(all, kNaN);
  std::unique_ptr<Progress> progress;
  if (opts.progress)
    progress = std::make_unique<Progress>("brute", static_cast<int64_t>(all), "paths");
  std::vector<uint8_t> flags(n);
  for (uint32_t mask = 0; mask < all; ++mask) {
    if ((mask & 63u) == 0) apply_thread_policy();
    if ((mask & forced_mask) != forced_mask) continue;
    for (int i = 0; i < n; ++i) flags[i] = (mask >> i) & 1u;
    const torch::Tensor pg = path_gradient_impl(net, h0, labels, flags);
    const int k = __builtin_popcount(mask);
    g[k] = g[k].defined() ? g[k] + pg : pg;
    const double nm = std::sqrt(sq_norm(pg));
    norms[k].push_back(nm);
    if (opts.keep_tensors) r.path_norms[mask] = nm;
    if (progress) progress->update(mask + 1);
  }
  if (progress) progress->finish();

  r.method = "brute";
  r.n = n;
  r.bn = opts.bn;
  r.batch_size = images.size(0);
  torch::Tensor sum = torch::zeros_like(grad);
  for (auto& gk : g) {
    if (!gk.defined()) gk = torch::zeros_like(grad);
    sum = sum + gk;
  }
  r.grad_norm = std::sqrt(sq_norm(grad));
  r.residual = std::sqrt(sq_norm(sum - grad)) / r.grad_norm;
  for (int k = 0; k <= n; ++k) {
    LengthStats ls = empty_length(n, k, static_cast<int>(forced.size()));
    ls.norm = std::sqrt(sq_norm(g[k]));
    if (ls.count == 0)
      zero_length(ls);
    else
      fill_norm_stats(ls, norms[k], true);
    r.lengths.push_back(ls);
  }
  if (opts.keep_tensors) {
    r.g = g;
    r.grad = grad;
  }
  finish_summary(r, opts.mass);
  r.seconds = seconds_since(t0);
  return r;
}

GradientResult gradients_by_method(const std::string& method, Network& net,
                                   const torch::Tensor& images, const torch::Tensor& labels,
                                   const GradientOptions& opts) {
  if (method == "exact") return exact_gradients(net, images, labels, opts);
  if (method == "sample") return sample_gradients(net, images, labels, opts);
  if (method == "brute") return brute_gradients(net, images, labels, opts);
  throw UserError("--method '" + method + "': expected exact, sample or brute");
}

// ---- combining and writing -----------------------------------------------------------------

GradientResult average_results(const std::vector<GradientResult>& per_batch, double mass) {
  if (per_batch.empty()) throw std::invalid_argument("average_results of no results");
  if (per_batch.size() == 1) {
    GradientResult r = per_batch.front();
    finish_summary(r, mass);
    return r;
  }
  const double N = static_cast<double>(per_batch.size());
  GradientResult r = per_batch.front();
  r.g.clear();
  r.grad = torch::Tensor();
  r.path_norms.clear();
  r.batches = static_cast<int64_t>(per_batch.size());
  r.residual = 0;
  r.grad_norm = 0;
  r.seconds = 0;
  for (auto& ls : r.lengths) {
    ls.norm = ls.mean = ls.std = ls.mean_sq = ls.sum_sq = ls.total = 0;
    ls.mean_sq_se = ls.sum_sq_se = 0;
    ls.samples = 0;
  }
  for (const auto& b : per_batch) {
    if (b.lengths.size() != r.lengths.size())
      throw std::invalid_argument("average_results: batches disagree on the lengths");
    r.residual = std::isnan(b.residual) ? b.residual : std::max(r.residual, b.residual);
    r.grad_norm += b.grad_norm / N;
    r.seconds += b.seconds;
    for (size_t i = 0; i < r.lengths.size(); ++i) {
      LengthStats& o = r.lengths[i];
      const LengthStats& x = b.lengths[i];
      o.norm += x.norm / N;
      o.mean += x.mean / N;
      o.std += x.std / N;
      o.mean_sq += x.mean_sq / N;
      o.sum_sq += x.sum_sq / N;
      o.total += x.total / N;
      o.mean_sq_se += x.mean_sq_se * x.mean_sq_se;
      o.sum_sq_se += x.sum_sq_se * x.sum_sq_se;
      o.samples += x.samples;
    }
  }
  for (auto& ls : r.lengths) {
    ls.mean_sq_se = std::sqrt(ls.mean_sq_se) / N;
    ls.sum_sq_se = std::sqrt(ls.sum_sq_se) / N;
    ls.rms = std::sqrt(ls.mean_sq);
    if (r.method == "exact" && ls.count > 0) {  // exact's mean and total derive from the rms
      ls.mean = ls.rms;
      ls.total = ls.rms * ls.count;
    }
  }
  finish_summary(r, mass);
  return r;
}

namespace {
nlohmann::json num(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}
std::string csv_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : ""; }
std::string cell(double x) { return std::isfinite(x) ? fmt::format("{:.4g}", x) : "-"; }
}  // namespace

nlohmann::json to_json(const GradientResult& r) {
  nlohmann::json lengths = nlohmann::json::array();
  for (const auto& ls : r.lengths) {
    lengths.push_back({{"length", ls.length},
                       {"paths", ls.paths},
                       {"norm", num(ls.norm)},
                       {"mean", num(ls.mean)},
                       {"std", num(ls.std)},
                       {"total", num(ls.total)},
                       {"rms", num(ls.rms)},
                       {"mean_sq", num(ls.mean_sq)},
                       {"mean_sq_se", num(ls.mean_sq_se)},
                       {"sum_sq", num(ls.sum_sq)},
                       {"sum_sq_se", num(ls.sum_sq_se)},
                       {"share", num(ls.share)},
                       {"samples", ls.samples}});
  }
  nlohmann::json j = {{"method", r.method},
                      {"n", r.n},
                      {"bn", bn_mode_name(r.bn)},
                      {"batch_size", r.batch_size},
                      {"batches", r.batches},
                      {"lengths", lengths},
                      {"residual", num(r.residual)},
                      {"grad_norm", num(r.grad_norm)},
                      {"effective_range", {r.effective_range.first, r.effective_range.second}},
                      {"effective_share", num(r.effective_share)},
                      {"effective_basis", r.effective_basis},
                      {"mass", r.mass},
                      {"seconds", r.seconds}};
  if (!r.engine.empty()) j["engine"] = r.engine;
  return j;
}

std::string to_csv(const GradientResult& r) {
  std::ostringstream os;
  os << "length,paths,norm,mean,std,total,rms,mean_sq,mean_sq_se,sum_sq,sum_sq_se,share,samples\n";
  for (const auto& ls : r.lengths) {
    os << ls.length << ',' << ls.paths << ',' << csv_num(ls.norm) << ',' << csv_num(ls.mean) << ','
       << csv_num(ls.std) << ',' << csv_num(ls.total) << ',' << csv_num(ls.rms) << ','
       << csv_num(ls.mean_sq) << ',' << csv_num(ls.mean_sq_se) << ',' << csv_num(ls.sum_sq) << ','
       << csv_num(ls.sum_sq_se) << ',' << csv_num(ls.share) << ',' << ls.samples << '\n';
  }
  return os.str();
}

std::string format_table(const GradientResult& r) {
  std::ostringstream os;
  const bool exact = r.method == "exact";
  os << fmt::format("{:>6}  {:>12}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}{}\n", "length", "paths",
                    "norm", exact ? "rms" : "mean", exact ? "rel.se" : "std", "total", "share",
                    "");
  for (const auto& ls : r.lengths) {
    const std::string paths =
        ls.paths.size() <= 12 ? ls.paths : fmt::format("{:.4e}", ls.count);
    const double spread = exact ? (ls.mean_sq > 0 ? ls.mean_sq_se / ls.mean_sq : kNaN) : ls.std;
    os << fmt::format("{:>6}  {:>12}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}\n", ls.length, paths,
                      cell(ls.norm), cell(ls.mean), cell(spread), cell(ls.total),
                      std::isfinite(ls.share) ? fmt::format("{:.4f}", ls.share) : "-");
  }
  if (std::isfinite(r.residual))
    os << fmt::format("residual ||sum_k g_k - g|| / ||g||: {:.3g}   (||g|| = {:.4g})\n",
                      r.residual, r.grad_norm);
  os << fmt::format("effective range ({:.0f}% of {}): lengths {}-{} ({:.1f}% held)\n",
                    100 * r.mass, r.effective_basis, r.effective_range.first,
                    r.effective_range.second, 100 * r.effective_share);
  return os.str();
}

}  // namespace unravel::paths
