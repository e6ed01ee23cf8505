// Gradient per path length: exact decomposition, sampled paths (E6) and brute force.
// See gradients.h for the definitions and docs/design.md ("The gradient per path length") for
// the idea.
#include "paths/gradients.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <stdexcept>

#include "core/errors.h"
#include "core/random.h"
#include "core/util.h"
#include "paths/length_stats.h"
#include "paths/path_counts.h"
#include "paths/path_engines.h"
#include "train/run.h"

namespace unravel::paths {

using models::Network;
using namespace detail;

namespace {

// Random streams of this file: sampled path sets use stream k (the path length), the random
// signs of the exact method this one.
constexpr uint64_t kStreamSigns = 0x5167ULL;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

// The built-in check of exact and brute: the per-length parts (undefined = zero, made zero
// here) must add up to the ordinary gradient; r.residual = ||sum_k g_k - g|| / ||g||.
void check_sum(GradientResult& r, std::vector<torch::Tensor>& g, const torch::Tensor& grad) {
  torch::Tensor sum = torch::zeros_like(grad);
  for (auto& gk : g) {
    if (!gk.defined()) gk = torch::zeros_like(grad);
    sum = sum + gk;
  }
  r.grad_norm = std::sqrt(sq_norm(grad));
  r.residual = std::sqrt(sq_norm(sum - grad)) / r.grad_norm;
}

// Shares, effective range and time of exact and brute; the tensors kept when asked for.
GradientResult finish(GradientResult r, std::vector<torch::Tensor> g, const torch::Tensor& grad,
                      const GradientOptions& opts, std::chrono::steady_clock::time_point t0) {
  if (opts.keep_tensors) {
    r.g = std::move(g);
    r.grad = grad;
  }
  finish_summary(r, opts.mass);
  r.seconds = seconds_since(t0);
  return r;
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
  r.method = method_name(GradientMethod::Exact);
  r.n = n;
  r.bn = opts.bn;
  r.batch_size = images.size(0);

  Tape tape = record_tape(net, images, labels);
  std::vector<torch::Tensor> g = decompose(tape, nullptr);  // g[k], k = 0..n
  const torch::Tensor grad = input_gradient_impl(net, images, labels);
  check_sum(r, g, grad);

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
  return finish(std::move(r), std::move(g), grad, opts, t0);
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
  r.method = method_name(GradientMethod::Sample);
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

  r.method = method_name(GradientMethod::Brute);
  r.n = n;
  r.bn = opts.bn;
  r.batch_size = images.size(0);
  check_sum(r, g, grad);
  for (int k = 0; k <= n; ++k) {
    LengthStats ls = empty_length(n, k, static_cast<int>(forced.size()));
    ls.norm = std::sqrt(sq_norm(g[k]));
    if (ls.count == 0)
      zero_length(ls);
    else
      fill_norm_stats(ls, norms[k], true);
    r.lengths.push_back(ls);
  }
  return finish(std::move(r), std::move(g), grad, opts, t0);
}

GradientMethod parse_gradient_method(const std::string& text) {
  for (GradientMethod m : {GradientMethod::Exact, GradientMethod::Sample, GradientMethod::Brute})
    if (text == method_name(m)) return m;
  throw UserError("--method '" + text.substr(0, 40) + "': expected exact, sample or brute");
}

const char* method_name(GradientMethod m) {
  switch (m) {
    case GradientMethod::Sample: return "sample";
    case GradientMethod::Brute: return "brute";
    default: return "exact";
  }
}

GradientResult gradients_by_method(GradientMethod method, Network& net, const torch::Tensor& images,
                                   const torch::Tensor& labels, const GradientOptions& opts) {
  switch (method) {
    case GradientMethod::Sample: return sample_gradients(net, images, labels, opts);
    case GradientMethod::Brute: return brute_gradients(net, images, labels, opts);
    default: return exact_gradients(net, images, labels, opts);
  }
}

}  // namespace unravel::paths
