// Prefix-tree and reference evaluation of many plans, FLOP counts, batch-norm recalibration.
#include "engine/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "core/errors.h"
#include "core/util.h"
#include "engine/compute.h"

namespace unravel {

using torch::Tensor;

Engine parse_engine(const std::string& name) {
  if (name == "prefix") return Engine::Prefix;
  if (name == "reference") return Engine::Reference;
  throw UserError(fmt::format("--engine must be prefix or reference, got '{}'", name));
}

const char* engine_name(Engine e) { return e == Engine::Prefix ? "prefix" : "reference"; }

// ---- the trie ---------------------------------------------------------------------------------

PlanTrie::PlanTrie(const std::vector<Plan>& plans) : num_plans_(plans.size()) {
  nodes_.emplace_back();  // root
  for (size_t p = 0; p < plans.size(); ++p) {
    int cur = 0;
    for (const Step& s : plans[p].steps()) {
      int next = -1;
      for (int c : nodes_[cur].children)
        if (nodes_[c].step == s) {
          next = c;
          break;
        }
      if (next < 0) {
        next = static_cast<int>(nodes_.size());
        Node n;
        n.step = s;
        n.depth = nodes_[cur].depth + 1;
        nodes_.push_back(std::move(n));
        nodes_[cur].children.push_back(next);
      }
      cur = next;
    }
    nodes_[cur].plans.push_back(p);
  }
}

int64_t PlanTrie::residual_steps() const {
  int64_t n = 0;
  for (size_t i = 1; i < nodes_.size(); ++i) n += nodes_[i].step.deleted ? 0 : 1;
  return n;
}

int64_t PlanTrie::deleted_steps() const {
  return static_cast<int64_t>(nodes_.size()) - 1 - residual_steps();
}

int64_t PlanTrie::leaves() const {
  int64_t n = 0;
  for (const auto& nd : nodes_) n += nd.plans.empty() ? 0 : 1;
  return n;
}

int PlanTrie::max_depth() const {
  int d = 0;
  for (const auto& nd : nodes_) d = std::max(d, nd.depth);
  return d;
}

nlohmann::json EngineStats::to_json() const {
  return {{"images", images},
          {"batches", batches},
          {"stem_evaluations", stem_evaluations},
          {"residual_evaluations", residual_evaluations},
          {"shortcut_evaluations", shortcut_evaluations},
          {"head_evaluations", head_evaluations},
          {"gflop", flops / 1e9},
          {"data_seconds", data_seconds},
          {"data_share", seconds > 0 ? data_seconds / seconds : 0.0},
          {"seconds", seconds},
          {"gflop_per_s", seconds > 0 ? flops / 1e9 / seconds : 0.0}};
}

// ---- FLOPs ------------------------------------------------------------------------------------

namespace {

// FLOPs of one convolution on a (1, Cin, h, w) input; h and w become the output size.
double conv_flops(torch::nn::Conv2dImpl& c, int64_t& h, int64_t& w) {
  const auto& wt = c.weight;  // (Cout, Cin/groups, kh, kw)
  Tensor probe = torch::zeros({1, wt.size(1) * c.options.groups(), h, w}, wt.options());
  Tensor y = c.forward(probe);
  h = y.size(2);
  w = y.size(3);
  return 2.0 * static_cast<double>(wt.numel()) * static_cast<double>(h * w);
}

}  // namespace

double FlopModel::plan(const Plan& p) const {
  double f = stem + head;
  for (const Step& s : p.steps()) f += step(s);
  return f;
}

FlopModel count_flops(models::Network& net) {
  torch::NoGradGuard ng;
  FlopModel m;
  const int n = net->num_blocks();
  m.residual.assign(n + 1, 0.0);
  m.shortcut.assign(n + 1, 0.0);
  const auto& o = net->options();
  for (const auto& child : net->named_children()) {
    if (child.key() == "stem") {
      int64_t h = o.height_, w = o.width_;
      for (const auto& mod : child.value()->modules(/*include_self=*/false))
        if (auto* c = mod->as<torch::nn::Conv2d>()) m.stem += conv_flops(*c, h, w);
    } else if (child.key() == "head") {
      for (const auto& mod : child.value()->modules(/*include_self=*/false))
        if (auto* l = mod->as<torch::nn::Linear>()) m.head += 2.0 * static_cast<double>(l->weight.numel());
    }
  }
  for (int i = 1; i <= n; ++i) {
    const auto& info = net->block_infos()[i - 1];
    int64_t h = info.in_shape[1], w = info.in_shape[2];  // residual convs run in a chain
    for (const auto& child : net->block(i).named_children()) {
      auto* c = child.value()->as<torch::nn::Conv2d>();
      if (!c) continue;
      if (child.key().find("shortcut") != std::string::npos) {
        int64_t sh = info.in_shape[1], sw = info.in_shape[2];
        m.shortcut[i] += conv_flops(*c, sh, sw);
      } else {
        m.residual[i] += conv_flops(*c, h, w);
      }
    }
  }
  return m;
}

// ---- evaluation copies ------------------------------------------------------------------------

models::Network make_eval_copy(const models::Network& net, bool fold, bool channels_last, Precision precision) {
  models::Network copy = models::clone_network(net);
  copy->eval();
  if (fold) copy->fold_batchnorm();
  if (precision == Precision::BF16) copy->to(torch::kBFloat16);  // folded biases included
  if (channels_last || precision == Precision::BF16) {
    torch::NoGradGuard ng;
    for (auto& p : copy->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
  return copy;
}

// ---- the engines ------------------------------------------------------------------------------

namespace {

struct Walker {
  models::Network& net;
  const PlanTrie& trie;
  const EngineOptions& opts;
  std::vector<Metrics>& metrics;
  const Tensor* labels = nullptr;
  int64_t first = 0;

  // Depth-first from node `id` whose activation is `h`. Along a chain (one child, no plan ending)
  // the parent activation is dropped as soon as the child's exists, so only the activations of
  // the branching nodes on the current path stay alive.
  void walk(int id, Tensor h) {
    for (;;) {
      const auto& nd = trie.nodes()[id];
      if (!nd.plans.empty()) {
        Tensor logits = net->head(h).to(torch::kFloat32);  // (B, classes); a no-op in float32
        for (size_t p : nd.plans) {
          metrics[p].add(logits, *labels);
          if (opts.on_logits_) opts.on_logits_(p, first, logits);
        }
      }
      if (nd.children.empty()) return;
      if (nd.children.size() == 1) {
        id = nd.children[0];
        const Step& s = trie.nodes()[id].step;
        h = net->block(s.block).run(h, s);
        continue;
      }
      for (int c : nd.children) {
        const Step& s = trie.nodes()[c].step;
        walk(c, net->block(s.block).run(h, s));
      }
      return;
    }
  }
};

}  // namespace

std::vector<Metrics> evaluate_plans(models::Network& net, const std::vector<Plan>& plans,
                                    const data::Split& split, const data::Normalizer& norm,
                                    const EngineOptions& opts, EngineStats* stats) {
  if (opts.batch_size_ < 1)
    throw UserError(fmt::format("--batch-size must be at least 1, got {}", opts.batch_size_));
  for (const Plan& p : plans) p.validate(net->block_infos());
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t num_classes = net->options().num_classes_;
  std::vector<Metrics> metrics(plans.size(), Metrics(num_classes));
  int64_t start = 0;
  if (opts.resume_first_ > 0) {
    if (opts.resume_metrics_.size() != plans.size() || opts.resume_first_ % opts.batch_size_ != 0 ||
        opts.resume_first_ > split.size())
      throw UserError("the progress file does not fit this sweep (plans, batch size or images differ)");
    start = opts.resume_first_;
    metrics = opts.resume_metrics_;
  }
  const bool was_training = net->is_training();
  net->eval();
  const torch::Device device = net->parameters().front().device();
  const torch::ScalarType dtype = net->parameters().front().scalar_type();  // the copy's precision
  const bool channels_last = opts.channels_last_ || dtype == torch::kBFloat16;

  const PlanTrie trie = opts.engine_ == Engine::Prefix ? PlanTrie(plans) : PlanTrie({});
  const FlopModel fm = count_flops(net);
  double flops_per_image = 0;
  EngineStats st;
  if (opts.engine_ == Engine::Prefix) {
    flops_per_image = fm.stem + fm.head * static_cast<double>(trie.leaves());
    for (size_t i = 1; i < trie.nodes().size(); ++i) flops_per_image += fm.step(trie.nodes()[i].step);
  } else {
    for (const Plan& p : plans) flops_per_image += fm.plan(p);
  }

  const int64_t n = split.size();
  std::unique_ptr<Progress> progress;
  if (!opts.progress_.empty())
    progress = std::make_unique<Progress>(opts.progress_, n - start, "img");  // this call's images
  {
    torch::InferenceMode guard;
    Walker walker{net, trie, opts, metrics};
    data::LoaderOptions lo;
    lo.batch_size = opts.batch_size_;
    lo.start = start;
    data::Loader loader(split, norm, lo, /*epoch=*/0);
    data::Batch batch;
    for (int64_t a = start; loader.next(batch); a += opts.batch_size_) {
      apply_thread_policy();
      const int64_t b = std::min(n, a + opts.batch_size_);
      Tensor x = batch.images.to(device, dtype);  // (B, C, H, W)
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      const Tensor labels = batch.labels.to(device);  // (B)
      if (opts.engine_ == Engine::Prefix) {
        walker.labels = &labels;
        walker.first = a;
        walker.walk(0, net->stem(x));
        st.stem_evaluations += 1;
        st.residual_evaluations += trie.residual_steps();
        st.shortcut_evaluations += trie.deleted_steps();
        st.head_evaluations += trie.leaves();
      } else {
        for (size_t p = 0; p < plans.size(); ++p) {
          Tensor logits = net->forward(x, plans[p]).to(torch::kFloat32);
          metrics[p].add(logits, labels);
          if (opts.on_logits_) opts.on_logits_(p, a, logits);
          st.stem_evaluations += 1;
          st.head_evaluations += 1;
          for (const Step& s : plans[p].steps()) (s.deleted ? st.shortcut_evaluations : st.residual_evaluations)++;
        }
      }
      st.batches += 1;
      st.images += batch.labels.size(0);  // fewer than b - a when unreadable files were skipped
      if (progress) progress->update(b - start, fmt::format("{} plans, {} engine", plans.size(), engine_name(opts.engine_)));
      if (opts.on_batch_) opts.on_batch_(b, metrics);
    }
    st.data_seconds = loader.wait_seconds();
  }
  if (progress) progress->finish(fmt::format("{} plans, {} engine", plans.size(), engine_name(opts.engine_)));
  net->train(was_training);
  st.flops = flops_per_image * static_cast<double>(st.images);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = st;
  return metrics;
}

// ---- batch-norm recalibration -----------------------------------------------------------------

void reset_batchnorm_statistics(models::Network& net) {
  torch::NoGradGuard ng;
  for (auto& m : net->modules(/*include_self=*/false)) {
    if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      b->running_mean.zero_();
      b->running_var.fill_(1.0);
      b->num_batches_tracked.zero_();
      b->options.momentum(c10::nullopt);  // cumulative moving average
    }
  }
}

std::vector<Tensor> recalibration_batches(const data::Split& train, const data::Normalizer& norm,
                                          int n_batches, int64_t batch_size, uint64_t seed) {
  if (n_batches < 1) throw UserError(fmt::format("--recalibrate-bn must be at least 1, got {}", n_batches));
  if (train.size() < 2) throw UserError("--recalibrate-bn needs a training set with at least 2 images");
  data::LoaderOptions lo;
  lo.batch_size = std::min<int64_t>(batch_size, train.size());
  lo.shuffle = true;
  lo.augment = false;
  lo.drop_last = true;  // equal batches: every batch weighs the same in the cumulative average
  lo.seed = seed;
  std::vector<Tensor> out;
  for (int64_t epoch = 0; static_cast<int>(out.size()) < n_batches; ++epoch) {
    data::Loader loader(train, norm, lo, epoch);
    data::Batch b;
    while (static_cast<int>(out.size()) < n_batches && loader.next(b)) out.push_back(b.images);
  }
  return out;
}

models::Network recalibrated_copy(const models::Network& net, const Plan& plan,
                                  const std::vector<Tensor>& batches) {
  models::Network copy = models::clone_network(net);
  plan.validate(copy->block_infos());
  reset_batchnorm_statistics(copy);
  const torch::Device device = copy->parameters().front().device();
  copy->train();
  {
    torch::NoGradGuard ng;
    for (const Tensor& x : batches) copy->forward(x.to(device), plan);
  }
  copy->eval();
  return copy;
}

}  // namespace unravel
