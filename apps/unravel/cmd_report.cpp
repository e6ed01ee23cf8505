// unravel report: figures and the HTML page from results already on disk (DIR/results.json of
// `unravel repro`, or a single training run with its experiment JSONs); see src/report/report.h.
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "report/report.h"
#include "repro/repro.h"

namespace unravel::cli {

namespace {

struct ReportArgs {
  std::string run;        ///< DIR: results.json or a training run
  std::string out;        ///< folder of index.html; empty: DIR/report
  std::string title;      ///< page title
  std::string gnuplot = "gnuplot";
  std::string json_path;  ///< {index, figures, skipped}
};

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  auto* c = app.add_subcommand(
      "report", "figures (gnuplot: SVG + PNG) and an HTML report, with our results beside the "
                "paper's, from DIR/results.json (unravel repro) or from a single training run");
  c->add_option("--run", args->run,
                "DIR holding results.json, or a run directory (config.json, metrics.jsonl, "
                "lesion*.json, paths*.json, gradients*.json)")
      ->required();
  c->add_option("--out", args->out, "folder for index.html and the figures (default DIR/report)");
  c->add_option("--title", args->title, "page title");
  c->add_option("--gnuplot", args->gnuplot, "gnuplot program")->capture_default_str();
  c->add_option("--json", args->json_path,
                "write {\"index\": PATH, \"figures\": [STEM...], \"skipped\": [ID...]}");
  c->callback([args] {
    report::ReportOptions opts;
    opts.out_dir = args->out;
    opts.title = args->title;
    opts.gnuplot.program = args->gnuplot;
    if (!args->json_path.empty()) check_output_path(args->json_path, "--json");
    const report::ReportResult r = report::report_directory(args->run, opts);
    if (!args->json_path.empty())
      write_output_file(args->json_path,
                        nlohmann::json{{"schema_version", kRunSchemaVersion}, {"command", "report"},
                                       {"index", r.index_html}, {"figures", r.figures}, {"skipped", r.skipped}}
                                .dump(2) + "\n",
                        "--json");
    std::cout << r.index_html << "\n";
  });
}

}  // namespace unravel::cli

// ---- unravel repro: the whole paper end to end (src/repro/repro.h) -----------------------------

namespace unravel::cli {

void add_repro_command(CLI::App& app) {
  auto opts = std::make_shared<repro::ReproOptions>();
  auto list = std::make_shared<bool>(false);
  auto no_report = std::make_shared<bool>(false);
  auto json_path = std::make_shared<std::string>();
  auto* c = app.add_subcommand(
      "repro", "the paper end to end: train a ResNet, its plain control, a stochastic-depth and a "
               "short-path ResNet and run E1, E3-E9 (or, --preset imagenet, import a pretrained network "
               "and run E2-E4, E6), write DIR/results.json with a verdict per experiment and "
               "DIR/report/index.html; a rerun reuses finished steps");
  c->add_option("--preset", opts->preset, "smoke | quick | paper | full | imagenet (see --list-presets)")
      ->capture_default_str();
  c->add_option("--weights", opts->weights, "imagenet: the pretrained network (a PyTorch file, see unravel import)");
  c->add_option("--arch", opts->arch, "imagenet: its architecture, e.g. resnet50");
  c->add_option("--test-subset", opts->test_subset, "first N test images (0 = all; default: the preset's)");
  c->add_option("--out", opts->out, "output directory (runs/, steps/, results.json, report/)");
  c->add_option("--data", opts->data, "data set instead of the preset's, e.g. cifar10:DIR");
  c->add_option("--seed", opts->seed, "seed of weights, batches, sampled plans and paths")
      ->capture_default_str();
  add_threads_flag(c, opts->threads, "; default: the preset's (1 for smoke, else automatic)");
  c->add_option("--device", opts->device, "auto | cpu | cuda")->capture_default_str();
  c->add_flag("--quiet", opts->quiet, "only one line per step on stderr");
  c->add_flag("--no-report", *no_report, "write results.json only (no gnuplot figures, no HTML)");
  c->add_flag("--list-presets", *list, "print the preset table and exit");
  c->add_option("--json", *json_path, "also write {results, index, steps} here");
  c->footer("Presets:\n" + repro::presets_table());
  c->callback([opts, list, no_report, json_path] {
    if (*list) {
      std::cout << repro::presets_table();
      return;
    }
    if (opts->out.empty()) throw UserError("--out DIR is required (or --list-presets)");
    repro::find_preset(opts->preset);  // a bad --preset fails before anything is written
    opts->report = !*no_report;
    if (!json_path->empty()) check_output_path(*json_path, "--json");
    const repro::ReproResult r = repro::run_repro(*opts);
    std::cout << repro::summary_table(r.results);
    int cached = 0;
    for (const auto& s : r.steps) cached += s.status == "cached";
    std::cout << "\nresults: " << r.results_path << "\n";
    if (!r.report_index.empty()) std::cout << "report:  " << r.report_index << "\n";
    std::cout << "wall time: " << format_duration(r.seconds) << " (" << cached << " of "
              << r.steps.size() << " steps reused)\n";
    if (!json_path->empty()) {
      nlohmann::json steps = nlohmann::json::array();
      for (const auto& s : r.steps)
        steps.push_back({{"id", s.id}, {"status", s.status}, {"seconds", s.seconds}});
      write_output_file(*json_path,
                        nlohmann::json{{"schema_version", kRunSchemaVersion}, {"command", "repro"},
                                       {"results", r.results_path}, {"index", r.report_index}, {"steps", steps},
                                       {"seconds", r.seconds}}
                                .dump(2) + "\n",
                        "--json");
    }
  });
}

}  // namespace unravel::cli
