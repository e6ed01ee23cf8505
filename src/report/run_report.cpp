// The report of one run directory (`unravel report --run DIR` on a training run): its training
// curves and every lesion*, paths* and gradients* result written into it, each classified by its
// content, with the paper's numbers beside ours.
#include <algorithm>
#include <filesystem>

#include "report/comparison.h"
#include "report/page.h"
#include "report/report.h"

namespace unravel::report {

using nlohmann::json;
using namespace detail;

namespace {

namespace fs = std::filesystem;

// What a run directory holds for the report.
struct RunContents {
  json config, summary;            // null when the file is missing
  std::vector<EpochPoint> epochs;  // metrics.jsonl
  std::vector<std::string> files;  // lesion*.json, paths*.json, gradients*.json, sorted
};

RunContents read_run(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UserError(run_dir + ": no such directory");
  RunContents c;
  if (path_exists(run_dir + "/config.json")) c.config = read_json_file(run_dir + "/config.json");
  if (path_exists(run_dir + "/summary.json")) c.summary = read_json_file(run_dir + "/summary.json");
  if (path_exists(run_dir + "/metrics.jsonl"))
    c.epochs = parse_epochs(read_text_file(run_dir + "/metrics.jsonl"), run_dir + "/metrics.jsonl");
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool json_file = name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0;
    const bool named = name.rfind("lesion", 0) == 0 || name.rfind("paths", 0) == 0 ||
                       name.rfind("gradients", 0) == 0;
    if (json_file && named && entry.is_regular_file()) c.files.push_back(name);
  }
  std::sort(c.files.begin(), c.files.end());
  return c;
}

// One lesion sweep: its figures (single deletions, random deletions, reorderings) and rows.
void draw_lesion(Section& s, std::vector<ComparisonRow>& rows, const LesionStudy& l, const std::string& name,
                 const std::string& out, const GnuplotOptions& g) {
  const std::string stem = name.substr(0, name.size() - 5);
  const std::string label = l.model.empty() ? "network" : l.model;
  add(s.figures, plot_single_deletion(out, stem + "_single_deletion", "Deleting single blocks: " + label,
                                      {{label, l}}, g));
  const auto deletions_by_k = l.stats_by_k("delete");
  const bool random_sweep = !deletions_by_k.empty() && deletions_by_k.back().k >= 2;
  if (random_sweep) add(s.figures, plot_random_deletion(out, stem + "_random_deletion", l, g));
  add(s.figures, plot_reorder(out, stem + "_reorder", l, g));
  if (!l.single_deletions().empty()) rows_single(rows, "E1", label, l, paper_for(l.model));
  else rows.push_back({"lesion", name + ": intact", pct(l.baseline), ""});
  if (random_sweep) rows_random_deletion(rows, "E3", l);
  rows_reorder(rows, "E4", l);
}

// Every result file of the run, drawn: lesion sweeps and path distributions one section each,
// all gradient files in one section, all deletion path counts in another.
std::vector<Section> draw_run(const std::string& run_dir, const RunContents& c, const std::string& out,
                              const GnuplotOptions& g, std::vector<ComparisonRow>& rows) {
  std::vector<Section> sections;
  std::vector<Gradients> gradients;
  std::vector<LengthShares> deletions;
  Section training{"training", "Training", {}};
  add(training.figures, plot_training_curves(out, "training_curves", c.epochs, g));
  sections.push_back(std::move(training));
  for (const std::string& name : c.files) {
    const std::string path = run_dir + "/" + name;
    const std::string stem = name.substr(0, name.size() - 5);
    const json j = read_json_file(path);
    Section s{stem, name, {}};
    if (j.is_object() && j.contains("plans")) {
      LesionStudy l = parse_lesion(j, path);
      if (l.model.empty()) l.model = string_field(c.config, "model");
      draw_lesion(s, rows, l, name, out, g);
    } else if (j.is_object() && j.contains("method")) {
      gradients.push_back(parse_gradients(j, path));
      continue;  // all gradient files share one pair of figures
    } else if (j.is_object() && j.contains("lengths")) {
      LengthShares p = parse_paths(j, path);
      if (p.deleted > 0) {
        deletions.push_back(std::move(p));
        continue;
      }
      add(s.figures, plot_path_lengths(out, stem + "_lengths", p, g));
      rows_paths(rows, "E5", p);
    } else {
      throw UserError(path + ": not a lesion, paths or gradients result (no field \"plans\", "
                      "\"method\" or \"lengths\")");
    }
    sections.push_back(std::move(s));
  }
  if (!gradients.empty()) {
    Section s{"gradients", "Gradient per path length", {}};
    add(s.figures, plot_gradient_magnitude(out, "gradients_magnitude", gradients, g));
    add(s.figures, plot_gradient_total(out, "gradients_total", gradients, g));
    rows_gradients(rows, "E6", gradients);
    sections.push_back(std::move(s));
  }
  if (!deletions.empty()) {
    Section s{"deletions", "Paths left after deleting blocks", {}};
    std::sort(deletions.begin(), deletions.end(),
              [](const LengthShares& a, const LengthShares& b) { return a.deleted < b.deleted; });
    add(s.figures, plot_remaining_paths(out, "paths_remaining", deletions, 11, g));
    rows_deletions(rows, "E8", Deletions{deletions[0].n, 11, deletions});
    sections.push_back(std::move(s));
  }
  return sections;
}

}  // namespace

ReportResult write_run_report(const std::string& run_dir, const ReportOptions& opts) {
  const RunContents c = read_run(run_dir);
  const std::string out = out_dir_for(run_dir, opts);
  make_dirs(out);
  const GnuplotOptions& g = opts.gnuplot;
  std::vector<ComparisonRow> rows;
  const std::vector<Section> sections = draw_run(run_dir, c, out, g, rows);

  const std::string base = fs::path(run_dir).lexically_normal().filename().string();
  Page page(opts.title.empty() ? "unravel run: " + (base.empty() ? run_dir : base) : opts.title);
  std::string ml;
  for (const char* key : {"model", "data"})
    if (!string_field(c.config, key).empty())
      ml += std::string(ml.empty() ? "" : " · ") + key + ": " + string_field(c.config, key);
  page.paragraph((ml.empty() ? "" : ml + " · ") + "run " + run_dir + " · report written " + iso_time_now(), "meta");
  page.paragraph(data_note(string_field(c.config, "data")), "note");
  page.heading(2, "Our results beside the paper's", "comparison");
  page.comparison(rows);
  page.heading(2, "Figures", "figures");
  ReportResult result;
  for (const Section& s : sections) {
    if (s.figures.empty()) continue;
    page.heading(3, s.heading, s.id);
    for (const Figure& f : s.figures) {
      page.figure(f, g);
      result.figures.push_back(f.stem);
    }
  }
  if (result.figures.empty())
    page.paragraph("Nothing to draw: no epochs in metrics.jsonl and no lesion*.json, paths*.json or gradients*.json.");
  page.heading(2, "Run summary", "summary");
  if (c.summary.is_null()) page.paragraph("No summary.json (the run may still be training).");
  else page.pre(c.summary.dump(2));
  page.heading(2, "Configuration", "configuration");
  if (c.config.is_null()) page.paragraph("No config.json.");
  else page.pre(c.config.dump(2));
  result.index_html = out + "/index.html";
  write_file_atomic(result.index_html, page.finish());
  return result;
}

}  // namespace unravel::report
