// `unravel repro` (see repro.h): the preset table, the four training runs, every experiment of
// PAPER.md through the library APIs, a cache of finished steps, DIR/results.json and the report.
#include "repro/repro.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>

#include "core/errors.h"
#include "core/hash.h"
#include "core/util.h"
#include "data/dataset.h"
#include "lesion/lesion.h"
#include "models/network.h"
#include "paths/gradients.h"
#include "paths/path_counts.h"
#include "report/report.h"
#include "train/run.h"
#include "train/trainer.h"

namespace unravel::repro {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Bump when the JSON a step produces changes meaning: every cached step is then recomputed.
constexpr int kStepVersion = 1;

// ---- the preset table ------------------------------------------------------------------------

const std::vector<Preset>& presets() {
  // Timings behind quick: see README "Reproducing the paper" (2-core machine).
  static const std::vector<Preset> table = [] {
    std::vector<Preset> t;
    Preset smoke;
    smoke.name = "smoke";
    smoke.purpose = "tiny: every step on a 6-block net and synthetic data (~1 min; the test suite)";
    smoke.model = "preresnet14";
    smoke.data = "synthetic:train=2048,test=512,size=12,channels=1";
    smoke.epochs = 3;  // ~60% accuracy on this set: enough for deletions to mean something
    smoke.batch_size = 32;
    smoke.lr = 0.1;
    smoke.plain_lr = 0.1;
    smoke.train_subset = 0;
    smoke.test_subset = 0;
    smoke.lesion_samples = 2;
    smoke.grad_samples = 20;
    smoke.grad_batch = 16;
    smoke.sign_samples = 8;
    smoke.budget_s = 180;
    // One thread: a 6-block net on 12x12 images gains nothing from a second one, and on a busy
    // machine libtorch's spinning OpenMP barriers made the 2-thread smoke run 100x slower.
    smoke.threads = 1;
    t.push_back(smoke);

    Preset quick;
    quick.name = "quick";
    quick.purpose = "the README's main job: 27 blocks on Fashion-MNIST in at most 20 min on 2 cores";
    quick.model = "preresnet56";
    quick.data = "fashion-mnist";
    quick.epochs = 3;
    quick.batch_size = 128;
    quick.lr = 0.1;
    quick.plain_lr = 0.05;  // plain56 stayed at chance (loss 2.3) for 3 epochs at 0.1
    quick.warmup_epochs = 0.2;
    quick.train_subset = 15000;
    quick.test_subset = 1000;
    quick.lesion_samples = 4;
    quick.grad_samples = 100;
    quick.grad_batch = 32;
    quick.sign_samples = 16;
    quick.budget_s = 1200;
    t.push_back(quick);

    // The paper at its own depth on this project's 2-core machine: 54 blocks, all of
    // Fashion-MNIST, the longest schedule that fits about two hours in all (per epoch of the
    // four nets ~13 min at 2 threads: preresnet110 ~300 s, its stochastic-depth twin ~250 s, the
    // 23-of-54 net ~185 s, plain14 ~45 s; the experiments ~25 min). The plain control is the
    // paper's: a ~15-layer VGG-like net (plain14), not a 110-layer plain net.
    Preset paper;
    paper.name = "paper";
    paper.purpose = "the paper's 54 blocks on all of Fashion-MNIST, 8 epochs: ~2 h on 2 idle cores";
    paper.model = "preresnet110";
    paper.plain_model = "plain14";
    paper.data = "fashion-mnist";
    paper.epochs = 8;
    paper.batch_size = 128;
    paper.lr = 0.1;
    paper.plain_lr = 0.1;
    paper.warmup_epochs = 0.5;  // He et al. warm ResNet-110 up for 400 iterations
    paper.train_subset = 0;
    paper.test_subset = 0;
    paper.lesion_samples = 5;
    paper.random_test_subset = 2000;
    paper.grad_samples = 200;
    paper.grad_batch = 32;
    paper.sign_samples = 16;
    paper.budget_s = 7200;
    t.push_back(paper);

    Preset full;
    full.name = "full";
    full.purpose = "the paper's ResNet-110 (54 blocks) and schedule: a GPU or a patient user";
    full.model = "preresnet110";
    full.data = "fashion-mnist";
    full.epochs = 164;  // ~64k iterations of batch 128 on CIFAR-10's 50k images
    full.batch_size = 128;
    full.lr = 0.1;
    full.plain_lr = 0.05;
    full.warmup_epochs = 1;  // He et al. warm ResNet-110 up at lr 0.01 for 400 iterations
    full.train_subset = 0;
    full.test_subset = 0;
    full.lesion_samples = 10;
    full.grad_samples = 1000;
    full.grad_batch = 128;
    full.sign_samples = 16;
    full.budget_s = 0;
    t.push_back(full);
    return t;
  }();
  return table;
}

json Preset::to_json() const {
  return {{"name", name},
          {"model", model},
          {"plain_model", plain_model},
          {"data", data},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"plain_lr", plain_lr},
          {"milestones", milestones},
          {"warmup_epochs", warmup_epochs},
          {"train_subset", train_subset},
          {"test_subset", test_subset},
          {"lesion_samples", lesion_samples},
          {"random_test_subset", random_test_subset},
          {"recalibrate_batches", recalibrate_batches},
          {"grad_samples", grad_samples},
          {"grad_batch", grad_batch},
          {"sign_samples", sign_samples},
          {"budget_s", budget_s},
          {"threads", threads}};
}

const Preset& find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (p.name == name) return p;
  std::string names;
  for (const Preset& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
  throw UserError(fmt::format("--preset '{}': expected one of {}", name, names));
}

std::string presets_table() {
  const char* row = "{:<6} {:<13} {:<8} {:<48} {:>6} {:>5} {:>8} {:>6} {:>5} {:>5} {:>10} {:>8} {:>7}\n";
  std::string s = fmt::format(row, "preset", "model", "plain", "data (--data overrides)", "epochs", "batch",
                              "lr/plain", "train", "test", "warm", "E3/E4", "E6", "budget");
  auto count = [](int64_t v) { return v == 0 ? std::string("all") : std::to_string(v); };
  for (const Preset& p : presets())
    s += fmt::format(row, p.name, p.model, p.plain_model.empty() ? "same" : p.plain_model, p.data, p.epochs,
                     p.batch_size, fmt::format("{}/{}", p.lr, p.plain_lr), count(p.train_subset),
                     count(p.test_subset), p.warmup_epochs,
                     p.random_test_subset > 0 ? fmt::format("{}/k x{}", p.lesion_samples, p.random_test_subset)
                                              : fmt::format("{}/k", p.lesion_samples),
                     fmt::format("{}x{}", p.grad_samples, p.grad_batch),
                     p.budget_s > 0 ? format_duration(p.budget_s) : std::string("-"));
  s += "Every preset: the learning rate (plain: of the plain control) divided by 10 at 50% and "
       "75% of the epochs (warm = linear warm-up epochs), SGD momentum 0.9, weight decay 1e-4, augmentation; "
       "the plain control (same: plainN of the ResNet's depth); stochastic depth p_L = 0.5; short paths "
       "with round(23/54 n) active blocks. train/test: images used (training subset; test images of every "
       "evaluation). E3/E4: random sets per k (k = 1..n/2 deleted, 1..n/3 swaps), xN: on the first N test "
       "images. E6: sampled paths per length x batch (bn eval, one training batch). E7: batch-norm "
       "statistics also re-estimated under each test-time plan. budget: target wall time on 2 idle cores. "
       "Threads: automatic, except smoke (1) unless --threads is given.\n";
  return s;
}

// ---- derived sizes ---------------------------------------------------------------------------

Sizes derive_sizes(int n, int swap_pairs) {
  if (n < 1) throw UserError(fmt::format("a reproduction needs at least one block, got {}", n));
  Sizes s;
  s.n = n;
  s.active_blocks = std::max(1, static_cast<int>(std::lround(23.0 * n / 54.0)));
  s.delete_k_max = std::max(1, n / 2);
  s.swap_k_max = std::min(std::max(1, n / 3), swap_pairs);
  for (int d : {1, 10, 20}) {
    const int c = std::min(d, n - 1);
    if (c >= 1 && std::find(s.deleted.begin(), s.deleted.end(), c) == s.deleted.end())
      s.deleted.push_back(c);
  }
  if (s.deleted.empty()) s.deleted.push_back(std::min(1, n));  // n = 1: delete the only block
  s.x = std::min(11, std::max(1, static_cast<int>(std::lround(11.0 * n / 54.0))));
  return s;
}

json Sizes::to_json() const {
  return {{"n", n},
          {"active_blocks", active_blocks},
          {"stochastic_depth", stochastic_depth},
          {"delete_k", {1, delete_k_max}},
          {"swap_k", swap_k_max > 0 ? json{1, swap_k_max} : json()},
          {"e8_deleted", deleted},
          {"e8_x", x}};
}


// ---- the reproduction --------------------------------------------------------------------------

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Disjoint pairs of same-shape blocks: what k random swaps can use at most.
int disjoint_swap_pairs(const std::vector<BlockInfo>& blocks) {
  std::map<std::pair<Shape, Shape>, int> groups;
  for (const BlockInfo& b : blocks) ++groups[{b.in_shape, b.out_shape}];
  int pairs = 0;
  for (const auto& g : groups) pairs += g.second / 2;
  return pairs;
}

// One of the four networks of the paper.
struct RunSpec {
  std::string role;  ///< resnet | plain | stochastic | short
  std::string name;  ///< folder under DIR/runs
  TrainOptions train;
};

// Rough cost of each step in seconds of one thread, from the rates measured with the quick preset:
// used only for the "about X left" of the progress lines, rescaled by the speed observed so far.
struct CostModel {
  double pixels = 1;  ///< image pixels / 784 (Fashion-MNIST)
  double train_image_block = 1.9e-4;  ///< training, per image and block
  double eval_image_block = 4.0e-5;   ///< folded inference, per image and block
  double grad_image_block = 2.5e-5;   ///< backward chains (suffixes shared), per image and block
};

class Reproduction {
 public:
  explicit Reproduction(const ReproOptions& o) : opts_(o), preset_(find_preset(o.preset)) {}
  ReproResult run();

 private:
  // Step bookkeeping
  struct StepPlan {
    std::string id, what;
    double expected_s = 0;
  };
  void announce(size_t i);
  void finish_step(size_t i, const std::string& status, double seconds, double computed_seconds);
  json cached_or_compute(size_t i, const json& inputs, const std::function<json()>& compute);
  void train_step(size_t i, RunSpec& run);
  json fingerprint(const RunSpec& run) const;
  size_t step_index(const std::string& id) const;

  // Experiments
  json lesion_study(const RunSpec& run, lesion::LesionOptions lo, const data::Split& test) const;
  json short_path_conventions(const RunSpec& run, const std::vector<Plan>& plans) const;
  json gradient_study(const RunSpec& run, const std::string& method) const;
  json short_path_training() const;
  void write_results(bool finished);

  ReproOptions opts_;
  const Preset& preset_;
  std::string dir_, data_spec_;
  torch::Device device_{torch::kCPU};
  data::Dataset dataset_;
  data::Split test_, train_;
  data::Split sweep_test_;  ///< E3/E4: the first random_test_subset test images
  Sizes sizes_;
  CostModel cost_;
  std::map<std::string, RunSpec> runs_;
  std::map<std::string, json> fingerprints_;
  std::vector<StepPlan> plan_;
  std::vector<StepRecord> records_;
  json results_ = json::object();
  json config_;
  std::string started_;
  Clock::time_point t0_;
  double done_expected_ = 0, done_actual_ = 0;  // over computed steps: for the speed factor
};

size_t Reproduction::step_index(const std::string& id) const {
  for (size_t i = 0; i < plan_.size(); ++i)
    if (plan_[i].id == id) return i;
  throw std::logic_error("repro: unknown step " + id);
}

void Reproduction::announce(size_t i) {
  std::cerr << fmt::format("[repro] step {}/{} {}: {}\n", i + 1, plan_.size(), plan_[i].id,
                           plan_[i].what);
}

void Reproduction::finish_step(size_t i, const std::string& status, double seconds,
                               double computed_seconds) {
  records_.push_back({plan_[i].id, status, seconds, computed_seconds});
  if (status != "cached") {
    done_expected_ += plan_[i].expected_s;
    done_actual_ += seconds;
  }
  // Remaining: the model's estimate of the steps left, scaled by the speed seen so far.
  const double speed = done_expected_ > 1 ? std::clamp(done_actual_ / done_expected_, 0.2, 5.0) : 1.0;
  double left = 0;
  for (size_t j = i + 1; j < plan_.size(); ++j) left += plan_[j].expected_s;
  const size_t steps_left = plan_.size() - i - 1;
  std::cerr << fmt::format(
      "[repro] step {}/{} {}: {} in {}{} · elapsed {} · {}\n", i + 1, plan_.size(), plan_[i].id,
      status, format_duration(seconds),
      status == "cached" && computed_seconds > 0
          ? fmt::format(" (computed earlier in {})", format_duration(computed_seconds))
          : std::string(),
      format_duration(seconds_since(t0_)),
      steps_left == 0 ? std::string("done")
                      : fmt::format("{} step(s) left, about {} if none is cached", steps_left,
                                    format_duration(left * speed)));
}

json Reproduction::fingerprint(const RunSpec& run) const {
  const std::string dir = run.train.out;
  const json summary = read_json_file(dir + "/summary.json");
  return {{"run", run.name},
          {"epochs", summary.value("epochs", 0)},
          {"checkpoint", fnv1a_hex(read_text_file(dir + "/checkpoint.pt", kMaxCheckpointBytes))}};
}

json Reproduction::cached_or_compute(size_t i, const json& inputs_in, const std::function<json()>& compute) {
  announce(i);
  const auto t0 = Clock::now();
  json inputs = inputs_in;
  inputs["step"] = plan_[i].id;
  inputs["version"] = kStepVersion;
  const std::string key = fnv1a_hex(inputs.dump());
  const std::string path = dir_ + "/steps/" + plan_[i].id + ".json";
  if (path_exists(path)) {
    json cached;
    try {
      cached = read_json_file(path);
    } catch (const UserError&) {
      cached = json();  // unreadable (e.g. hand-edited): recompute
    }
    if (cached.is_object() && cached.value("key", std::string()) == key && cached.contains("result")) {
      finish_step(i, "cached", seconds_since(t0), cached.value("seconds", 0.0));
      return cached.at("result");
    }
  }
  json result = compute();
  const double s = seconds_since(t0);
  write_json_atomic(path, {{"id", plan_[i].id},
                           {"key", key},
                           {"inputs", inputs},
                           {"seconds", s},
                           {"finished", iso_time_now()},
                           {"result", result}});
  finish_step(i, "computed", s, s);
  return result;
}

void Reproduction::train_step(size_t i, RunSpec& run) {
  announce(i);
  const auto t0 = Clock::now();
  const std::string summary_path = run.train.out + "/summary.json";
  int before = 0;
  if (path_exists(summary_path)) before = read_json_file(summary_path).value("epochs", 0);
  const TrainSummary s = train(run.train);
  const std::string status =
      before >= run.train.epochs ? "cached" : (before > 0 ? "resumed" : "trained");
  fingerprints_[run.role] = fingerprint(run);
  config_["runs"][run.role]["test_error"] = s.test_error;
  finish_step(i, status, seconds_since(t0), s.json.value("train_seconds", 0.0));
}

json Reproduction::lesion_study(const RunSpec& run, lesion::LesionOptions lo, const data::Split& test) const {
  LoadedNetwork loaded = load_run(run.train.out);
  models::Network net = loaded.net;
  net->to(device_);
  lo.seed = opts_.seed;
  if (!opts_.quiet) lo.engine.progress("lesion " + run.role);
  const auto& blocks = net->block_infos();
  const auto lesions = lesion::generate_lesions(lo, net->default_plan(), blocks);
  const lesion::LesionResult r = lesion::run_lesion(net, lesions, test, train_, loaded.norm, lo);
  json j = lesion::to_json(r, blocks, lo);
  j["model"] = net->spec().name;
  j["run"] = "runs/" + run.name;
  j["data"] = data_spec_;
  j["test_n"] = test.size();
  j["seed"] = opts_.seed;
  j["threads"] = at::get_num_threads();
  return j;
}

json Reproduction::gradient_study(const RunSpec& run, const std::string& method) const {
  LoadedNetwork loaded = load_run(run.train.out);
  models::Network net = loaded.net;
  // float32 for both methods: libtorch's CPU convolutions in float64 take a slow path (~20x on
  // preresnet56), and float32 keeps the built-in check of the exact method (sum over lengths =
  // the ordinary gradient) near 1e-7. `unravel gradients --dtype float64` is there for more.
  const torch::ScalarType dtype = torch::kFloat32;
  net->to(device_, dtype);
  data::LoaderOptions lo;
  lo.batch_size = preset_.grad_batch;
  lo.shuffle = true;
  lo.augment = false;
  lo.seed = opts_.seed;
  data::Loader loader(train_, loaded.norm, lo, /*epoch=*/0);
  data::Batch batch;
  if (!loader.next(batch)) throw UserError("--data " + data_spec_ + ": the training set is empty");
  paths::GradientOptions go;
  go.bn = paths::BnMode::Eval;
  go.samples = preset_.grad_samples;
  go.sign_samples = preset_.sign_samples;
  go.seed = opts_.seed;
  go.progress = !opts_.quiet;
  const auto t0 = Clock::now();
  paths::GradientResult r = paths::gradients_by_method(method, net, batch.images.to(device_, dtype),
                                                       batch.labels.to(device_), go);
  r.seconds = seconds_since(t0);
  json j = paths::to_json(r);
  j["model"] = net->spec().name;
  j["run"] = "runs/" + run.name;
  j["data"] = data_spec_;
  j["split"] = "train";
  j["dtype"] = dtype == torch::kFloat64 ? "float64" : "float32";
  j["seed"] = opts_.seed;
  if (method == "sample") j["samples"] = preset_.grad_samples;
  if (method == "exact") j["sign_samples"] = preset_.sign_samples;
  return j;
}

// Plans evaluated as they are and again with batch-norm statistics re-estimated under each plan
// (cumulative average over recalibrate_batches training batches): per plan {"plan",
// "top1_error", "recalibrated_top1_error"}, the network's default plan first.
json Reproduction::short_path_conventions(const RunSpec& run, const std::vector<Plan>& plans) const {
  LoadedNetwork loaded = load_run(run.train.out);
  models::Network net = loaded.net;
  net->to(device_);
  std::vector<lesion::Lesion> lesions;
  for (const Plan& p : plans) {
    lesion::Lesion l;
    l.sweep = "plans";
    l.kind = "custom";
    l.edit = p;
    l.plan = p;
    lesions.push_back(l);
  }
  lesion::LesionOptions lo;
  lo.recalibrate_bn = preset_.recalibrate_batches;
  lo.seed = opts_.seed;
  if (!opts_.quiet) lo.engine.progress("E7 " + run.role);
  const lesion::LesionResult r = lesion::run_lesion(net, lesions, test_, train_, loaded.norm, lo);
  json out = json::array();
  auto row = [](const Plan& p, const Metrics& m, const Metrics& rec) {
    return json{{"plan", p.str()}, {"top1_error", m.top1_error()}, {"recalibrated_top1_error", rec.top1_error()}};
  };
  out.push_back(row(r.base, r.baseline, *r.baseline_recalibrated));
  for (size_t i = 0; i < plans.size(); ++i) out.push_back(row(plans[i], r.metrics[i], r.recalibrated[i]));
  return out;
}

json Reproduction::short_path_training() const {
  const json normal = read_json_file(runs_.at("resnet").train.out + "/summary.json");
  const json shorter = read_json_file(runs_.at("short").train.out + "/summary.json");
  const auto where = runs_.at("short").train.out + "/summary.json";
  if (!shorter.contains("active_test_error") || !shorter["active_test_error"].is_object())
    throw UserError(where + ": no \"active_test_error\" (not a short-path run)");
  // The two test-time rules of the short-path net, each with the statistics batch norm gathered
  // in training (on random subsets of blocks) and with statistics re-estimated under the rule.
  const int n = sizes_.n;
  Plan all = Plan::intact(n), scaled = Plan::intact(n);
  for (Step& st : scaled.steps()) st.residual_scale = static_cast<double>(sizes_.active_blocks) / n;
  const json conv = short_path_conventions(runs_.at("short"), {scaled, all});  // [default, scaled, all]
  const json base = short_path_conventions(runs_.at("resnet"), {});            // [intact]
  json rules = {{"scaled", {{"running", conv[1]["top1_error"]}, {"recalibrated", conv[1]["recalibrated_top1_error"]}}},
                {"all", {{"running", conv[2]["top1_error"]}, {"recalibrated", conv[2]["recalibrated_top1_error"]}}}};
  const std::string rule = preset_.e7_rule, stats = preset_.e7_recalibrate ? "recalibrated" : "running";
  return {{"n", n},
          {"active_blocks", sizes_.active_blocks},
          {"epochs", preset_.epochs},
          {"test_n", normal.value("test_n", 0)},
          {"normal",
           {{"top1_error", normal.at("test_error")},
            {"recalibrated_top1_error", base[0]["recalibrated_top1_error"]},
            {"model", preset_.model}}},
          {"short",
           {{"top1_error", rules[rule][stats]}, {"convention", rule}, {"statistics", stats}, {"model", preset_.model}}},
          {"conventions", {{"scaled", rules["scaled"]["running"]}, {"all", rules["all"]["running"]}}},
          {"rules", rules},
          {"recalibrate_batches", preset_.recalibrate_batches},
          {"default_convention", rule},
          {"default_statistics", stats},
          {"train_seconds",
           {{"normal", normal.value("train_seconds", 0.0)},
            {"short", shorter.value("train_seconds", 0.0)}}}};
}

void Reproduction::write_results(bool finished) {
  json timings = json::object(), steps = json::object();
  int cached = 0;
  for (const StepRecord& r : records_) {
    timings[r.id] = r.seconds;
    steps[r.id] = {{"status", r.status}, {"seconds", r.seconds}, {"computed_seconds", r.computed_seconds}};
    cached += r.status == "cached";
  }
  json versions = build_info();
  versions["libtorch"] = TORCH_VERSION;
  json meta = {{"preset", preset_.name},
               {"data", data_spec_},
               {"seed", opts_.seed},
               {"threads", at::get_num_threads()},
               {"device", device_.str()},
               {"git_commit", versions.value("git_commit", std::string("unknown"))},
               {"versions", versions},
               {"started", started_},
               {"steps_cached", fmt::format("{} of {}", cached, records_.size())},
               {"wall_seconds", seconds_since(t0_)}};
  if (finished) meta["finished"] = iso_time_now();
  results_["config"] = config_;
  results_["timings"] = timings;
  results_["steps"] = steps;
  results_["meta"] = meta;
  write_json_atomic(dir_ + "/results.json", results_);
}

ReproResult Reproduction::run() {
  t0_ = Clock::now();
  started_ = iso_time_now();
  if (opts_.out.empty()) throw UserError("--out DIR is required");
  dir_ = opts_.out;
  data_spec_ = data::parse_data_spec(opts_.data.empty() ? preset_.data : opts_.data).str();
  device_ = parse_device(opts_.device);
  const int threads = opts_.threads == -1 ? preset_.threads : opts_.threads;
  setup_compute(threads);

  // The same DIR continues the same reproduction; anything else is refused before any work.
  json what = preset_.to_json();  // what decides the results (not the thread count or budget)
  what.erase("threads");
  what.erase("budget_s");
  const json identity = {{"preset", what}, {"data", data_spec_}, {"seed", opts_.seed}};
  const std::string identity_path = dir_ + "/repro.json";
  if (path_exists(identity_path)) {
    const json previous = read_json_file(identity_path);
    if (previous != identity)
      throw UserError(fmt::format(
          "--out {} holds a reproduction with other settings (preset {}, data {}, seed {}): use "
          "another --out, or the same --preset, --data and --seed",
          dir_, previous.contains("preset") ? previous["preset"].value("name", std::string("?")) : "?",
          previous.value("data", std::string("?")), previous.value("seed", uint64_t{0})));
  }

  dataset_ = data::load_dataset(data::parse_data_spec(data_spec_));
  train_ = data::take_subset(dataset_.train, preset_.train_subset);
  test_ = data::take_subset(dataset_.test, preset_.test_subset);
  sweep_test_ = data::take_subset(test_, preset_.random_test_subset);
  if (train_.size() == 0 || test_.size() == 0)
    throw UserError("--data " + data_spec_ + ": the training or the test set is empty");
  make_dirs(dir_ + "/steps");
  make_dirs(dir_ + "/runs");
  write_json_atomic(identity_path, identity);

  // Sizes from the network itself (block table: shapes decide which blocks can be swapped).
  const models::ModelSpec spec = models::ModelSpec::parse(preset_.model);
  models::Network probe(models::NetworkOptions(preset_.model)
                            .in_channels(dataset_.channels)
                            .input_size(dataset_.height, dataset_.width)
                            .num_classes(dataset_.num_classes));
  sizes_ = derive_sizes(probe->num_blocks(), disjoint_swap_pairs(probe->block_infos()));
  const int n = sizes_.n;

  // The four networks.
  TrainOptions base;
  base.data = data_spec_;
  base.epochs = preset_.epochs;
  base.batch_size = preset_.batch_size;
  base.lr = preset_.lr;
  base.milestones = preset_.milestones;
  base.warmup_epochs = preset_.warmup_epochs;
  base.train_subset = preset_.train_subset;
  base.test_subset = preset_.test_subset;
  base.seed = opts_.seed;
  base.threads = threads;
  base.device = opts_.device;
  base.quiet = opts_.quiet;
  auto add_run = [&](const std::string& role, const std::string& model,
                     const std::string& name) -> RunSpec& {
    RunSpec r{role, name, base};
    r.train.model = model;
    r.train.out = dir_ + "/runs/" + name;
    return runs_.emplace(role, std::move(r)).first->second;
  };
  add_run("resnet", preset_.model, preset_.model);
  const std::string plain_model =
      preset_.plain_model.empty() ? "plain" + std::to_string(spec.depth) : preset_.plain_model;
  add_run("plain", plain_model, plain_model).train.lr = preset_.plain_lr;
  add_run("stochastic", preset_.model, fmt::format("{}-sd{}", preset_.model, sizes_.stochastic_depth))
      .train.stochastic_depth = sizes_.stochastic_depth;
  add_run("short", preset_.model, fmt::format("{}-k{}", preset_.model, sizes_.active_blocks))
      .train.active_blocks = sizes_.active_blocks;

  config_ = {{"preset", preset_.to_json()},
             {"data", data_spec_},
             {"seed", opts_.seed},
             {"threads", at::get_num_threads()},
             {"device", device_.str()},
             {"sizes", sizes_.to_json()},
             {"train_images", train_.size()},
             {"test_images", test_.size()},
             {"runs", json::object()}};
  for (const auto& [role, r] : runs_)
    config_["runs"][role] = {{"dir", "runs/" + r.name}, {"options", r.train.to_json()}};

  // Step plan with the cost model's estimates.
  cost_.pixels = static_cast<double>(dataset_.height * dataset_.width) / 784.0;
  const double px = cost_.pixels;
  const double tr = static_cast<double>(train_.size()) * preset_.epochs * px;
  const double te = static_cast<double>(test_.size()) * px;
  const double ste = static_cast<double>(sweep_test_.size()) * px;
  int plain_n = 0;
  for (int b : models::ModelSpec::parse(runs_.at("plain").train.model).blocks_per_stage) plain_n += b;
  auto train_cost = [&](double blocks, int evals) {
    return tr * blocks * cost_.train_image_block + evals * preset_.epochs * te * n * cost_.eval_image_block;
  };
  const double single = te * (n * (n + 1) / 2.0 + n) * cost_.eval_image_block;
  const double gb = static_cast<double>(preset_.grad_batch) * px;
  const double sd_blocks = n * (1 + sizes_.stochastic_depth) / 2;
  plan_ = {
      {"E5", fmt::format("path lengths of {} blocks", n), 0},
      {"E8", "paths left after deleting blocks", 0},
      {"train.resnet", "train " + runs_.at("resnet").name, train_cost(n, 1)},
      {"E1.resnet", fmt::format("delete each of {} blocks of {}", n, preset_.model), single},
      {"E3", fmt::format("delete k = 1..{} random blocks, {} sets per k", sizes_.delete_k_max,
                         preset_.lesion_samples),
       ste * sizes_.delete_k_max * preset_.lesion_samples * 0.8 * n * cost_.eval_image_block},
      {"E4", fmt::format("k = 1..{} random swaps, {} orders per k", sizes_.swap_k_max,
                         preset_.lesion_samples),
       ste * std::max(sizes_.swap_k_max, 0) * preset_.lesion_samples * n * cost_.eval_image_block},
      {"E6.sample", fmt::format("{} sampled paths per length, batch {}", preset_.grad_samples,
                                preset_.grad_batch),
       (n + 1.0) * preset_.grad_samples * gb * n * 0.5 * cost_.grad_image_block},
      {"E6.exact", "exact gradient per path length, same batch",
       n * (n + 1) / 2.0 * gb * (1 + preset_.sign_samples / 2.0) * cost_.grad_image_block},
      {"train.plain", "train " + runs_.at("plain").name, train_cost(plain_n, 1)},
      {"E1.plain", fmt::format("delete each of {} blocks of {}", plain_n, runs_.at("plain").train.model),
       te * (plain_n * (plain_n + 1) / 2.0 + plain_n) * cost_.eval_image_block},
      {"train.stochastic", "train " + runs_.at("stochastic").name, train_cost(sd_blocks, 1)},
      {"E9.stochastic", "delete each block of the stochastic-depth net", single},
      {"train.short", "train " + runs_.at("short").name, train_cost(sizes_.active_blocks + 1, 3)},
      {"E7", "short-path training against normal training, test-time rules, batch-norm re-estimated",
       4 * (preset_.recalibrate_batches * 128.0 * px + te) * n * cost_.eval_image_block},
  };
  if (sizes_.swap_k_max == 0) plan_.erase(plan_.begin() + static_cast<long>(step_index("E4")));
  std::cerr << fmt::format("[repro] preset {}: {} ({} blocks) on {}, {} training / {} test images, "
                           "{} threads, {} steps into {}\n",
                           preset_.name, preset_.model, n, data_spec_, train_.size(), test_.size(),
                           at::get_num_threads(), plan_.size(), dir_);

  auto paths_inputs = [&](json extra) {
    extra["n"] = n;
    return extra;
  };
  auto run_inputs = [&](const std::string& role, json extra) {
    extra["run"] = fingerprints_.at(role);
    extra["data"] = data_spec_;
    extra["seed"] = opts_.seed;
    return extra;
  };
  auto single_options = [] {
    lesion::LesionOptions lo;
    lo.single = true;
    return lo;
  };

  for (size_t i = 0; i < plan_.size(); ++i) {
    const std::string& id = plan_[i].id;
    if (id == "E5") {
      results_["E5"] = cached_or_compute(i, paths_inputs({}), [&] {
        return paths::path_lengths(paths::PathOptions(n)).to_json();
      });
    } else if (id == "E8") {
      results_["E8"] = cached_or_compute(
          i, paths_inputs({{"deleted", sizes_.deleted}, {"x", sizes_.x}}), [&] {
            json list = json::array();
            for (int d : sizes_.deleted) {
              paths::PathOptions po(n);
              po.deleted = d;
              list.push_back(paths::path_lengths(po).to_json());
            }
            return json{{"n", n}, {"x", sizes_.x}, {"deleted", list}};
          });
    } else if (id.rfind("train.", 0) == 0) {
      train_step(i, runs_.at(id.substr(6)));
    } else if (id == "E1.resnet") {
      results_["E1"]["resnet"] = cached_or_compute(
          i, run_inputs("resnet", {{"test_n", test_.size()}, {"sweep", "single"}}),
          [&] { return lesion_study(runs_.at("resnet"), single_options(), test_); });
    } else if (id == "E1.plain") {
      results_["E1"]["plain"] = cached_or_compute(
          i, run_inputs("plain", {{"test_n", test_.size()}, {"sweep", "single"}}),
          [&] { return lesion_study(runs_.at("plain"), single_options(), test_); });
    } else if (id == "E9.stochastic") {
      results_["E9"]["stochastic"] = cached_or_compute(
          i, run_inputs("stochastic", {{"test_n", test_.size()}, {"sweep", "single"}}),
          [&] { return lesion_study(runs_.at("stochastic"), single_options(), test_); });
      results_["E9"]["resnet"] = results_["E1"]["resnet"];  // the normal net: E1's sweep
    } else if (id == "E3") {
      const std::string k = fmt::format("1:{}", sizes_.delete_k_max);
      results_["E3"] = cached_or_compute(
          i, run_inputs("resnet", {{"test_n", sweep_test_.size()}, {"delete_random", k},
                                   {"samples", preset_.lesion_samples}}),
          [&] {
            lesion::LesionOptions lo;
            lo.delete_random = k;
            lo.samples = preset_.lesion_samples;
            return lesion_study(runs_.at("resnet"), lo, sweep_test_);
          });
    } else if (id == "E4") {
      const std::string k = fmt::format("1:{}", sizes_.swap_k_max);
      results_["E4"] = cached_or_compute(
          i, run_inputs("resnet", {{"test_n", sweep_test_.size()}, {"swap_random", k},
                                   {"samples", preset_.lesion_samples}}),
          [&] {
            lesion::LesionOptions lo;
            lo.swap_random = k;
            lo.samples = preset_.lesion_samples;
            return lesion_study(runs_.at("resnet"), lo, sweep_test_);
          });
    } else if (id == "E6.sample" || id == "E6.exact") {
      const std::string method = id.substr(3);
      const json in = run_inputs(
          "resnet", {{"method", method}, {"batch", preset_.grad_batch}, {"bn", "eval"},
                     {"train_images", train_.size()},
                     {"samples", method == "sample" ? preset_.grad_samples : 0},
                     {"sign_samples", method == "exact" ? preset_.sign_samples : 0}});
      results_["E6"][method] =
          cached_or_compute(i, in, [&] { return gradient_study(runs_.at("resnet"), method); });
    } else if (id == "E7") {
      results_["E7"] = cached_or_compute(
          i, {{"resnet", fingerprints_.at("resnet")}, {"short", fingerprints_.at("short")},
              {"test_n", test_.size()}, {"train_images", train_.size()}, {"seed", opts_.seed},
              {"recalibrate_batches", preset_.recalibrate_batches}, {"rule", preset_.e7_rule},
              {"recalibrate", preset_.e7_recalibrate}},
          [&] { return short_path_training(); });
    }
    write_results(/*finished=*/false);  // a partial results.json after every step
  }
  write_results(/*finished=*/true);

  ReproResult out;
  out.results_path = dir_ + "/results.json";
  if (opts_.report) {
    const auto tr0 = Clock::now();
    std::cerr << "[repro] drawing the report\n";
    const report::ReportResult rr = report::write_report(dir_, results_);
    out.report_index = rr.index_html;
    std::cerr << fmt::format("[repro] report: {} ({} figures) in {}\n", rr.index_html,
                             rr.figures.size(), format_duration(seconds_since(tr0)));
  }
  out.results = results_;
  out.steps = records_;
  out.seconds = seconds_since(t0_);
  return out;
}

}  // namespace

ReproResult run_repro(const ReproOptions& options) { return Reproduction(options).run(); }

std::string summary_table(const json& results) {
  const auto rows = report::compare_with_paper(results);
  size_t w0 = 10, w1 = 8, w2 = 4;
  for (const auto& r : rows) {
    w0 = std::max(w0, r.experiment.size());
    w1 = std::max(w1, r.quantity.size());
    w2 = std::max(w2, r.ours.size());
  }
  std::string s = fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", "experiment", w0, "quantity", w1,
                              "ours", w2, "paper");
  s += std::string(w0 + w1 + w2 + 6 + 5, '-') + "\n";
  for (const auto& r : rows)
    s += fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", r.experiment, w0, r.quantity, w1, r.ours, w2,
                     r.paper.empty() ? "-" : r.paper);
  return s;
}

}  // namespace unravel::repro
