// The training loop into a run directory: sampled plans per mini-batch (stochastic depth, k
// active blocks), data-parallel shards, one writer per directory, atomic checkpoints, summaries
// that name the checkpoint they describe, and exact resumption.
#include "train/trainer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <optional>

#include "core/errors.h"
#include "core/hash.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "data/dataset.h"
#include "engine/compute.h"
#include "models/network.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/sgd.h"

namespace unravel {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

// The total epochs a run was planned for (its config.json), or `otherwise` when not recorded.
int planned_epochs(const RunConfig& c, int otherwise) {
  const auto it = c.options.find("epochs");
  return it != c.options.end() && it->is_number_integer() ? it->get<int>() : otherwise;
}


// A number in summary.json, `otherwise` when absent; UserError naming the file for another type.
template <typename T>
T summary_number(const json& s, const char* key, T otherwise, const std::string& path) {
  const auto it = s.find(key);
  if (it == s.end()) return otherwise;
  if (!it->is_number())
    throw UserError(fmt::format("{}: \"{}\" is {}, not a number", path, key, elide_middle(it->dump(), 40)));
  return it->get<T>();
}

// metrics.jsonl without the records of epochs after `last_epoch` (left by an interrupted run).
void truncate_metrics(const std::string& path, int last_epoch) {
  if (!path_exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  bool dropped = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      auto j = json::parse(line);
      if (j.value("epoch", 0) <= last_epoch) kept += line + "\n";
      else dropped = true;
    } catch (const json::exception&) {
      dropped = true;  // a torn last line of an interrupted run
    }
  }
  if (dropped) write_file_atomic(path, kept);  // an intact file is left as it is
}

class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path) : out_(path, std::ios::app) {
    if (!out_) throw UserError(fmt::format("cannot write {}", path));
  }
  void write(json j) {
    j["schema_version"] = kRunSchemaVersion;  // every record says which schema it follows
    out_ << j.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

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

// ----------------------------------------------------------------------------------------------
// The run

namespace {

struct TrainData {
  data::Dataset ds;
  data::Split train, val, test;
  data::Normalizer norm;
};

// The data set, the training subset without its validation images, the test subset, and the
// normalisation (fitted on the training part unless the data set prescribes one).
TrainData load_train_data(const TrainOptions& o) {
  TrainData d;
  d.ds = data::load_dataset(data::parse_data_spec(o.data));
  d.train = data::take_subset(d.ds.train, o.train_subset);
  if (o.val_split > 0) {
    if (o.val_split >= d.train.size())
      throw UserError(fmt::format("--val-split {} leaves no training images (the training set has {})", o.val_split,
                                  d.train.size()));
    const data::Split all = d.train;
    data::split_validation(all, o.val_split, o.seed, d.train, d.val);
  }
  d.test = data::take_subset(d.ds.test, o.test_subset);
  d.norm = data::Normalizer::for_dataset(d.ds, d.train);
  return d;
}

// What one epoch of training measured.
struct EpochStats {
  double loss_sum = 0, seconds = 0, data_seconds = 0;
  int64_t seen = 0, correct = 0;
};

class Trainer {
 public:
  explicit Trainer(const TrainOptions& in);
  TrainSummary run();

 private:
  void check_same_run(const RunConfig& previous) const;
  void resume();
  RunConfig make_config(const RunConfig* previous) const;
  Plan sample_plan(Rng& rng, int64_t batch, std::vector<models::StepExtras>& extras) const;
  EpochStats train_epoch(int epoch, Progress& progress, int64_t& images_done);
  json evaluate_epoch(int epoch, json& record);
  void finish_epoch(int epoch, const EpochStats& st);
  void repair_summary();

  TrainOptions o_;
  bool root_;
  torch::Device device_{torch::kCPU};
  RunDirectory rd_;
  RunLock lock_;
  TrainData data_;
  models::Network net_{nullptr};
  std::unique_ptr<Sgd> sgd_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<JsonlWriter> metrics_;
  int n_ = 0, start_epoch_ = 0;
  bool summary_stale_ = false;
  std::string epochs_rule_;  // what a changed --epochs does to the schedule ("" when unchanged)
  json previous_summary_ = json::object();
  TrainSummary summary_;
  double train_seconds_total_ = 0;
};

Trainer::Trainer(const TrainOptions& in) : o_(in), root_(in.dist.rank == 0), rd_(in.out) {
  o_.validate();
  if (o_.shortcut.empty()) o_.shortcut = models::ModelSpec::parse(o_.model).default_shortcut;
  check_distributed_options(o_.dist);
  if (!root_) o_.quiet = true;
  setup_compute(o_.threads);
  device_ = rank_device(parse_device(o_.device), o_.dist.rank, o_.dist.world_size);
  // One writer per run directory, before anything in it is read: a second process stops here.
  if (root_) lock_ = rd_.open_for_writing("run directory");
  std::optional<RunConfig> previous;
  if (rd_.has_config()) {
    previous = rd_.read_config();
    check_same_run(*previous);
  }
  data_ = load_train_data(o_);
  torch::manual_seed(o_.seed);
  net_ = models::Network(models::NetworkOptions(o_.model)
                             .in_channels(data_.ds.channels)
                             .input_size(data_.ds.height, data_.ds.width)
                             .num_classes(data_.ds.num_classes)
                             .shortcut(o_.shortcut));
  n_ = net_->num_blocks();
  if (o_.active_blocks > n_)
    throw UserError(fmt::format("--active-blocks {} exceeds the {} blocks of {}", o_.active_blocks, n_, o_.model));
  net_->set_residual_scales(test_time_scales(o_, n_));
  net_->to(device_);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : net_->named_parameters()) named.emplace_back(p.key(), p.value());
  sgd_ = std::make_unique<Sgd>(named, SgdOptions{o_.momentum, o_.weight_decay, o_.nesterov});
  params_ = net_->parameters();
  if (o_.dist.world_size > 1 && !in.quiet)
    std::cerr << fmt::format("[train] rank {} of {}: joining the others at {} (gives up after {} s)\n", o_.dist.rank,
                             o_.dist.world_size, o_.dist.store, o_.dist.timeout_s);
  comm_ = std::make_unique<Communicator>(o_.dist);  // waits for every rank
  resume();
  const int before = previous ? planned_epochs(*previous, o_.epochs) : o_.epochs;
  if (before != o_.epochs && start_epoch_ > 0 && start_epoch_ < o_.epochs) {
    epochs_rule_ = epochs_change_rule(o_, before, start_epoch_);
    if (root_) std::cerr << fmt::format("[train] {}: --epochs {} -> {}: {}\n", o_.out, before, o_.epochs, epochs_rule_);
  }
  // A finished run that is asked for nothing more is left untouched (config.json included).
  if (root_ && (!previous || start_epoch_ < o_.epochs)) rd_.write_config(make_config(previous ? &*previous : nullptr));
}

// A directory that already holds a run: the same run continues, anything else is refused.
void Trainer::check_same_run(const RunConfig& previous) const {
  if (previous.command != "train")
    throw UserError(fmt::format("run directory {} holds an imported network, not a training run: use another "
                                "directory", o_.out));
  const json now = o_.to_json();
  for (const char* k : kRunDefiningOptions)
    if (previous.options.contains(k) && previous.options[k] != now[k])
      throw UserError(fmt::format("run directory {} holds a run with {}={}, not {}: use another directory to start "
                                  "a new run", o_.out, k, elide_middle(previous.options[k].dump()),
                                  elide_middle(now[k].dump())));
}

// Weights, momentum and epoch from the checkpoint; a summary that does not describe it (the
// process stopped between the two writes) is marked stale and rewritten.
void Trainer::resume() {
  if (!rd_.has_checkpoint()) {
    if (root_) truncate_metrics(rd_.metrics_path(), 0);
    return;
  }
  const TensorMap ck = load_tensors(rd_.checkpoint_path());
  load_network_state(net_, ck, rd_.checkpoint_path());
  sgd_->load(ck, device_);
  auto epoch = ck.find("epoch");
  if (epoch == ck.end() || epoch->second.numel() != 1 || epoch->second.is_floating_point())
    throw UserError(fmt::format("{}: no integer \"epoch\" entry: not a checkpoint of `unravel train`",
                                rd_.checkpoint_path()));
  start_epoch_ = static_cast<int>(epoch->second.item<int64_t>());
  if (start_epoch_ < 1 || start_epoch_ > 1000000)
    throw UserError(fmt::format("{}: epoch {} is out of range", rd_.checkpoint_path(), start_epoch_));
  previous_summary_ = rd_.read_summary();
  const RunDirectory::CheckpointState st = rd_.checkpoint_state();
  const std::string sp = rd_.summary_path();
  summary_stale_ = !st.consistent || summary_number(previous_summary_, "epochs", 0, sp) != start_epoch_;
  train_seconds_total_ = summary_number(previous_summary_, "train_seconds", 0.0, sp);
  summary_.best_val_error = summary_number(previous_summary_, "best_val_error", 1.0, sp);
  summary_.best_val_epoch = summary_number(previous_summary_, "best_val_epoch", 0, sp);
  summary_number(previous_summary_, "test_error", 1.0, sp);  // what a finished run reports
  summary_.epochs_done = start_epoch_;
  if (root_) truncate_metrics(rd_.metrics_path(), start_epoch_);
  if (!o_.quiet)
    std::cerr << fmt::format("[train] resuming {} from epoch {} of {}\n", o_.out, start_epoch_, o_.epochs);
}

RunConfig Trainer::make_config(const RunConfig* previous) const {
  RunConfig c;
  c.command = "train";
  c.model = o_.model;
  c.data = data_.ds.spec.str();
  c.seed = o_.seed;
  c.options = o_.to_json();
  c.network = {data_.ds.channels, data_.ds.height, data_.ds.width, data_.ds.num_classes, o_.shortcut, n_,
               net_->num_parameters()};
  c.mean = data_.norm.mean;
  c.std = data_.norm.std;
  c.residual_scales = net_->residual_scales();
  c.class_names = data_.ds.class_names;
  c.sizes = {{"train", data_.train.size()}, {"val", data_.val.size()}, {"test", data_.test.size()}};
  c.versions = build_info();
  c.versions["libtorch"] = TORCH_VERSION;
  c.threads = torch::get_num_threads();
  c.world_size = o_.dist.world_size;
  c.device = device_.str();
  c.created = previous ? previous->created : iso_time_now();
  c.updated = iso_time_now();
  // Each change of --epochs is recorded: the step schedule's milestones are fractions of the
  // run, so extending a run moves them (epochs already trained keep the schedule they had).
  c.source = previous ? previous->source : json::object();
  json history = c.source.value("epochs_history", json::array());
  if (!history.is_array()) history = json::array();
  const int before = previous ? planned_epochs(*previous, o_.epochs) : o_.epochs;
  if (history.empty() || before != o_.epochs) {
    history.push_back({{"epochs", o_.epochs}, {"from_epoch", start_epoch_}, {"at", iso_time_now()}});
    if (!epochs_rule_.empty()) history.back()["rule"] = epochs_rule_;
  }
  c.source["epochs_history"] = history;
  return c;
}

Plan Trainer::sample_plan(Rng& rng, int64_t batch, std::vector<models::StepExtras>& extras) const {
  extras.clear();
  if (o_.active_blocks > 0) return sample_active_blocks(n_, o_.active_blocks, rng);
  if (o_.stochastic_depth > 0 && o_.sd_mode == SdMode::Batch) return sample_stochastic_depth(n_, o_.stochastic_depth, rng);
  if (o_.stochastic_depth > 0) {  // per image: a residual mask per block
    const auto p = survival_probabilities(n_, o_.stochastic_depth);
    extras.resize(n_);
    for (int l = 0; l < n_; ++l) {
      std::vector<float> m(static_cast<size_t>(batch));
      for (auto& v : m) v = rng.uniform() < p[l] ? 1.0f : 0.0f;
      extras[l].residual_mask = torch::tensor(m).to(device_);
    }
  }
  return Plan::intact(n_);
}

EpochStats Trainer::train_epoch(int epoch, Progress& progress, int64_t& images_done) {
  net_->train();
  Rng plan_rng = training_plan_rng(o_.seed, epoch);
  data::LoaderOptions lo;
  lo.batch_size = o_.batch_size;
  lo.shuffle = true;
  lo.augment = o_.augment;
  lo.seed = o_.seed;
  data::Loader loader(data_.train, data_.norm, lo, epoch);
  const int64_t steps_per_epoch = loader.num_batches();
  EpochStats st;
  data::Batch batch;
  std::vector<models::StepExtras> extras;
  const auto epoch_start = Clock::now();
  auto t0 = Clock::now();
  for (int64_t step = 1; loader.next(batch); ++step) {
    apply_thread_policy();
    st.data_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    const double lr = learning_rate(o_, (epoch - 1) + static_cast<double>(step - 1) / steps_per_epoch);
    const int64_t b = batch.labels.size(0);
    const Plan plan = sample_plan(plan_rng, b, extras);
    // This rank's shard of the mini-batch (all of it with one process); sampled plans and
    // per-image masks were drawn for the whole batch, identically on every rank.
    const auto [first, last] = shard_range(b, comm_->rank(), comm_->size());
    for (auto& e : extras) e.residual_mask = e.residual_mask.slice(0, first, last);
    sgd_->zero_grad();
    std::vector<double> stats{0.0, 0.0};  // summed loss, correct answers (whole batch, after sync)
    if (last > first) {
      auto x = batch.images.slice(0, first, last).to(device_), y = batch.labels.slice(0, first, last).to(device_);
      torch::Tensor logits;
      {
        MixedPrecision autocast(o_.precision, device_);
        logits = net_->forward(x, plan, extras.empty() ? nullptr : &extras).to(torch::kFloat);
      }
      auto loss = torch::nn::functional::cross_entropy(logits, y);
      stats[0] = loss.item<double>() * static_cast<double>(last - first);
      stats[1] = static_cast<double>(logits.argmax(1).eq(y).sum().item<int64_t>());
      loss.backward();
    }
    sync_gradients(*comm_, params_, last - first, b, stats);
    const double loss_v = stats[0] / static_cast<double>(b);
    if (!std::isfinite(loss_v))
      throw UserError(fmt::format("loss became {} at epoch {} step {} (lr {}); stopped. The last good checkpoint "
                                  "(epoch {}) is kept in {}: try a lower --lr or --warmup",
                                  loss_v, epoch, step, lr, epoch - 1, o_.out));
    sgd_->step(lr);
    st.loss_sum += stats[0];
    st.correct += std::llround(stats[1]);
    st.seen += b;
    images_done += b;
    const double el = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    if (root_ && step % o_.log_every == 0)
      metrics_->write({{"type", "step"}, {"epoch", epoch}, {"step", step}, {"loss", loss_v}, {"lr", lr},
                       {"train_error", 1.0 - static_cast<double>(st.correct) / st.seen},
                       {"images_per_s", st.seen / el}});
    progress.update(images_done, fmt::format("epoch {}/{} step {}/{} loss {:.4f} err {:.2f}%", epoch, o_.epochs, step,
                                             steps_per_epoch, st.loss_sum / st.seen,
                                             100.0 * (1.0 - static_cast<double>(st.correct) / st.seen)));
    t0 = Clock::now();
  }
  st.seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
  return st;
}

// Test (and validation) metrics of the network as it is after `epoch`: the summary's
// evaluation fields; `record` (the epoch's metrics.jsonl line) gets the same numbers.
json Trainer::evaluate_epoch(int epoch, json& record) {
  EvalOptions eo;
  eo.batch_size = o_.eval_batch_size;
  average_buffers(*comm_, net_);
  const auto eval_start = Clock::now();
  const Metrics test = evaluate_shared(*comm_, net_, net_->default_plan(), data_.test, data_.norm, eo);
  const double eval_s = std::chrono::duration<double>(Clock::now() - eval_start).count();
  json s = {{"epochs", epoch},
            {"test_error", test.top1_error()},
            {"test_top5_error", test.top5_error()},
            {"test_loss", test.loss()},
            {"test_n", test.n},
            {"eval_images_per_s", test.n / eval_s},
            {"num_parameters", net_->num_parameters()}};
  record.update({{"test_error", test.top1_error()}, {"test_top5_error", test.top5_error()},
                 {"test_loss", test.loss()}, {"eval_images_per_s", test.n / eval_s}});
  if (data_.val.size() > 0) {
    const Metrics val = evaluate_shared(*comm_, net_, net_->default_plan(), data_.val, data_.norm, eo);
    record["val_error"] = val.top1_error();
    if (val.top1_error() < summary_.best_val_error) {
      summary_.best_val_error = val.top1_error();
      summary_.best_val_epoch = epoch;
    }
    s["best_val_error"] = summary_.best_val_error;
    s["best_val_epoch"] = summary_.best_val_epoch;
  }
  if (o_.active_blocks > 0) {  // both test-time conventions of short-path training
    const Metrics all = evaluate_shared(*comm_, net_, Plan::intact(n_), data_.test, data_.norm, eo);
    Plan scaled = Plan::intact(n_);
    for (auto& st : scaled.steps()) st.residual_scale = static_cast<double>(o_.active_blocks) / n_;
    const Metrics sc = evaluate_shared(*comm_, net_, scaled, data_.test, data_.norm, eo);
    s["active_test_error"] = {{"scaled", sc.top1_error()}, {"all", all.top1_error()}, {"default", name(o_.active_test)}};
  }
  summary_.epochs_done = epoch;
  summary_.test_error = test.top1_error();
  return s;
}

// metrics.jsonl record, checkpoint, then the summary that names the checkpoint it describes.
void Trainer::finish_epoch(int epoch, const EpochStats& st) {
  train_seconds_total_ += st.seconds;
  json rec = {{"type", "epoch"},
              {"epoch", epoch},
              {"train_loss", st.loss_sum / st.seen},
              {"train_error", 1.0 - static_cast<double>(st.correct) / st.seen},
              {"lr", learning_rate(o_, epoch - 1)},
              {"images_per_s", st.seen / st.seconds},
              {"data_share", st.data_seconds / st.seconds},
              {"seconds", st.seconds}};
  json s = evaluate_epoch(epoch, rec);
  s["train_images_per_s"] = st.seen / st.seconds;
  s["data_share"] = st.data_seconds / st.seconds;
  s["train_seconds"] = train_seconds_total_;
  summary_.json = s;
  if (root_) {
    metrics_->write(rec);
    TensorMap ck = network_state(net_);
    sgd_->save(ck);
    ck["epoch"] = torch::tensor(static_cast<int64_t>(epoch));
    save_tensors_atomic(rd_.checkpoint_path(), ck);
    rd_.write_summary(s, {epoch, file_fingerprint(rd_.checkpoint_path())});
  }
  if (!o_.quiet)
    std::cerr << fmt::format("[train] epoch {}/{}: train loss {:.4f}, test error {:.2f}%{}, {:.0f} images/s, "
                             "data {:.1f}% of the step\n",
                             epoch, o_.epochs, st.loss_sum / st.seen, 100.0 * s["test_error"].get<double>(),
                             rec.contains("val_error")
                                 ? fmt::format(", val error {:.2f}%", 100.0 * rec["val_error"].get<double>())
                                 : "",
                             st.seen / st.seconds, 100.0 * st.data_seconds / st.seconds);
}

// The checkpoint is newer than the summary (stopped between the two writes): evaluate it again
// and write the summary it should have, keeping the speed figures of the previous summary.
void Trainer::repair_summary() {
  if (!o_.quiet)
    std::cerr << fmt::format("[train] {}: summary.json does not describe checkpoint.pt (epoch {}); evaluating it "
                             "again\n", o_.out, start_epoch_);
  json unused;
  json s = evaluate_epoch(start_epoch_, unused);
  for (const char* k : {"train_images_per_s", "data_share", "train_seconds"})
    if (previous_summary_.contains(k)) s[k] = previous_summary_[k];
  summary_.json = s;
  if (root_) rd_.write_summary(s, {start_epoch_, file_fingerprint(rd_.checkpoint_path())});
}

TrainSummary Trainer::run() {
  if (start_epoch_ >= o_.epochs) {
    if (summary_stale_) repair_summary();
    else summary_.json = previous_summary_;
    if (!o_.quiet) std::cerr << fmt::format("[train] {} already has {} epochs; nothing to do\n", o_.out, start_epoch_);
    summary_.test_error = summary_.json.value("test_error", 1.0);
    return summary_;
  }
  if (root_) metrics_ = std::make_unique<JsonlWriter>(rd_.metrics_path());
  const int last_epoch = o_.stop_after > 0 ? std::min(o_.epochs, start_epoch_ + o_.stop_after) : o_.epochs;
  Progress progress("train", (last_epoch - start_epoch_) * data_.train.size(), "images", o_.quiet ? 1e12 : 2.0);
  int64_t images_done = 0;
  const auto run_start = Clock::now();
  for (int epoch = start_epoch_ + 1; epoch <= last_epoch; ++epoch) finish_epoch(epoch, train_epoch(epoch, progress, images_done));
  if (!o_.quiet) progress.finish();
  summary_.seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  return summary_;
}

}  // namespace

TrainSummary train(const TrainOptions& opts) { return Trainer(opts).run(); }

}  // namespace unravel
