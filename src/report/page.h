// The report's HTML page (internal to src/report): one self-contained file, inline CSS, no
// script, no external URL; every text escaped. And the small pieces both report kinds share.
#pragma once
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/util.h"
#include "report/figures.h"
#include "report/report.h"

namespace unravel::report::detail {

extern const char* const kStyle;  // the page's CSS

// A part of the page: its figures under one heading.
struct Section {
  std::string id, heading;
  std::vector<Figure> figures;
};
// Appends a drawn figure (nothing when there was nothing to draw).
inline void add(std::vector<Figure>& figs, std::optional<Figure> f) {
  if (f) figs.push_back(std::move(*f));
}

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
  void verdicts(const nlohmann::json& v) {
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
  void timings(const nlohmann::json& t, const std::string& where) {
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

// What the reader should know about the data set beside the paper's CIFAR-10.
std::string data_note(const std::string& data);
// DIR/report unless --out was given.
std::string out_dir_for(const std::string& dir, const ReportOptions& opts);
// "key: value · ..." of a results.json meta object (scalars only).
std::string meta_line(const nlohmann::json& meta);
// j[key] when it is a string, else "".
std::string string_field(const nlohmann::json& j, const char* key);

}  // namespace unravel::report::detail
