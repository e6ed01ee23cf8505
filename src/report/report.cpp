// The report page (see report.h): parses every experiment first (so malformed results fail before
// anything is drawn), draws the figures, and writes one self-contained index.html (inline CSS, no
// script, no external URL) with our numbers beside the paper's.
#include "report/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include "core/errors.h"
#include "core/util.h"
#include "report/figures.h"
#include "report/results.h"
#include "report/verdicts.h"

namespace unravel::report {

using nlohmann::json;

namespace {

namespace fs = std::filesystem;

// ---- formatting ----------------------------------------------------------------------------

std::string pct(double v) { return fmt::format("{:.2f}%", v); }

// Share of all 2^n paths with length in [lo, hi] (paths' exact shares).
double binomial_share(int n, int lo, int hi) {
  double s = 0;
  for (int k = std::max(lo, 0); k <= std::min(hi, n); ++k) s += paths::binomial_share(n, k);
  return s;
}

std::string json_scalar_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// ---- parsed results ------------------------------------------------------------------------

struct Deletions {
  int n = 0, x = 11;
  std::vector<LengthShares> paths;
};

struct Parsed {
  std::vector<std::pair<std::string, LesionStudy>> e1;  // resnet, plain
  std::vector<std::pair<std::string, LesionStudy>> e2;  // the imported network (--preset imagenet)
  std::optional<LesionStudy> e3, e4;
  std::optional<LengthShares> e5;
  std::vector<Gradients> e6;  // sample, exact
  std::optional<ShortPathTraining> e7;
  std::optional<Deletions> e8;
  std::vector<std::pair<std::string, LesionStudy>> e9;  // stochastic, resnet
};

std::string net_label(const std::string& kind, const LesionStudy& l) {
  return l.model.empty() ? kind : kind + " (" + l.model + ")";
}

// A pair of named lesion sweeps ({"resnet": ..., "plain": ...}); the first key is required.
std::vector<std::pair<std::string, LesionStudy>> parse_lesion_pair(
    const json& j, const std::string& where,
    const std::vector<std::pair<std::string, std::string>>& keys) {
  if (!j.is_object()) throw UserError(where + ": expected an object");
  std::vector<std::pair<std::string, LesionStudy>> out;
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& [key, kind] = keys[i];
    if (i == 0) require(j, key, where);
    if (!j.contains(key) || j.at(key).is_null()) continue;
    LesionStudy l = parse_lesion(j.at(key), where + "." + key);
    out.emplace_back(net_label(kind, l), std::move(l));
  }
  return out;
}

Parsed parse_results(const json& r, const std::string& where) {
  if (!r.is_object()) throw UserError(where + ": expected an object keyed by experiment id");
  Parsed p;
  auto has = [&](const char* id) { return r.contains(id) && !r.at(id).is_null(); };
  if (has("E1"))
    p.e1 = parse_lesion_pair(r.at("E1"), where + ": E1", {{"resnet", "ResNet"}, {"plain", "plain net"}});
  if (has("E2")) {
    LesionStudy l = parse_lesion(r.at("E2"), where + ": E2");
    p.e2.emplace_back(net_label("imported", l), std::move(l));
  }
  if (has("E3")) p.e3 = parse_lesion(r.at("E3"), where + ": E3");
  if (has("E4")) p.e4 = parse_lesion(r.at("E4"), where + ": E4");
  if (has("E5")) p.e5 = parse_paths(r.at("E5"), where + ": E5");
  if (has("E6")) {
    const json& e6 = r.at("E6");
    const std::string w = where + ": E6";
    if (!e6.is_object()) throw UserError(w + ": expected an object");
    for (const char* key : {"sample", "exact", "brute"})
      if (e6.contains(key) && !e6.at(key).is_null())
        p.e6.push_back(parse_gradients(e6.at(key), w + "." + key));
    if (p.e6.empty()) throw UserError(w + ": missing field \"sample\" (or \"exact\")");
  }
  if (has("E7")) p.e7 = parse_short_path_training(r.at("E7"), where + ": E7");
  if (has("E8")) {
    const json& e8 = r.at("E8");
    const std::string w = where + ": E8";
    Deletions d;
    const json& list = require(e8, "deleted", w);
    if (!list.is_array()) throw UserError(w + ".deleted: expected an array of path results");
    for (size_t i = 0; i < list.size(); ++i)
      d.paths.push_back(parse_paths(list[i], w + ".deleted[" + std::to_string(i) + "]"));
    const auto n = optional_number(e8, "n", w);
    d.n = n ? static_cast<int>(*n) : (d.paths.empty() ? 0 : d.paths[0].n);
    const auto x = optional_number(e8, "x", w);
    d.x = x ? static_cast<int>(*x) : 11;
    p.e8 = std::move(d);
  }
  if (has("E9"))
    p.e9 = parse_lesion_pair(r.at("E9"), where + ": E9",
                             {{"stochastic", "stochastic depth"}, {"resnet", "ResNet"}});
  return p;
}

// ---- the comparison table ------------------------------------------------------------------

struct PaperSingle {
  std::string intact, median, worst, downsampling;
};
const PaperSingle kPaperResNet{"6.03%", "6.46%", "42.2% (block 1)", "~12% (blocks 19 and 37)"};
const PaperSingle kPaperStochastic{"5.13%", "5.26%", "6.9%", ""};
const PaperSingle kPaperPlain{"", "~90% (chance)", "~90% (chance)", ""};
// The authors' ImageNet pre-activation ResNet-200 (66 blocks; their lesion code, no BN re-estimation).
const PaperSingle kPaperImageNet{"21.65% (ResNet-200)", "22.3%", "90.6% (block 66)",
                                 "66.3% (block 4), 61.6% (block 28)"};

const PaperSingle& paper_for(const std::string& model) {
  if (model.rfind("plain", 0) == 0) return kPaperPlain;
  return kPaperResNet;
}

void rows_single(std::vector<ComparisonRow>& rows, const std::string& id, const std::string& who,
                 const LesionStudy& l, const PaperSingle& paper) {
  rows.push_back({id, who + ": intact", pct(l.baseline), paper.intact});
  const auto single = l.single_deletions();
  if (single.empty()) return;
  std::vector<double> errs;
  for (const auto& s : single) errs.push_back(s.second);
  rows.push_back({id, who + ": one block deleted, median", pct(median(errs)), paper.median});
  const auto worst = *std::max_element(single.begin(), single.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
  rows.push_back({id, who + ": worst single deletion",
                  fmt::format("{} (block {})", pct(worst.second), worst.first), paper.worst});
  const auto ds = l.downsampling_blocks();
  std::string text;
  for (const auto& [block, err] : single)
    if (std::count(ds.begin(), ds.end(), block))
      text += (text.empty() ? "" : ", ") + fmt::format("block {}: {}", block, pct(err));
  if (!text.empty())
    rows.push_back({id, who + ": downsampling blocks deleted", text, paper.downsampling});
}

void rows_random_deletion(std::vector<ComparisonRow>& rows, const std::string& id,
                          const LesionStudy& l) {
  const auto stats = l.stats_by_k("delete");
  if (stats.empty()) return;
  auto it = std::find_if(stats.begin(), stats.end(), [](const ErrorStats& s) { return s.k == 10; });
  const ErrorStats& s = it != stats.end() ? *it : stats.back();
  rows.push_back({id, fmt::format("{} random blocks deleted: mean error", s.k),
                  fmt::format("{} (min {}, max {}; {} sets)", pct(s.mean), pct(s.min), pct(s.max),
                              s.count),
                  "smooth increase; ~20% at k = 10 of 54"});
}

void rows_reorder(std::vector<ComparisonRow>& rows, const std::string& id, const LesionStudy& l) {
  const auto stats = l.stats_by_k("swap");
  if (stats.empty()) return;
  const ErrorStats& s = stats.back();
  rows.push_back({id, fmt::format("{} random swaps: mean error", s.k),
                  s.has_tau ? fmt::format("{} (mean Kendall tau {:.3f})", pct(s.mean), s.mean_tau)
                            : pct(s.mean),
                  "smooth increase as tau falls"});
}

void rows_paths(std::vector<ComparisonRow>& rows, const std::string& id,
                const LengthShares& p) {
  rows.push_back({id, fmt::format("mean path length (n = {})", p.n), fmt::format("{:.1f}", p.mean),
                  "27 (n = 54)"});
  if (p.range95) {
    const auto [lo, hi] = *p.range95;
    rows.push_back({id, "shortest range holding 95% of paths",
                    fmt::format("{}-{} ({:.4f} of paths)", lo, hi, p.share_between(lo, hi)),
                    "19-35 of 54: 0.980 (98.0%)"});
  }
  if (p.n == 54)
    rows.push_back({id, "share of paths with 19-35 blocks", fmt::format("{:.5f}", p.share_between(19, 35)),
                    "0.980 (98.0%)"});
}

void rows_gradients(std::vector<ComparisonRow>& rows, const std::string& id,
                    const std::vector<Gradients>& methods) {
  for (const Gradients& g : methods) {
    if (g.effective_range) {
      const auto [lo, hi] = *g.effective_range;
      rows.push_back({id, "effective path lengths (" + g.method + ")",
                      fmt::format("{}-{} of {} blocks ({:.2f}% of paths)", lo, hi, g.n,
                                  100 * binomial_share(g.n, lo, hi)),
                      "5-17 of 54 blocks (0.45% of paths)"});
    }
    if (g.residual)
      rows.push_back({id, g.method + ": relative residual of the sum over lengths",
                      fmt::format("{:.2e}", *g.residual), ""});
    if (g.seconds)
      rows.push_back({id, g.method + ": seconds", fmt::format("{:.1f}", *g.seconds), ""});
  }
}

void rows_short_paths(std::vector<ComparisonRow>& rows, const std::string& id,
                      const ShortPathTraining& e7) {
  rows.push_back({id, "normal training: test error", pct(e7.normal), "6.10%"});
  const std::string what = e7.active_blocks > 0
                               ? fmt::format("short paths ({} of {} blocks)", e7.active_blocks, e7.n)
                               : std::string("short-path training");
  rows.push_back({id, what + ": test error", pct(e7.short_paths), "5.96% (23 of 54 blocks)"});
}

void rows_deletions(std::vector<ComparisonRow>& rows, const std::string& id, const Deletions& d) {
  for (const LengthShares& p : d.paths) {
    std::string paper;
    if (p.n == 54 && d.x == 11) {
      if (p.deleted == 1) paper = "0.80";
      if (p.deleted == 10) paper = "0.080";
      if (p.deleted == 20) paper = "0.0030";
    }
    rows.push_back({id, fmt::format("share of length-{} paths left, {} of {} deleted", d.x,
                                    p.deleted, p.n),
                    fmt::format("{:.3g}", p.remaining_at(d.x)), paper});
  }
}

std::vector<ComparisonRow> rows_for(const Parsed& p) {
  std::vector<ComparisonRow> rows;
  for (const auto& [label, l] : p.e1)
    rows_single(rows, "E1", label, l, paper_for(l.model.empty() && label.rfind("plain", 0) == 0
                                                    ? "plain"
                                                    : l.model));
  for (const auto& [label, l] : p.e2) rows_single(rows, "E2", label, l, kPaperImageNet);
  if (p.e3) rows_random_deletion(rows, "E3", *p.e3);
  if (p.e4) rows_reorder(rows, "E4", *p.e4);
  if (p.e5) rows_paths(rows, "E5", *p.e5);
  rows_gradients(rows, "E6", p.e6);
  if (p.e7) rows_short_paths(rows, "E7", *p.e7);
  if (p.e8) rows_deletions(rows, "E8", *p.e8);
  for (size_t i = 0; i < p.e9.size(); ++i)
    rows_single(rows, "E9", p.e9[i].first, p.e9[i].second, i == 0 ? kPaperStochastic : kPaperResNet);
  return rows;
}

// ---- drawing -------------------------------------------------------------------------------

struct Section {
  std::string id, heading;
  std::vector<Figure> figures;
};

void add(std::vector<Figure>& figs, std::optional<Figure> f) {
  if (f) figs.push_back(std::move(*f));
}

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

// ---- the page ------------------------------------------------------------------------------

const char* kStyle = R"(
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1d1d1d; background: #fff;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #1f77b4; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-bottom: 0.3em; }
.meta { color: #555; margin-top: 0; }
.note { background: #fff6e5; border-left: 4px solid #ff9f1c; padding: 0.6em 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #eef3f9; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0 1.6em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.92em; max-width: 800px; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
ul.missing li { color: #666; }
)";

class Page {
 public:
  explicit Page(const std::string& title) {
    html_ = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
            html_escape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<h1>" +
            html_escape(title) + "</h1>\n";
  }
  void raw(const std::string& s) { html_ += s; }
  void heading(int level, const std::string& text, const std::string& id = "") {
    html_ += fmt::format("<h{}{}>{}</h{}>\n", level,
                         id.empty() ? "" : " id=\"" + html_escape(id) + "\"", html_escape(text),
                         level);
  }
  void paragraph(const std::string& text, const std::string& cls = "") {
    html_ += (cls.empty() ? "<p>" : "<p class=\"" + cls + "\">") + html_escape(text) + "</p>\n";
  }
  void pre(const std::string& text) { html_ += "<pre>" + html_escape(text) + "</pre>\n"; }
  void comparison(const std::vector<ComparisonRow>& rows) {
    if (rows.empty()) {
      paragraph("No experiment results to compare.");
      return;
    }
    html_ += "<table class=\"comparison\">\n<tr><th>experiment</th><th>quantity</th><th>ours</th>"
             "<th>paper</th></tr>\n";
    for (const ComparisonRow& r : rows)
      html_ += "<tr><td>" + html_escape(r.experiment) + "</td><td>" + html_escape(r.quantity) +
               "</td><td>" + html_escape(r.ours) + "</td><td>" +
               html_escape(r.paper.empty() ? "-" : r.paper) + "</td></tr>\n";
    html_ += "</table>\n";
  }
  // One row per experiment: reproduced or not, the rule it was judged by, and the evidence.
  void verdicts(const json& v) {
    if (!v.is_object() || v.empty()) return;
    html_ += "<table class=\"verdicts\">\n<tr><th>experiment</th><th>verdict</th><th>rule</th><th>evidence</th></tr>\n";
    for (const auto& [id, e] : v.items()) {
      if (!e.is_object()) continue;
      const bool ok = e.value("reproduced", false);
      html_ += "<tr><td>" + html_escape(id) + "</td><td>" + (ok ? "reproduced" : "<b>not reproduced</b>") +
               "</td><td>" + html_escape(e.value("rule", std::string())) + "</td><td>" +
               html_escape(e.value("evidence", std::string())) + "</td></tr>\n";
    }
    html_ += "</table>\n";
  }
  void figure(const Figure& f, const GnuplotOptions& g) {
    const std::string svg = html_escape(f.stem + ".svg"), png = html_escape(f.stem + ".png");
    html_ += fmt::format(
        "<figure id=\"{0}\">\n<img src=\"{1}\" alt=\"{3}\" width=\"{4}\" height=\"{5}\">\n"
        "<figcaption>{6} <a href=\"{2}\">PNG</a> · <a href=\"{1}\">SVG</a> · "
        "data: <a href=\"{0}.dat\">{0}.dat</a>, script: <a href=\"{0}.gp\">{0}.gp</a></figcaption>\n"
        "</figure>\n",
        html_escape(f.stem), svg, png, html_escape(f.title), g.width, g.height,
        html_escape(f.caption));
  }
  void timings(const json& t, const std::string& where) {
    if (!t.is_object() || t.empty()) {
      paragraph("No timings recorded.");
      return;
    }
    html_ += "<table class=\"timings\">\n<tr><th>step</th><th>wall time</th><th>seconds</th></tr>\n";
    double total = 0;
    for (const auto& [step, v] : t.items()) {
      if (!v.is_number()) throw UserError(where + "." + step + ": expected seconds, got " + v.dump());
      const double s = v.get<double>();
      total += s;
      html_ += "<tr><td>" + html_escape(step) + "</td><td class=\"num\">" +
               html_escape(format_duration(s)) + "</td><td class=\"num\">" +
               fmt::format("{:.1f}", s) + "</td></tr>\n";
    }
    html_ += "<tr><th>total</th><th class=\"num\">" + html_escape(format_duration(total)) +
             "</th><th class=\"num\">" + fmt::format("{:.1f}", total) + "</th></tr>\n</table>\n";
  }
  std::string finish() { return html_ + "</body>\n</html>\n"; }

 private:
  std::string html_;
};

std::string data_note(const std::string& data) {
  if (data.rfind("cifar10", 0) == 0 && data.rfind("cifar100", 0) != 0)
    return "Data: " + data + ", the paper's CIFAR-10. Our networks and schedules may be smaller "
           "than the paper's (see the configuration), so compare shapes and relative effects.";
  return "Our data set is " + (data.empty() ? std::string("not recorded") : data) +
         "; the paper's numbers are on CIFAR-10 (ImageNet for E2), so absolute errors differ: "
         "compare the shapes of the curves and the relative effects (how much a deletion hurts "
         "against the intact network). Path counts (E5, E8) are exact arithmetic and compare "
         "directly.";
}

std::string out_dir_for(const std::string& dir, const ReportOptions& opts) {
  return opts.out_dir.empty() ? dir + "/report" : opts.out_dir;
}

std::string meta_line(const json& meta) {
  std::string s;
  if (!meta.is_object()) return s;
  for (const auto& [k, v] : meta.items()) {
    if (v.is_object() || v.is_array()) continue;
    s += (s.empty() ? "" : " · ") + k + ": " + json_scalar_text(v);
  }
  return s;
}

std::string string_field(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j.at(key).is_string()) return j.at(key).get<std::string>();
  return "";
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

ReportResult write_run_report(const std::string& run_dir, const ReportOptions& opts) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UserError(run_dir + ": no such directory");
  const json config = path_exists(run_dir + "/config.json") ? read_json_file(run_dir + "/config.json")
                                                            : json();
  const json summary = path_exists(run_dir + "/summary.json")
                           ? read_json_file(run_dir + "/summary.json")
                           : json();
  std::vector<EpochPoint> epochs;
  if (path_exists(run_dir + "/metrics.jsonl"))
    epochs = parse_epochs(read_text_file(run_dir + "/metrics.jsonl"), run_dir + "/metrics.jsonl");

  // Experiment results written into the run directory, classified by content.
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool json_file = name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0;
    const bool named = name.rfind("lesion", 0) == 0 || name.rfind("paths", 0) == 0 ||
                       name.rfind("gradients", 0) == 0;
    if (json_file && named && entry.is_regular_file()) files.push_back(name);
  }
  std::sort(files.begin(), files.end());

  const std::string out = out_dir_for(run_dir, opts);
  make_dirs(out);
  const GnuplotOptions& g = opts.gnuplot;
  std::vector<Section> sections;
  std::vector<ComparisonRow> rows;
  std::vector<Gradients> gradients;
  std::vector<LengthShares> deletions;
  const std::string model = string_field(config, "model");

  Section training{"training", "Training", {}};
  add(training.figures, plot_training_curves(out, "training_curves", epochs, g));
  sections.push_back(std::move(training));

  for (const std::string& name : files) {
    const std::string path = run_dir + "/" + name;
    const std::string stem = name.substr(0, name.size() - 5);
    const json j = read_json_file(path);
    Section s{stem, name, {}};
    if (j.is_object() && j.contains("plans")) {
      LesionStudy l = parse_lesion(j, path);
      if (l.model.empty()) l.model = model;
      const std::string label = l.model.empty() ? "network" : l.model;
      add(s.figures, plot_single_deletion(out, stem + "_single_deletion",
                                          "Deleting single blocks: " + label, {{label, l}}, g));
      const auto deletions_by_k = l.stats_by_k("delete");
      const bool random_sweep = !deletions_by_k.empty() && deletions_by_k.back().k >= 2;
      if (random_sweep) add(s.figures, plot_random_deletion(out, stem + "_random_deletion", l, g));
      add(s.figures, plot_reorder(out, stem + "_reorder", l, g));
      if (!l.single_deletions().empty()) rows_single(rows, "E1", label, l, paper_for(l.model));
      else rows.push_back({"lesion", name + ": intact", pct(l.baseline), ""});
      if (random_sweep) rows_random_deletion(rows, "E3", l);
      rows_reorder(rows, "E4", l);
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

  const std::string base = fs::path(run_dir).lexically_normal().filename().string();
  Page page(opts.title.empty() ? "unravel run: " + (base.empty() ? run_dir : base) : opts.title);
  std::string ml;
  for (const char* key : {"model", "data"})
    if (!string_field(config, key).empty()) ml += std::string(ml.empty() ? "" : " · ") + key + ": " +
                                                  string_field(config, key);
  page.paragraph((ml.empty() ? "" : ml + " · ") + "run " + run_dir + " · report written " +
                     iso_time_now(),
                 "meta");
  page.paragraph(data_note(string_field(config, "data")), "note");
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
  if (result.figures.empty()) page.paragraph("Nothing to draw: no epochs in metrics.jsonl and no "
                                             "lesion*.json, paths*.json or gradients*.json.");
  page.heading(2, "Run summary", "summary");
  if (summary.is_null()) page.paragraph("No summary.json (the run may still be training).");
  else page.pre(summary.dump(2));
  page.heading(2, "Configuration", "configuration");
  if (config.is_null()) page.paragraph("No config.json.");
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
