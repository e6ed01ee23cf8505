// unravel lesion: delete, reorder and replace blocks at test time (E1-E4, E9, docs/experiments.md).
// Flags are parsed into options; the work is in src/lesion.
#include <torch/torch.h>

#include <fmt/format.h>

#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_lock.h"
#include "core/util.h"
#include "lesion/lesion.h"
#include "train/run.h"

namespace unravel::cli {

namespace {

struct LesionCli {
  ExperimentInput input;
  lesion::LesionOptions lesion;
  int64_t test_subset = 0;
  int64_t batch_size = 250;
  int threads = 0;
  std::string device = "auto";
  std::string engine = "prefix";
  bool no_fold = false;
  bool quiet = false;
  std::string json, csv;
  int nproc = 1;
  DistributedOptions dist;
};

const char* kFooter = R"(Sweeps (several may be combined; all plans are evaluated in one engine run):
  --single                every block deleted alone, plus the intact baseline (E1, E2, E9)
  --delete-random K1:K2   --samples S random sets of k distinct blocks per k (E3)
  --swap-random K1:K2     --samples S orders made by k swaps of disjoint same-shape pairs (E4)
  --duplicate-random K1:K2  k positions each run a copy of another same-shape block (depth kept)
  --plans FILE            one plan a line: delete=3,17 | order=1-3,5,4,6-20 | swap=4:5 |
                          duplicate=4 | scale=3:0.5; '#' comments, blank lines skipped
Every plan starts from the network's default plan (its test-time residual scales, if any).
--seed S seeds the random sweeps and, with --model, the weights; the same seed gives the same sets.

--json FILE: {"baseline": {top1_error, top5_error, loss, correct, n, per_class_error, plan},
  "plans": [{plan, sweep, kind (delete|swap|duplicate|custom), k, blocks, top1_error, top5_error,
  loss, correct, n, delta_top1_error, kendall_tau, pairs|replacements, stage, downsample,
  recalibrated: {...}}], "summary": [{sweep, kind, k, count, mean, std (sample), min, max,
  median}], "engine", "seconds", "engine_stats", "model", "blocks", "data", "seed", "threads"}
--csv FILE columns: plan,kind,k,blocks,top1_error,top5_error,loss,correct,n,kendall_tau
  (+ recal_top1_error,recal_correct with --recalibrate-bn); the first row is the baseline
  (kind intact, k 0); blocks are space-separated; k of custom plans = steps that differ.
--recalibrate-bn N: per plan, batch-norm statistics recomputed as the cumulative average over
  N batches of 128 training images (shuffled by --seed, not augmented) on a fresh copy of the
  weights, then evaluated; reported beside the plain result as "recalibrated".
Interrupted sweeps: with --json or --csv, progress is kept in FILE.partial (every 10 s and after
each recalibrated plan); the same command continues from it when the network, plans, images and
options are the same, and removes it when done (one process; not with --nproc). One sweep at a
time per FILE: a second one exits with a line naming the first (lock: .FILE.partial.lock/ beside it).)";

// One sweep per progress file: the lock of FILE.partial (the progress file of --json FILE or --csv
// FILE) is RunLock's flock in .FILE.partial.lock/, a hidden directory next to it (RunLock locks
// directories) that stays for the next sweep. Nothing is locked without a progress file.
RunLock lock_progress_file(const std::string& progress_file, const std::string& flag, const std::string& out) {
  if (progress_file.empty()) return {};
  const std::filesystem::path p(progress_file);
  const std::filesystem::path dir = p.parent_path() / ("." + p.filename().string() + ".lock");
  std::error_code ec;
  std::filesystem::create_directory(dir, ec);  // false without error when it exists
  if (ec) throw UserError(fmt::format("{} {}: cannot create the sweep's lock directory {}: {}", flag, out,
                                      dir.string(), ec.message()));
  return RunLock::acquire(dir.string(), fmt::format("{} {}: its sweep lock", flag, out));
}

void run_lesion_command(const LesionCli& c) {
  if (c.input.run_dir.empty() && c.input.model.empty())
    throw UserError("give --run DIR (a trained run) or --model NAME (a random network)");
  if (c.test_subset < 0) throw UserError(fmt::format("--test-subset must be 0 (all) or more, got {}", c.test_subset));
  if (c.lesion.recalibrate_bn < 0)
    throw UserError(fmt::format("--recalibrate-bn must be 0 (off) or more, got {}", c.lesion.recalibrate_bn));
  lesion::LesionOptions o = c.lesion;
  o.engine.engine(unravel::parse_engine(c.engine)).batch_size(c.batch_size);
  if (c.batch_size < 1) throw UserError(fmt::format("--batch-size must be at least 1, got {}", c.batch_size));
  o.fold = !c.no_fold;
  const bool root = c.dist.rank == 0;  // prints and writes the results
  if (root) {  // outputs that cannot be written fail now, not after the sweep
    if (!c.json.empty()) check_output_path(c.json, "--json");
    if (!c.csv.empty()) check_output_path(c.csv, "--csv");
  }
  // An interrupted sweep continues from OUT.partial next to its results (one process only; a
  // regular file: not standard output or a device).
  std::string progress_flag, progress_out;
  for (const auto& [flag, out] : {std::pair<const char*, std::string>{"--json", c.json}, {"--csv", c.csv}})
    if (c.dist.world_size == 1 && o.progress_file.empty() && is_regular_output(out)) {
      o.progress_file = out + ".partial";
      progress_flag = flag;
      progress_out = out;
    }
  // A second sweep on the same results stops here with one line naming the first, before any work.
  const RunLock progress_lock = lock_progress_file(o.progress_file, progress_flag, progress_out);
  if (!c.quiet && root) o.engine.progress("lesion");
  check_distributed_options(c.dist);
  const torch::Device device = rank_device(parse_device(c.device), c.dist.rank, c.dist.world_size);
  setup_compute(c.threads);

  Experiment ex = load_experiment(c.input);
  models::Network& net = ex.loaded.net;
  net->to(device);
  const auto& blocks = net->block_infos();
  // Plans first: a bad plan file or sweep fails before any evaluation.
  const auto lesions = lesion::generate_lesions(o, net->default_plan(), blocks);
  const data::Split test = data::take_subset(ex.dataset.test, c.test_subset);
  if (test.size() == 0) throw UserError("the test set is empty");
  if (!c.quiet && root)
    std::cerr << fmt::format("[lesion] {} ({} blocks), {} plans + baseline, {} test images, {} engine, {} threads{}\n",
                             net->spec().name, net->num_blocks(), lesions.size(), test.size(), c.engine,
                             at::get_num_threads(),
                             c.dist.world_size > 1 ? fmt::format(" x {} ranks", c.dist.world_size) : "");
  Communicator comm(c.dist);
  const auto r = lesion::run_lesion(net, lesions, test, ex.dataset.train, ex.loaded.norm, o, &comm);
  if (!root) return;

  std::cout << lesion::to_table(r, blocks);
  std::cout << fmt::format("\n{} plans on {} images in {} ({} engine: {}, {:.1f} GFLOP/s)\n",
                           lesions.size() + 1, test.size(), format_duration(r.seconds), c.engine,
                           format_duration(r.stats.seconds), r.stats.to_json()["gflop_per_s"].get<double>());
  if (!c.json.empty()) {
    nlohmann::json j = provenance(ex, test);
    j.update(lesion::to_json(r, blocks, o));
    j["command"] = "lesion";
    j["seed"] = c.lesion.seed;
    j["threads"] = at::get_num_threads();
    j["world_size"] = c.dist.world_size;
    j["device"] = device.str();
    write_output_file(c.json, j.dump(2) + "\n", "--json");
  }
  if (!c.csv.empty()) write_output_file(c.csv, lesion::to_csv(r), "--csv");
}

}  // namespace

void add_lesion_command(CLI::App& app) {
  auto c = std::make_shared<LesionCli>();
  CLI::App* sub = app.add_subcommand(
      "lesion", "Delete, reorder or replace blocks at test time and measure the error (E1-E4, E9)");
  add_network_source_flags(sub, c->input);
  sub->add_flag("--single", c->lesion.single, "delete every block alone (E1/E2/E9)");
  sub->add_option("--delete-random", c->lesion.delete_random, "K1:K2: delete k random blocks (E3)");
  sub->add_option("--swap-random", c->lesion.swap_random, "K1:K2: k random swaps of same-shape blocks (E4)");
  sub->add_option("--duplicate-random", c->lesion.duplicate_random,
                  "K1:K2: k positions run a copy of another same-shape block");
  sub->add_option("--samples", c->lesion.samples, "random plans per k")->capture_default_str();
  sub->add_option("--plans", c->lesion.plans_file, "file of plans, one a line");
  sub->add_option("--recalibrate-bn", c->lesion.recalibrate_bn,
                  "recompute batch-norm statistics on N training batches per plan (0: off)")
      ->capture_default_str();
  sub->add_option("--test-subset", c->test_subset, "first N test images (0: all)")->capture_default_str();
  sub->add_option("--batch-size", c->batch_size, "test images per batch")->capture_default_str();
  sub->add_option("--seed", c->lesion.seed, "seed of the random sweeps (and of --model weights)")
      ->capture_default_str();
  add_threads_flag(sub, c->threads);
  sub->add_option("--device", c->device, "auto | cpu | cuda")->capture_default_str();
  add_data_parallel_flags(sub, c->nproc, c->dist, "the test images");
  sub->add_option("--engine", c->engine, "prefix (shared prefixes once) or reference (one forward per plan)")
      ->capture_default_str();
  sub->add_flag("--no-fold", c->no_fold, "evaluate without folding batch-norm into the convolutions");
  sub->add_flag("--channels-last", c->lesion.channels_last, "channels_last memory format");
  add_precision_flag(sub, c->lesion.precision);
  sub->add_flag("--quiet", c->quiet, "no progress lines on stderr");
  sub->add_option("--json", c->json, "write the results as JSON");
  sub->add_option("--csv", c->csv, "write one row per plan as CSV");
  sub->footer(kFooter);
  sub->callback([c] {
    c->input.seed = c->lesion.seed;
    // With --nproc: rank logs and the store in a directory of their own, removed when all went well.
    const std::string dir = (std::filesystem::temp_directory_path() /
                             fmt::format("unravel-lesion-{}", ::getpid())).string();
    run_as_ranks(c->nproc, c->threads, c->dist, dir, [&](int threads) {
      c->threads = threads;
      run_lesion_command(*c);
    });
    if (c->nproc != 1) std::filesystem::remove_all(dir);
  });
}

}  // namespace unravel::cli
