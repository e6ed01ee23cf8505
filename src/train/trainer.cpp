// The training loop: SGD written out (so momentum buffers are named and checkpointed),
// schedules, sampled plans (stochastic depth, k active blocks), run directory and resume.
#include "train/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/errors.h"
#include "core/util.h"
#include "data/dataset.h"
#include "models/network.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/evaluate.h"
#include "train/run.h"

namespace unravel {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// ----------------------------------------------------------------------------------------------
// Options

json TrainOptions::to_json() const {
  return {{"model", model},
          {"data", data},
          {"out", out},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"momentum", momentum},
          {"nesterov", nesterov},
          {"weight_decay", weight_decay},
          {"schedule", schedule},
          {"milestones", milestones},
          {"gamma", gamma},
          {"warmup_epochs", warmup_epochs},
          {"shortcut", shortcut},
          {"stochastic_depth", stochastic_depth},
          {"sd_mode", sd_mode},
          {"active_blocks", active_blocks},
          {"active_test", active_test},
          {"augment", augment},
          {"train_subset", train_subset},
          {"test_subset", test_subset},
          {"val_split", val_split},
          {"seed", seed},
          {"threads", threads},
          {"device", device},
          {"log_every", log_every},
          {"eval_batch_size", eval_batch_size},
          {"world_size", dist.world_size}};
}

TrainOptions TrainOptions::from_json(const json& j) {
  TrainOptions o;
  auto get = [&](const char* k, auto& v) {
    if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
  };
  get("model", o.model); get("data", o.data); get("out", o.out); get("epochs", o.epochs);
  get("batch_size", o.batch_size); get("lr", o.lr); get("momentum", o.momentum);
  get("nesterov", o.nesterov); get("weight_decay", o.weight_decay); get("schedule", o.schedule);
  get("milestones", o.milestones); get("gamma", o.gamma); get("warmup_epochs", o.warmup_epochs);
  get("shortcut", o.shortcut); get("stochastic_depth", o.stochastic_depth); get("sd_mode", o.sd_mode);
  get("active_blocks", o.active_blocks); get("active_test", o.active_test); get("augment", o.augment);
  get("train_subset", o.train_subset); get("test_subset", o.test_subset); get("val_split", o.val_split);
  get("seed", o.seed); get("threads", o.threads); get("device", o.device); get("log_every", o.log_every);
  get("eval_batch_size", o.eval_batch_size); get("world_size", o.dist.world_size);
  return o;
}

namespace {

void check_options(const TrainOptions& o) {
  auto bad = [](const std::string& m) { throw UserError(m); };
  if (o.out.empty()) bad("--out DIR is required");
  if (o.epochs < 1) bad(fmt::format("--epochs must be >= 1, got {}", o.epochs));
  if (o.batch_size < 1) bad(fmt::format("--batch-size must be >= 1, got {}", o.batch_size));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) bad(fmt::format("--lr must be > 0, got {}", o.lr));
  if (o.momentum < 0 || o.momentum >= 1) bad(fmt::format("--momentum must be in [0, 1), got {}", o.momentum));
  if (o.weight_decay < 0) bad(fmt::format("--weight-decay must be >= 0, got {}", o.weight_decay));
  if (o.schedule != "step" && o.schedule != "cosine" && o.schedule != "constant")
    bad(fmt::format("--schedule must be step, cosine or constant, got '{}'", o.schedule));
  for (double m : o.milestones)
    if (m <= 0 || m >= 1) bad(fmt::format("--milestones are fractions of the run in (0, 1), got {}", m));
  if (o.warmup_epochs < 0 || o.warmup_epochs >= o.epochs)
    bad(fmt::format("--warmup must be in [0, epochs), got {}", o.warmup_epochs));
  if (o.stochastic_depth < 0 || o.stochastic_depth > 1)
    bad(fmt::format("--stochastic-depth p_L must be in (0, 1] (0 = off), got {}", o.stochastic_depth));
  if (o.sd_mode != "batch" && o.sd_mode != "sample")
    bad(fmt::format("--sd-mode must be batch or sample, got '{}'", o.sd_mode));
  if (o.active_blocks < 0) bad(fmt::format("--active-blocks must be >= 0, got {}", o.active_blocks));
  if (o.active_blocks > 0 && o.stochastic_depth > 0)
    bad("--active-blocks and --stochastic-depth cannot be combined");
  if (o.active_test != "scaled" && o.active_test != "all")
    bad(fmt::format("--active-test must be scaled or all, got '{}'", o.active_test));
  if (o.train_subset < 0 || o.test_subset < 0 || o.val_split < 0)
    bad("--train-subset, --test-subset and --val-split must be >= 0");
  if (o.log_every < 1) bad(fmt::format("--log-every must be >= 1, got {}", o.log_every));
  if (o.stop_after < 0) bad(fmt::format("--stop-after must be >= 0, got {}", o.stop_after));
}

// The options that define a run: a resume must agree on all of them (epochs may grow).
const char* kRunDefining[] = {"model", "data", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
                              "schedule", "milestones", "gamma", "warmup_epochs", "shortcut",
                              "stochastic_depth", "sd_mode", "active_blocks", "augment", "train_subset",
                              "val_split", "seed"};

// SGD with momentum and weight decay, as torch.optim.SGD (dampening 0): d = g + wd p;
// buf = d (first step), buf = m buf + d; step = nesterov ? d + m buf : buf; p -= lr step.
class Sgd {
 public:
  Sgd(models::Network& net, const TrainOptions& o) : o_(o) {
    for (auto& p : net->named_parameters()) params_.emplace_back(p.key(), p.value());
  }
  void zero_grad() {
    for (auto& [n, p] : params_)
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
  void step(double lr) {
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
  void save(TensorMap& m) const {
    for (const auto& [n, b] : buf_) m["momentum." + n] = b.to(torch::kCPU);
  }
  void load(const TensorMap& m, torch::Device dev) {
    for (const auto& [n, p] : params_) {
      auto it = m.find("momentum." + n);
      if (it != m.end()) buf_[n] = it->second.to(dev, p.scalar_type());
    }
  }

 private:
  TrainOptions o_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::map<std::string, torch::Tensor> buf_;
};

// metrics.jsonl without the records of epochs after `last_epoch` (left by an interrupted run).
void truncate_metrics(const std::string& path, int last_epoch) {
  if (!path_exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      auto j = json::parse(line);
      if (j.value("epoch", 0) <= last_epoch) kept += line + "\n";
    } catch (const json::exception&) {
      // a torn last line of an interrupted run
    }
  }
  write_file_atomic(path, kept);
}

class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path) : out_(path, std::ios::app) {
    if (!out_) throw UserError(fmt::format("cannot write {}", path));
  }
  void write(const json& j) {
    out_ << j.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// The random stream of sampled training plans (stochastic depth, k active blocks) in an epoch.
constexpr uint64_t kStreamPlans = 1;
Rng epoch_rng(uint64_t seed, int epoch) { return Rng::stream(mix(seed, static_cast<uint64_t>(epoch)), kStreamPlans); }

}  // namespace

// ----------------------------------------------------------------------------------------------
// Schedules and sampled plans

double learning_rate(const TrainOptions& o, double t) {
  double lr = o.lr;
  if (o.schedule == "step") {
    for (double m : o.milestones)
      if (t >= m * o.epochs) lr *= o.gamma;
  } else if (o.schedule == "cosine") {
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
  if (o.active_blocks > 0 && o.active_test == "scaled")
    return std::vector<double>(n_blocks, static_cast<double>(o.active_blocks) / n_blocks);
  return {};
}

// ----------------------------------------------------------------------------------------------
// The run

namespace {

// Every rank evaluates its shard of `split`; the counts are summed over ranks.
Metrics evaluate_shared(Communicator& comm, models::Network& net, const Plan& plan, const data::Split& split,
                        const data::Normalizer& norm, const EvalOptions& eo) {
  if (comm.size() == 1) return evaluate(net, plan, split, norm, eo);
  const auto [a, b] = shard_range(split.size(), comm.rank(), comm.size());
  Metrics m = evaluate(net, plan, data::slice_split(split, a, b), norm, eo);
  allreduce_metrics(comm, {&m});
  return m;
}

// Batch-norm running statistics averaged over ranks (each saw its own shards), counters from
// rank 0: afterwards every rank holds the same buffers, and rank 0 checkpoints them.
void average_buffers(Communicator& comm, models::Network& net) {
  if (comm.size() == 1) return;
  torch::NoGradGuard ng;
  for (auto& b : net->buffers()) {
    if (b.is_floating_point()) {
      comm.allreduce_sum(b);
      b.div_(comm.size());
    } else {
      comm.broadcast(b, 0);
    }
  }
}

}  // namespace

TrainSummary train(const TrainOptions& opts_in) {
  TrainOptions o = opts_in;
  check_options(o);
  const DistributedOptions& dist = o.dist;
  check_distributed_options(dist);
  const bool root = dist.rank == 0;  // writes the run directory and prints progress
  if (!root) o.quiet = true;
  setup_compute(o.threads);
  const torch::Device device = rank_device(parse_device(o.device), dist.rank, dist.world_size);
  const std::string dir = o.out, cfg_path = dir + "/config.json", ckpt_path = dir + "/checkpoint.pt",
                    metrics_path = dir + "/metrics.jsonl", summary_path = dir + "/summary.json";

  // A directory that already holds a run: the same run continues, anything else is refused.
  json previous = json::object();
  if (path_exists(cfg_path)) {
    previous = read_json_file(cfg_path);
    json now = o.to_json();
    for (const char* k : kRunDefining) {
      if (previous.contains("options") && previous["options"].contains(k) && previous["options"][k] != now[k])
        throw UserError(fmt::format("--out {} holds a run with {}={}, not {}: use another directory to start a new run",
                                    dir, k, previous["options"][k].dump(), now[k].dump()));
    }
  }

  // Data: subsets, validation split, normalisation from the training part.
  data::Dataset ds = data::load_dataset(data::parse_data_spec(o.data));
  data::Split train_split = data::take_subset(ds.train, o.train_subset), val_split;
  if (o.val_split > 0) {
    if (o.val_split >= train_split.size())
      throw UserError(fmt::format("--val-split {} leaves no training images (the training set has {})", o.val_split,
                                  train_split.size()));
    data::Split rest;
    data::split_validation(train_split, o.val_split, o.seed, rest, val_split);
    train_split = rest;
  }
  data::Split test_split = data::take_subset(ds.test, o.test_subset);
  data::Normalizer norm = data::Normalizer::for_dataset(ds, train_split);

  torch::manual_seed(o.seed);
  models::Network net(models::NetworkOptions(o.model)
                          .in_channels(ds.channels)
                          .input_size(ds.height, ds.width)
                          .num_classes(ds.num_classes)
                          .shortcut(o.shortcut));
  const int n = net->num_blocks();
  if (o.active_blocks > n)
    throw UserError(fmt::format("--active-blocks {} exceeds the {} blocks of {}", o.active_blocks, n, o.model));
  net->set_residual_scales(test_time_scales(o, n));
  net->to(device);
  Sgd sgd(net, o);
  std::vector<torch::Tensor> params = net->parameters();
  if (dist.world_size > 1 && !opts_in.quiet)
    std::cerr << fmt::format("[train] rank {} of {}: joining the others at {} (gives up after {} s)\n", dist.rank,
                             dist.world_size, dist.store, dist.timeout_s);
  Communicator comm(dist);  // waits for every rank

  int start_epoch = 0;
  if (path_exists(ckpt_path)) {
    TensorMap ck = load_tensors(ckpt_path);
    load_network_state(net, ck, ckpt_path);
    sgd.load(ck, device);
    start_epoch = static_cast<int>(ck.at("epoch").item<int64_t>());
    if (root) truncate_metrics(metrics_path, start_epoch);
    if (!o.quiet)
      std::cerr << fmt::format("[train] resuming {} from epoch {} of {}\n", dir, start_epoch, o.epochs);
  } else if (root) {
    make_dirs(dir);
    truncate_metrics(metrics_path, 0);
  }

  json info = build_info();
  info["libtorch"] = TORCH_VERSION;
  json cfg = {{"command", "train"},
              {"model", o.model},
              {"data", ds.spec.str()},
              {"seed", o.seed},
              {"options", o.to_json()},
              {"network",
               {{"in_channels", ds.channels},
                {"height", ds.height},
                {"width", ds.width},
                {"num_classes", ds.num_classes},
                {"shortcut", o.shortcut},
                {"num_blocks", n},
                {"num_parameters", net->num_parameters()}}},
              {"normalizer", {{"mean", norm.mean}, {"std", norm.std}}},
              {"residual_scales", net->residual_scales()},
              {"class_names", ds.class_names},
              {"sizes", {{"train", train_split.size()}, {"val", val_split.size()}, {"test", test_split.size()}}},
              {"versions", info},
              {"threads", torch::get_num_threads()},
              {"world_size", dist.world_size},
              {"device", device.str()},
              {"created", previous.value("created", iso_time_now())},
              {"updated", iso_time_now()}};
  if (root) write_json_atomic(cfg_path, cfg);

  TrainSummary summary;
  json prev_summary = path_exists(summary_path) ? read_json_file(summary_path) : json::object();
  summary.best_val_error = prev_summary.value("best_val_error", 1.0);
  summary.best_val_epoch = prev_summary.value("best_val_epoch", 0);
  summary.epochs_done = start_epoch;
  if (start_epoch >= o.epochs) {
    if (!o.quiet) std::cerr << fmt::format("[train] {} already has {} epochs; nothing to do\n", dir, start_epoch);
    summary.json = prev_summary;
    summary.test_error = prev_summary.value("test_error", 1.0);
    return summary;
  }

  std::unique_ptr<JsonlWriter> metrics;
  if (root) metrics = std::make_unique<JsonlWriter>(metrics_path);
  EvalOptions eo;
  eo.batch_size = o.eval_batch_size;
  eo.device = device;
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shuffle = true;
  lo.augment = o.augment;
  lo.seed = o.seed;
  const int64_t steps_per_epoch = (train_split.size() + o.batch_size - 1) / o.batch_size;
  Progress progress("train", (std::min(o.epochs, o.stop_after > 0 ? start_epoch + o.stop_after : o.epochs) - start_epoch) * train_split.size(), "images", o.quiet ? 1e12 : 2.0);
  int64_t images_done = 0;
  const auto run_start = Clock::now();
  double train_seconds_total = prev_summary.value("train_seconds", 0.0);

  const int last_epoch = o.stop_after > 0 ? std::min(o.epochs, start_epoch + o.stop_after) : o.epochs;
  for (int epoch = start_epoch + 1; epoch <= last_epoch; ++epoch) {
    net->train();
    Rng plan_rng = epoch_rng(o.seed, epoch);
    data::Loader loader(train_split, norm, lo, epoch);
    data::Batch batch;
    double loss_sum = 0, data_s = 0;
    int64_t seen = 0, correct = 0, step = 0;
    const auto epoch_start = Clock::now();
    auto t0 = Clock::now();
    while (loader.next(batch)) {
      apply_thread_policy();
      data_s += std::chrono::duration<double>(Clock::now() - t0).count();
      ++step;
      const double lr = learning_rate(o, (epoch - 1) + static_cast<double>(step - 1) / steps_per_epoch);
      Plan plan = Plan::intact(n);
      std::vector<models::StepExtras> extras;
      if (o.active_blocks > 0) {
        plan = sample_active_blocks(n, o.active_blocks, plan_rng);
      } else if (o.stochastic_depth > 0 && o.sd_mode == "batch") {
        plan = sample_stochastic_depth(n, o.stochastic_depth, plan_rng);
      } else if (o.stochastic_depth > 0) {
        auto p = survival_probabilities(n, o.stochastic_depth);
        extras.resize(n);
        for (int l = 0; l < n; ++l) {
          std::vector<float> m(batch.labels.size(0));
          for (auto& v : m) v = plan_rng.uniform() < p[l] ? 1.0f : 0.0f;
          extras[l].residual_mask = torch::tensor(m).to(device);
        }
      }
      // This rank's shard of the mini-batch (all of it with one process); sampled plans and
      // per-image masks were drawn for the whole batch, identically on every rank.
      const int64_t b = batch.labels.size(0);
      const auto [first, last] = shard_range(b, comm.rank(), comm.size());
      for (auto& e : extras) e.residual_mask = e.residual_mask.slice(0, first, last);
      sgd.zero_grad();
      std::vector<double> stats{0.0, 0.0};  // summed loss, correct answers (over the whole batch, after sync)
      if (last > first) {
        auto x = batch.images.slice(0, first, last).to(device), y = batch.labels.slice(0, first, last).to(device);
        auto logits = net->forward(x, plan, extras.empty() ? nullptr : &extras);
        auto loss = torch::nn::functional::cross_entropy(logits, y);
        stats[0] = loss.item<double>() * static_cast<double>(last - first);
        stats[1] = static_cast<double>(logits.argmax(1).eq(y).sum().item<int64_t>());
        loss.backward();
      }
      sync_gradients(comm, params, last - first, b, stats);
      const double loss_v = stats[0] / static_cast<double>(b);
      if (!std::isfinite(loss_v))
        throw UserError(fmt::format("loss became {} at epoch {} step {} (lr {}); stopped. The last good checkpoint "
                                    "(epoch {}) is kept in {}: try a lower --lr or --warmup",
                                    loss_v, epoch, step, lr, epoch - 1, dir));
      sgd.step(lr);
      loss_sum += stats[0];
      correct += std::llround(stats[1]);
      seen += b;
      images_done += b;
      const double el = std::chrono::duration<double>(Clock::now() - epoch_start).count();
      if (root && step % o.log_every == 0) {
        metrics->write({{"type", "step"}, {"epoch", epoch}, {"step", step}, {"loss", loss_v}, {"lr", lr},
                       {"train_error", 1.0 - static_cast<double>(correct) / seen}, {"images_per_s", seen / el}});
      }
      progress.update(images_done, fmt::format("epoch {}/{} step {}/{} loss {:.4f} err {:.2f}%", epoch, o.epochs, step,
                                               steps_per_epoch, loss_sum / seen,
                                               100.0 * (1.0 - static_cast<double>(correct) / seen)));
      t0 = Clock::now();
    }
    const double train_s = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    train_seconds_total += train_s;

    average_buffers(comm, net);
    const auto eval_start = Clock::now();
    Metrics test = evaluate_shared(comm, net, net->default_plan(), test_split, norm, eo);
    const double eval_s = std::chrono::duration<double>(Clock::now() - eval_start).count();
    json rec = {{"type", "epoch"},
                {"epoch", epoch},
                {"train_loss", loss_sum / seen},
                {"train_error", 1.0 - static_cast<double>(correct) / seen},
                {"test_error", test.top1_error()},
                {"test_top5_error", test.top5_error()},
                {"test_loss", test.loss()},
                {"lr", learning_rate(o, epoch - 1)},
                {"images_per_s", seen / train_s},
                {"eval_images_per_s", test.n / eval_s},
                {"data_share", data_s / train_s},
                {"seconds", train_s}};
    if (val_split.size() > 0) {
      Metrics val = evaluate_shared(comm, net, net->default_plan(), val_split, norm, eo);
      rec["val_error"] = val.top1_error();
      if (val.top1_error() < summary.best_val_error) {
        summary.best_val_error = val.top1_error();
        summary.best_val_epoch = epoch;
      }
    }
    if (root) {
      metrics->write(rec);
      TensorMap ck = network_state(net);
      sgd.save(ck);
      ck["epoch"] = torch::tensor(static_cast<int64_t>(epoch));
      save_tensors_atomic(ckpt_path, ck);
    }

    summary.epochs_done = epoch;
    summary.test_error = test.top1_error();
    json s = {{"epochs", epoch},
              {"test_error", test.top1_error()},
              {"test_top5_error", test.top5_error()},
              {"test_loss", test.loss()},
              {"test_n", test.n},
              {"train_images_per_s", seen / train_s},
              {"eval_images_per_s", test.n / eval_s},
              {"data_share", data_s / train_s},
              {"train_seconds", train_seconds_total},
              {"num_parameters", net->num_parameters()}};
    if (val_split.size() > 0) {
      s["best_val_error"] = summary.best_val_error;
      s["best_val_epoch"] = summary.best_val_epoch;
    }
    if (o.active_blocks > 0) {  // both test-time conventions of short-path training
      Metrics all = evaluate_shared(comm, net, Plan::intact(n), test_split, norm, eo);
      Plan scaled = Plan::intact(n);
      for (auto& st : scaled.steps()) st.residual_scale = static_cast<double>(o.active_blocks) / n;
      Metrics sc = evaluate_shared(comm, net, scaled, test_split, norm, eo);
      s["active_test_error"] = {{"scaled", sc.top1_error()}, {"all", all.top1_error()}, {"default", o.active_test}};
    }
    summary.json = s;
    if (root) write_json_atomic(summary_path, s);
    if (!o.quiet)
      std::cerr << fmt::format("[train] epoch {}/{}: train loss {:.4f}, test error {:.2f}%{}, {:.0f} images/s, "
                               "data {:.1f}% of the step\n",
                               epoch, o.epochs, loss_sum / seen, 100.0 * test.top1_error(),
                               rec.contains("val_error") ? fmt::format(", val error {:.2f}%", 100.0 * rec["val_error"].get<double>()) : "",
                               seen / train_s, 100.0 * data_s / train_s);
  }
  if (!o.quiet) progress.finish();
  summary.seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  return summary;
}

}  // namespace unravel
