// unravel report: figures and the HTML page from results already on disk (DIR/results.json of
// `unravel repro`, or a single training run with its experiment JSONs); see src/report/report.h.
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "core/errors.h"
#include "core/util.h"
#include "report/report.h"

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
    const report::ReportResult r = report::report_directory(args->run, opts);
    if (!args->json_path.empty())
      write_json_atomic(args->json_path, {{"index", r.index_html},
                                          {"figures", r.figures},
                                          {"skipped", r.skipped}});
    std::cout << r.index_html << "\n";
  });
}

}  // namespace unravel::cli
namespace unravel::cli {
void add_repro_command(CLI::App& app) {}
}  // namespace unravel::cli
