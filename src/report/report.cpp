// The report page (see report.h): parses every experiment first (so malformed results fail before
// anything is drawn), draws the figures, and writes one self-contained index.html (inline CSS, no
// script, no external URL) with our numbers beside the paper's.
#include "report/report.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/errors.h"
#include "core/util.h"
#include "report/comparison.h"
#include "report/figures.h"
#include "report/page.h"
#include "report/results.h"
#include "report/verdicts.h"

namespace unravel::report {

using nlohmann::json;
using namespace detail;

namespace {

namespace fs = std::filesystem;

// The figures of every experiment in results.json, one section per experiment id.
std::vector<Section> draw_results(const Parsed& p, const std::string& out, const GnuplotOptions& g) {
  std::vector<Section> sections;
  for (const auto& [id, heading] : experiment_titles()) {
    Section s{id, heading, {}};
    if (id == "E1" && !p.e1.empty())
      add(s.figures, plot_single_deletion(out, "E1_single_deletion",
                                          "Deleting single blocks: ResNet vs plain network", p.e1, g));
    if (id == "E2" && !p.e2.empty())
      add(s.figures, plot_single_deletion(out, "E2_single_deletion", "Deleting single blocks of the imported network",
                                          p.e2, g));
    if (id == "E3" && p.e3) add(s.figures, plot_random_deletion(out, "E3_random_deletion", *p.e3, g));
    if (id == "E4" && p.e4) add(s.figures, plot_reorder(out, "E4_reorder", *p.e4, g));
    if (id == "E5" && p.e5) add(s.figures, plot_path_lengths(out, "E5_path_lengths", *p.e5, g));
    if (id == "E6" && !p.e6.empty()) {
      add(s.figures, plot_gradient_magnitude(out, "E6_gradient_magnitude", p.e6, g));
      add(s.figures, plot_gradient_total(out, "E6_total_gradient", p.e6, g));
    }
    if (id == "E7" && p.e7)
      add(s.figures, plot_short_path_training(out, "E7_short_path_training", *p.e7, g));
    if (id == "E8" && p.e8)
      add(s.figures, plot_remaining_paths(out, "E8_remaining_paths", p.e8->paths, p.e8->x, g));
    if (id == "E9" && !p.e9.empty())
      add(s.figures, plot_single_deletion(out, "E9_single_deletion",
                                          "Deleting single blocks: stochastic depth vs normal training",
                                          p.e9, g));
    sections.push_back(std::move(s));
  }
  return sections;
}

}  // namespace

// ---- public --------------------------------------------------------------------------------

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

const std::vector<std::pair<std::string, std::string>>& experiment_titles() {
  static const std::vector<std::pair<std::string, std::string>> titles = {
      {"E1", "E1: deleting single blocks (ResNet vs plain network)"},
      {"E2", "E2: deleting single blocks of a pretrained ImageNet-style network"},
      {"E3", "E3: deleting k random blocks"},
      {"E4", "E4: reordering blocks"},
      {"E5", "E5: path length distribution"},
      {"E6", "E6: gradient per path length"},
      {"E7", "E7: training only short paths"},
      {"E8", "E8: paths left after deleting blocks"},
      {"E9", "E9: deleting single blocks of a stochastic-depth ResNet"},
  };
  return titles;
}

std::vector<ComparisonRow> compare_with_paper(const json& results) {
  return rows_for(parse_results(results, "results.json"));
}

ReportResult write_report(const std::string& dir, const json& results, const ReportOptions& opts) {
  const Parsed parsed = parse_results(results, "results.json");
  const json meta = results.value("meta", json::object());
  const json config = results.value("config", json());
  const json timings = results.value("timings", json::object());
  const std::string out = out_dir_for(dir, opts);
  make_dirs(out);

  ReportResult result;
  const std::vector<Section> sections = draw_results(parsed, out, opts.gnuplot);

  std::string data = string_field(meta, "data");
  if (data.empty()) data = string_field(config, "data");
  Page page(opts.title.empty()
                ? "unravel: residual networks as ensembles of relatively shallow networks"
                : opts.title);
  const std::string ml = meta_line(meta);
  page.paragraph((ml.empty() ? "" : ml + " · ") + "report written " + iso_time_now(), "meta");
  page.paragraph("Reproduction of Veit, Wilber and Belongie, \"Residual Networks Behave Like "
                 "Ensembles of Relatively Shallow Networks\" (NeurIPS 2016). Figures are drawn "
                 "from " + dir + "/results.json and can be redrawn with `unravel report --run " +
                 dir + "`.");
  page.paragraph(data_note(data), "note");

  // Results written before verdicts existed are judged here, by the same rules as repro.
  const json verdicts = results.contains("verdicts") ? results["verdicts"] : judge(results);
  if (verdicts.is_object() && !verdicts.empty()) {
    page.heading(2, "Verdicts", "verdicts");
    page.verdicts(verdicts);
  }
  page.heading(2, "Our results beside the paper's", "comparison");
  page.comparison(rows_for(parsed));

  page.heading(2, "Figures", "figures");
  for (const Section& s : sections) {
    if (s.figures.empty()) continue;
    page.heading(3, s.heading, s.id);
    for (const Figure& f : s.figures) {
      page.figure(f, opts.gnuplot);
      result.figures.push_back(f.stem);
    }
  }
  // E2 needs an imported ImageNet-style network: only the imagenet preset is expected to have it.
  const json preset = results.contains("config") && results["config"].is_object()
                          ? results["config"].value("preset", json::object())
                          : json::object();
  const bool imagenet = preset.is_object() && preset.value("kind", std::string()) == "imagenet";
  std::string missing;
  for (const Section& s : sections)
    if (s.figures.empty()) {
      const bool present = results.contains(s.id) && !results.at(s.id).is_null();
      if (!present && s.id == "E2" && !imagenet) continue;
      missing += "<li>" + html_escape(s.heading) +
                 (present ? ": present, but holds nothing to draw" : ": not in these results") +
                 "</li>\n";
      if (!present) result.skipped.push_back(s.id);
    }
  if (!missing.empty()) {
    page.heading(2, "Skipped", "skipped");
    page.raw("<ul class=\"missing\">\n" + missing + "</ul>\n");
  }

  page.heading(2, "Wall time per step", "timings");
  page.timings(timings, "results.json: timings");
  page.heading(2, "Configuration", "configuration");
  if (config.is_null()) page.paragraph("No configuration recorded.");
  else page.pre(config.dump(2));

  result.index_html = out + "/index.html";
  write_file_atomic(result.index_html, page.finish());
  return result;
}

ReportResult report_directory(const std::string& dir, const ReportOptions& opts) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError("--run " + dir + ": no such directory");
  if (path_exists(dir + "/results.json")) {
    const json results = read_json_file(dir + "/results.json");
    try {
      return write_report(dir, results, opts);
    } catch (const UserError& e) {
      const std::string what = e.what();
      // Name the real file rather than the generic "results.json".
      if (what.rfind("results.json", 0) == 0) throw UserError(dir + "/" + what);
      throw;
    }
  }
  if (!path_exists(dir + "/config.json") && !path_exists(dir + "/metrics.jsonl"))
    throw UserError("--run " + dir +
                    ": neither results.json (unravel repro) nor a training run (config.json, "
                    "metrics.jsonl)");
  return write_run_report(dir, opts);
}

}  // namespace unravel::report
