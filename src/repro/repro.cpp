// `unravel repro` (see repro.h): one writer per DIR, the identity check, the data and the sizes,
// the preset's table of steps (paper.cpp, imagenet.cpp), DIR/results.json with a verdict per
// experiment, and the report.
#include "repro/repro.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <iostream>

#include "core/errors.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "lesion/sweeps.h"
#include "models/network.h"
#include "report/report.h"
#include "report/verdicts.h"
#include "repro/steps.h"
#include "train/run.h"

namespace unravel::repro {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// The same DIR continues the same reproduction; anything else is refused before any work.
void check_identity(const Context& ctx) {
  json what = ctx.preset.to_json();  // what decides the results (not the thread count or budget)
  what.erase("threads");
  what.erase("budget_s");
  if (ctx.preset.kind == PresetKind::Paper) what.erase("kind");  // as written before presets had kinds
  json identity = {{"preset", what}, {"data", ctx.data_spec}, {"seed", ctx.opts.seed}};
  if (ctx.preset.kind == PresetKind::ImageNet) identity["arch"] = ctx.opts.arch;
  const std::string path = ctx.dir + "/repro.json";
  if (path_exists(path)) {
    const json previous = read_json_file(path);
    if (previous != identity)
      throw UserError(fmt::format(
          "--out {} holds a reproduction with other settings (preset {}, data {}, seed {}): use another --out, or "
          "the same --preset, --data and --seed",
          ctx.dir, previous.contains("preset") ? previous["preset"].value("name", std::string("?")) : "?",
          elide_middle(previous.value("data", std::string("?"))), previous.value("seed", uint64_t{0})));
  }
  write_json_atomic(path, identity);
}

// Data, splits and the sizes that follow from the network (its block table decides E3/E4's k).
void load_data_and_sizes(Context& ctx) {
  ctx.dataset = data::load_dataset(data::parse_data_spec(ctx.data_spec));
  ctx.train = data::take_subset(ctx.dataset.train, ctx.preset.train_subset);
  ctx.test = data::take_subset(ctx.dataset.test, ctx.preset.test_subset);
  ctx.sweep_test = data::take_subset(ctx.test, ctx.preset.random_test_subset);
  if (ctx.train.size() == 0 || ctx.test.size() == 0)
    throw UserError("--data " + ctx.data_spec + ": the training or the test set is empty");
  const std::string model = ctx.preset.kind == PresetKind::ImageNet ? ctx.opts.arch : ctx.preset.model;
  models::Network probe(models::NetworkOptions(model)
                            .in_channels(ctx.dataset.channels)
                            .input_size(ctx.dataset.height, ctx.dataset.width)
                            .num_classes(std::max<int64_t>(2, ctx.dataset.num_classes)));
  ctx.sizes = derive_sizes(probe->num_blocks(), lesion::disjoint_swap_pairs(probe->block_infos()));
}

void write_results(Context& ctx, const std::vector<StepRecord>& records, const std::string& started,
                   Clock::time_point t0, bool finished) {
  json timings = json::object(), steps = json::object();
  int cached = 0;
  for (const StepRecord& r : records) {
    timings[r.id] = r.seconds;
    steps[r.id] = {{"status", r.status}, {"seconds", r.seconds}, {"computed_seconds", r.computed_seconds}};
    cached += r.status == "cached";
  }
  json versions = build_info();
  versions["libtorch"] = TORCH_VERSION;
  json meta = {{"preset", ctx.preset.name},
               {"data", ctx.data_spec},
               {"seed", ctx.opts.seed},
               {"threads", at::get_num_threads()},
               {"device", ctx.device.str()},
               {"git_commit", versions.value("git_commit", std::string("unknown"))},
               {"versions", versions},
               {"started", started},
               {"steps_cached", fmt::format("{} of {}", cached, records.size())},
               {"wall_seconds", seconds_since(t0)}};
  if (finished) meta["finished"] = iso_time_now();
  json& r = ctx.results;
  r["schema_version"] = kRunSchemaVersion;
  r["config"] = ctx.config;
  r["timings"] = timings;
  r["steps"] = steps;
  r["meta"] = meta;
  r["verdicts"] = report::judge(r);
  write_json_atomic(ctx.dir + "/results.json", r);
}

}  // namespace

ReproResult run_repro(const ReproOptions& options) {
  const auto t0 = Clock::now();
  const std::string started = iso_time_now();
  Context ctx;
  ctx.opts = options;
  ctx.preset = find_preset(options.preset);
  if (options.out.empty()) throw UserError("--out DIR is required");
  // Checked before the data set is read: a folder of 50,000 images takes a while to list.
  if (ctx.preset.kind == PresetKind::ImageNet && (options.weights.empty() || options.arch.empty()))
    throw UserError("--preset imagenet needs the network: --weights FILE --arch NAME (e.g. resnet50)");
  if (options.test_subset >= 0) ctx.preset.test_subset = options.test_subset;
  ctx.dir = options.out;
  const std::string data = options.data.empty() ? ctx.preset.data : options.data;
  if (data.empty()) throw UserError(fmt::format("--preset {} needs --data (e.g. imagefolder:DIR)", ctx.preset.name));
  ctx.data_spec = data::parse_data_spec(data).str();
  ctx.device = parse_device(options.device);
  setup_compute(options.threads == -1 ? ctx.preset.threads : options.threads);
  const RunLock lock = RunDirectory(ctx.dir).open_for_writing("--out");
  check_identity(ctx);
  load_data_and_sizes(ctx);
  make_dirs(ctx.dir + "/steps");
  make_dirs(ctx.dir + "/runs");
  ctx.config = {{"preset", ctx.preset.to_json()}, {"data", ctx.data_spec}, {"seed", options.seed},
                {"threads", at::get_num_threads()}, {"device", ctx.device.str()}, {"sizes", ctx.sizes.to_json()},
                {"train_images", ctx.train.size()}, {"test_images", ctx.test.size()}, {"runs", json::object()}};

  const std::vector<StepDef> steps =
      ctx.preset.kind == PresetKind::ImageNet ? imagenet_steps(ctx) : paper_steps(ctx);
  std::cerr << fmt::format("[repro] preset {}: {} ({} blocks) on {}, {} training / {} test images, {} threads, {} "
                           "steps into {}\n",
                           ctx.preset.name, ctx.preset.kind == PresetKind::ImageNet ? options.arch : ctx.preset.model,
                           ctx.sizes.n, ctx.data_spec, ctx.train.size(), ctx.test.size(), at::get_num_threads(),
                           steps.size(), ctx.dir);
  StepRunner runner(steps, ctx.dir);
  runner.run_all(ctx, [&] { write_results(ctx, runner.records(), started, t0, /*finished=*/false); });
  write_results(ctx, runner.records(), started, t0, /*finished=*/true);

  ReproResult out;
  out.results_path = ctx.dir + "/results.json";
  if (options.report) {
    const auto tr0 = Clock::now();
    std::cerr << "[repro] drawing the report\n";
    const report::ReportResult rr = report::write_report(ctx.dir, ctx.results);
    out.report_index = rr.index_html;
    std::cerr << fmt::format("[repro] report: {} ({} figures) in {}\n", rr.index_html, rr.figures.size(),
                             format_duration(seconds_since(tr0)));
  }
  out.results = ctx.results;
  out.steps = runner.records();
  out.seconds = seconds_since(t0);
  return out;
}

std::string summary_table(const json& results) {
  const auto rows = report::compare_with_paper(results);
  size_t w0 = 10, w1 = 8, w2 = 4;
  for (const auto& r : rows) {
    w0 = std::max(w0, r.experiment.size());
    w1 = std::max(w1, r.quantity.size());
    w2 = std::max(w2, r.ours.size());
  }
  std::string s = fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", "experiment", w0, "quantity", w1, "ours", w2, "paper");
  s += std::string(w0 + w1 + w2 + 6 + 5, '-') + "\n";
  for (const auto& r : rows)
    s += fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", r.experiment, w0, r.quantity, w1, r.ours, w2,
                     r.paper.empty() ? "-" : r.paper);
  if (results.contains("verdicts") && results["verdicts"].is_object()) {
    s += "\nverdicts (the rule of each experiment, see the report):\n";
    for (const auto& [id, v] : results["verdicts"].items())
      s += fmt::format("  {:<4} {:<15} {}\n", id, v.value("reproduced", false) ? "reproduced" : "NOT reproduced",
                       v.value("evidence", std::string()));
  }
  return s;
}

}  // namespace unravel::repro
