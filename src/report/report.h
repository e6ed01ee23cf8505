// The HTML report: figures (gnuplot, SVG + PNG) and a table of our results beside the paper's,
// drawn only from JSON results so that it can be redrawn at any time. Two inputs:
//  - a results object keyed by experiment id ("E1" ... "E9", plus "config", "timings", "meta"),
//    as `unravel repro` writes to DIR/results.json;
//  - a single training run (config.json, metrics.jsonl, summary.json and any lesion*.json,
//    paths*.json, gradients*.json written there by the experiment commands).
// Torch-free: links only unravel_core.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "report/gnuplot.h"

namespace unravel::report {

struct ReportOptions {
  /// Folder of index.html and the figures; empty: DIR/report.
  std::string out_dir;
  /// Page title; empty: a default naming the paper (or the run).
  std::string title;
  /// gnuplot program and figure size.
  GnuplotOptions gnuplot;
};

struct ReportResult {
  std::string index_html;            ///< path of the page written
  std::vector<std::string> figures;  ///< stems drawn (STEM.svg and STEM.png beside index.html)
  std::vector<std::string> skipped;  ///< experiment ids absent from the results
};

// Draws every figure whose experiment is present in `results` and writes OUT/index.html.
// Malformed results: UserError naming the field ("results.json: E1.resnet: missing field ...").
ReportResult write_report(const std::string& dir, const nlohmann::json& results,
                          const ReportOptions& opts = {});

// Report on a single training run directory (see above).
ReportResult write_run_report(const std::string& run_dir, const ReportOptions& opts = {});

// `unravel report --run DIR`: DIR/results.json when it exists, else DIR as a training run.
// UserError for a missing directory or one that holds neither.
ReportResult report_directory(const std::string& dir, const ReportOptions& opts = {});

// One row of the comparison table; values already formatted ("6.03%", "19-35").
struct ComparisonRow {
  std::string experiment;  ///< "E1"
  std::string quantity;
  std::string ours;
  std::string paper;  ///< "" when the paper has no number for it
};
std::vector<ComparisonRow> compare_with_paper(const nlohmann::json& results);

// &, <, >, ", ' escaped for HTML text and attribute values.
std::string html_escape(const std::string& text);

// The experiments of a results object and their headings ("E1" -> "Deleting single blocks").
const std::vector<std::pair<std::string, std::string>>& experiment_titles();

}  // namespace unravel::report
