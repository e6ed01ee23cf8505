// Report: figures drawn by gnuplot from fake results of every experiment, the HTML page (values,
// paper numbers, escaping), malformed input, a single-run report, and a headless-Chromium
// screenshot of the page checked for real pixels (PNG decoded with zlib).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "paths/path_counts.h"
#include "report/gnuplot.h"
#include "report/report.h"
#include "report/results.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace unravel::report;

namespace {

// ---- helpers -------------------------------------------------------------------------------

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "unravel_report_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {  // UNRAVEL_KEEP_TMP=1 keeps the folders to look at the figures
    if (std::getenv("UNRAVEL_KEEP_TMP")) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A decoded 8-bit PNG: how many pixels differ from the top-left one, and how many colours.
struct PngStats {
  int width = 0, height = 0;
  double non_background = 0;  // fraction of pixels unlike pixel (0, 0)
  size_t colours = 0;         // distinct colours (capped at 4096)
  std::string error;          // non-empty when the file is not a decodable 8-bit PNG
};

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

PngStats png_stats(const std::string& path) {
  PngStats st;
  const std::string bytes = slurp(path);
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || std::memcmp(b, sig, 8) != 0) {
    st.error = "no PNG signature";
    return st;
  }
  int depth = 0, ctype = -1;
  std::string idat;
  for (size_t pos = 8; pos + 12 <= bytes.size();) {
    const uint32_t len = be32(b + pos);
    const std::string type(bytes.data() + pos + 4, 4);
    if (pos + 12 + len > bytes.size()) break;
    const unsigned char* d = b + pos + 8;
    if (type == "IHDR") {
      st.width = static_cast<int>(be32(d));
      st.height = static_cast<int>(be32(d + 4));
      depth = d[8];
      ctype = d[9];
      if (d[12] != 0) st.error = "interlaced PNG";
    } else if (type == "IDAT") {
      idat.append(reinterpret_cast<const char*>(d), len);
    }
    pos += 12 + len;
  }
  const std::map<int, int> channels = {{0, 1}, {2, 3}, {3, 1}, {4, 2}, {6, 4}};
  if (depth != 8 || !channels.count(ctype)) st.error = "unsupported PNG format";
  if (!st.error.empty()) return st;
  const int bpp = channels.at(ctype);
  const size_t stride = static_cast<size_t>(st.width) * bpp;
  std::vector<unsigned char> raw((stride + 1) * st.height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size()) {
    st.error = "IDAT does not inflate to the image size";
    return st;
  }
  std::vector<unsigned char> img(stride * st.height), prev(stride, 0);
  for (int y = 0; y < st.height; ++y) {
    const unsigned char filter = raw[y * (stride + 1)];
    const unsigned char* in = &raw[y * (stride + 1) + 1];
    unsigned char* row = &img[y * stride];
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= static_cast<size_t>(bpp) ? row[x - bpp] : 0;
      const int up = prev[x];
      const int c = x >= static_cast<size_t>(bpp) ? prev[x - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = up; break;
        case 3: pred = (a + up) / 2; break;
        case 4: {
          const int p = a + up - c, pa = std::abs(p - a), pb = std::abs(p - up), pc = std::abs(p - c);
          pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? up : c);
          break;
        }
        default: st.error = "bad filter type"; return st;
      }
      row[x] = static_cast<unsigned char>(in[x] + pred);
    }
    std::copy(row, row + stride, prev.begin());
  }
  std::set<std::string> colours;
  size_t differ = 0;
  const std::string bg(reinterpret_cast<const char*>(img.data()), bpp);
  for (size_t i = 0; i < img.size(); i += bpp) {
    std::string px(reinterpret_cast<const char*>(&img[i]), bpp);
    if (px != bg) ++differ;
    if (colours.size() < 4096) colours.insert(px);
  }
  st.non_background = static_cast<double>(differ) / (static_cast<double>(st.width) * st.height);
  st.colours = colours.size();
  return st;
}

// ---- fake results --------------------------------------------------------------------------

const int kTestN = 10000;

json result_of(double error) {
  const int correct = static_cast<int>(std::lround((1.0 - error) * kTestN));
  return {{"top1_error", error}, {"correct", correct}, {"n", kTestN}};
}

json block_table(int n, const std::vector<int>& downsampling) {
  json blocks = json::array();
  for (int i = 1; i <= n; ++i) {
    const bool ds = std::count(downsampling.begin(), downsampling.end(), i) > 0;
    blocks.push_back({{"index", i}, {"stage", 1 + (i - 1) * 3 / n}, {"downsample", ds}});
  }
  return blocks;
}

// A single-deletion sweep: block b deleted gives errors[b-1] (fractions).
json single_sweep(const std::string& model, double baseline, const std::vector<double>& errors,
                  const std::vector<int>& downsampling) {
  json plans = json::array();
  for (size_t i = 0; i < errors.size(); ++i) {
    const int block = static_cast<int>(i) + 1;
    json p = result_of(errors[i]);
    p["plan"] = "delete=" + std::to_string(block);
    p["kind"] = "delete";
    p["k"] = 1;
    p["blocks"] = {block};
    p["top5_error"] = errors[i] / 4;
    p["loss"] = 0.3;
    plans.push_back(p);
  }
  return {{"model", model},
          {"blocks", block_table(static_cast<int>(errors.size()), downsampling)},
          {"baseline", result_of(baseline)},
          {"plans", plans},
          {"summary", json::array()},
          {"engine", "prefix"},
          {"seconds", 12.5}};
}

// 27-block ResNet: 8% error deleting block b, block 1: 35%, downsampling 10 and 19: 12%.
std::vector<double> resnet_errors() {
  std::vector<double> e;
  for (int b = 1; b <= 27; ++b) e.push_back(0.08 + 0.001 * (b % 5));
  e[0] = 0.35;
  e[9] = 0.12;
  e[18] = 0.12;
  return e;
}

json paths_of(int n, int deleted) {
  json lengths = json::array();
  double mean = 0;
  for (int k = 0; k <= n; ++k) {
    const double share = unravel::paths::binomial_share(n, k);
    mean += k * share;
    json l = {{"length", k}, {"count", unravel::paths::binomial(n, k).to_string()}, {"share", share}};
    if (deleted > 0) l["remaining_share"] = unravel::paths::remaining_share(n, deleted, k);
    lengths.push_back(l);
  }
  return {{"n", n}, {"deleted", deleted}, {"lengths", lengths}, {"mean", mean},
          {"range95", {19, 35}}};
}

json gradients_of(const std::string& method, int n) {
  json lengths = json::array();
  for (int k = 0; k <= n; ++k) {
    const std::string count = unravel::paths::binomial(n, k).to_string();
    const double paths = std::strtod(count.c_str(), nullptr);
    json l = {{"length", k}, {"paths", count}};
    const double mean = std::pow(0.3, k);
    if (method == "sample") {
      l["mean"] = mean;
      l["std"] = 0.2 * mean;
      l["total"] = mean * paths;
    } else {
      l["norm"] = 0.5 * mean * paths;
    }
    lengths.push_back(l);
  }
  json g = {{"method", method}, {"n", n}, {"lengths", lengths}, {"seconds", 3.25}};
  g["effective_range"] = method == "sample" ? json{3, 10} : json{2, 9};
  if (method == "exact") g["residual"] = 1.5e-12;
  return g;
}

json fake_results() {
  json r;
  r["meta"] = {{"preset", "quick"}, {"data", "fashion-mnist"}};
  r["config"] = {{"model", "preresnet56"}, {"epochs", 3}, {"note", "<script>alert(1)</script>"}};
  r["timings"] = {{"train preresnet56", 812.3}, {"lesion single", 41.0}};
  std::vector<double> plain(27, 0.90);
  plain[3] = 0.87;
  r["E1"] = {{"resnet", single_sweep("preresnet56", 0.0712, resnet_errors(), {10, 19})},
             {"plain", single_sweep("plain56", 0.0921, plain, {10, 19})}};
  // E3: k = 1..5, three sets each: error 8 + 3k (+-1) percent.
  json e3 = single_sweep("preresnet56", 0.0712, {}, {10, 19});
  for (int k = 1; k <= 5; ++k)
    for (int s = -1; s <= 1; ++s) {
      json p = result_of(0.08 + 0.03 * k + 0.01 * s);
      p["plan"] = "delete=" + std::to_string(k) + "," + std::to_string(k + 5 + s);
      p["kind"] = "delete";
      p["k"] = k;
      p["blocks"] = json::array();
      for (int i = 0; i < k; ++i) p["blocks"].push_back(1 + i * 5 + (s + 1));
      e3["plans"].push_back(p);
    }
  r["E3"] = e3;
  // E4: k = 1..3 swaps, tau = 1 - 0.02k - 0.005s, error 7.5 + 2k percent.
  json e4 = single_sweep("preresnet56", 0.0712, {}, {10, 19});
  for (int k = 1; k <= 3; ++k)
    for (int s = 0; s < 3; ++s) {
      json p = result_of(0.075 + 0.02 * k + 0.002 * s);
      p["plan"] = "order=...";
      p["kind"] = "swap";
      p["k"] = k;
      p["blocks"] = {2 * k, 2 * k + 1};
      p["kendall_tau"] = 1.0 - 0.02 * k - 0.005 * s;
      e4["plans"].push_back(p);
    }
  r["E4"] = e4;
  r["E5"] = paths_of(54, 0);
  r["E6"] = {{"sample", gradients_of("sample", 27)}, {"exact", gradients_of("exact", 27)}};
  r["E7"] = {{"n", 54}, {"active_blocks", 23}, {"normal", result_of(0.0712)},
             {"short", result_of(0.0698)}};
  r["E8"] = {{"n", 54}, {"x", 11}, {"deleted", {paths_of(54, 1), paths_of(54, 10), paths_of(54, 20)}}};
  std::vector<double> sd(27, 0.066);
  sd[0] = 0.071;
  r["E9"] = {{"stochastic", single_sweep("preresnet56-sd", 0.0650, sd, {10, 19})},
             {"resnet", single_sweep("preresnet56", 0.0712, resnet_errors(), {10, 19})}};
  return r;
}

// Asserts that `stem`.svg and .png in `dir` are real figures and the SVG shows `label`.
void expect_figure(const std::string& dir, const std::string& stem, const std::string& label) {
  SCOPED_TRACE(stem);
  const std::string svg = slurp(dir + "/" + stem + ".svg");
  ASSERT_FALSE(svg.empty()) << dir << "/" << stem << ".svg missing";
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos) << "SVG not closed";
  EXPECT_NE(svg.find(label), std::string::npos) << "axis label '" << label << "' not in SVG";
  EXPECT_GT(svg.size(), 4000u);
  const std::string png_path = dir + "/" + stem + ".png";
  ASSERT_TRUE(fs::exists(png_path));
  EXPECT_GT(fs::file_size(png_path), 1024u);
  EXPECT_LT(fs::file_size(png_path), 200u * 1024u) << "PNG should be a few tens of KB";
  const PngStats st = png_stats(png_path);
  ASSERT_EQ(st.error, "");
  EXPECT_EQ(st.width, 800);
  EXPECT_EQ(st.height, 500);
  EXPECT_GT(st.non_background, 0.01) << "PNG nearly blank";
  EXPECT_GE(st.colours, 4u);
  EXPECT_TRUE(fs::exists(dir + "/" + stem + ".gp"));
  EXPECT_TRUE(fs::exists(dir + "/" + stem + ".dat"));
}

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

template <class F>
std::string user_error_of(F&& f) {
  try {
    f();
  } catch (const unravel::UserError& e) {
    return e.what();
  }
  return "(no UserError)";
}

// ---- tests ---------------------------------------------------------------------------------

TEST(ReportResults, ErrorPercentReadsFractionsAndPercents) {
  EXPECT_DOUBLE_EQ(error_percent(json{{"top1_error", 0.0603}}, "x"), 6.03);
  EXPECT_DOUBLE_EQ(error_percent(json{{"top1_error", 6.03}}, "x"), 6.03);
  // correct/n decide: 0.5 with 9950 of 10000 correct is a percent, with 5000 a fraction.
  EXPECT_DOUBLE_EQ(error_percent(json{{"top1_error", 0.5}, {"correct", 9950}, {"n", 10000}}, "x"),
                   0.5);
  EXPECT_DOUBLE_EQ(error_percent(json{{"top1_error", 0.5}, {"correct", 5000}, {"n", 10000}}, "x"),
                   50.0);
  EXPECT_TRUE(has(user_error_of([] { error_percent(json{{"top1_error", "7%"}}, "E7.normal"); }),
                  "E7.normal.top1_error"));
}

TEST(ReportResults, LesionStatistics) {
  const LesionStudy l = parse_lesion(fake_results()["E3"], "E3");
  EXPECT_NEAR(l.baseline, 7.12, 1e-9);
  const auto stats = l.stats_by_k("delete");
  ASSERT_EQ(stats.size(), 5u);
  EXPECT_EQ(stats[2].k, 3);
  EXPECT_EQ(stats[2].count, 3);
  EXPECT_NEAR(stats[2].mean, 17.0, 1e-9);
  EXPECT_NEAR(stats[2].min, 16.0, 1e-9);
  EXPECT_NEAR(stats[2].max, 18.0, 1e-9);
  EXPECT_NEAR(stats[2].std, 1.0, 1e-9);  // sample std of {16, 17, 18}
  const LesionStudy e1 = parse_lesion(fake_results()["E1"]["resnet"], "E1.resnet");
  EXPECT_EQ(e1.downsampling_blocks(), (std::vector<int>{10, 19}));
  const auto single = e1.single_deletions();
  ASSERT_EQ(single.size(), 27u);
  EXPECT_EQ(single[0].first, 1);
  EXPECT_NEAR(single[0].second, 35.0, 1e-9);
}

TEST(ReportResults, PathsAndGradients) {
  const LengthShares p = parse_paths(paths_of(54, 0), "E5");
  EXPECT_NEAR(p.share_between(19, 35), 0.98017, 5e-6);  // the paper's E5 (98.0%)
  EXPECT_NEAR(p.share_between(5, 17), 0.0045367, 5e-8);
  EXPECT_NEAR(p.mean, 27.0, 1e-9);
  const LengthShares d10 = parse_paths(paths_of(54, 10), "E8");
  EXPECT_NEAR(d10.remaining_at(11), 0.0801203, 5e-7);  // the paper's E8: 0.080
  json no_field = paths_of(54, 20);
  for (auto& l : no_field["lengths"]) l.erase("remaining_share");
  EXPECT_NEAR(parse_paths(no_field, "E8").remaining_at(11), 0.00298881, 5e-9);  // computed
  const Gradients g = parse_gradients(gradients_of("exact", 27), "E6.exact");
  ASSERT_EQ(g.lengths.size(), 28u);
  EXPECT_DOUBLE_EQ(g.lengths[3].paths, 2925.0);  // C(27, 3)
  EXPECT_FALSE(g.lengths[3].mean.has_value());
  ASSERT_TRUE(g.lengths[3].contribution().has_value());
  EXPECT_NEAR(*g.lengths[3].contribution(), 0.5 * 0.027 * 2925.0, 1e-9);  // the norm
}

TEST(ReportResults, MissingCountsAndSharesComeFromPathsExactly) {
  // Gradient tables without "paths": C(n, k) as the nearest double (math.comb in Python).
  json g = gradients_of("exact", 60);
  for (auto& l : g["lengths"]) l.erase("paths");
  const Gradients parsed = parse_gradients(g, "E6.exact");
  EXPECT_EQ(parsed.lengths[3].paths, 34220.0);                    // C(60, 3)
  EXPECT_EQ(parsed.lengths[30].paths, 118264581564861424.0);      // C(60, 30) > 2^53: rounded once
  EXPECT_EQ(parsed.lengths[0].paths, 1.0);
  json big = {{"method", "exact"}, {"n", 6000}, {"lengths", {{{"length", 2}, {"norm", 1.0}}}}};
  EXPECT_NEAR(parse_gradients(big, "E6").lengths[0].paths, 17997000.0, 2e-4);  // C(6000, 2): log space, ~1e-12
  // remaining_at without the field: C(n-d, x) / C(n, x); 1 when nothing is deleted.
  json p = paths_of(54, 1);
  for (auto& l : p["lengths"]) l.erase("remaining_share");
  EXPECT_NEAR(parse_paths(p, "E8").remaining_at(11), 43.0 / 54.0, 1e-14);  // C(53,11)/C(54,11)
  EXPECT_EQ(parse_paths(p, "E8").remaining_at(54), 0.0);
  EXPECT_EQ(parse_paths(paths_of(54, 0), "E5").remaining_at(11), 1.0);
  json huge = {{"n", 100001}, {"lengths", json::array()}};
  EXPECT_TRUE(has(user_error_of([&] { parse_paths(huge, "E5"); }), "E5.n: must lie in 0..100000"));
}

TEST(Report, EveryExperimentDrawnAndTabulated) {
  TempDir tmp;
  const ReportResult r = write_report(tmp.path(), fake_results());
  const std::string dir = tmp.path() + "/report";
  EXPECT_EQ(r.index_html, dir + "/index.html");
  EXPECT_TRUE(r.skipped.empty());
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"E1_single_deletion", "index of deleted block"},
      {"E3_random_deletion", "number of deleted blocks k"},
      {"E4_reorder", "Kendall tau correlation"},
      {"E5_path_lengths", "share of all paths"},
      {"E6_gradient_magnitude", "gradient magnitude at input"},
      {"E6_total_gradient", "total gradient magnitude"},
      {"E7_short_path_training", "test error (%)"},
      {"E8_remaining_paths", "share of the paths of length x remaining"},
      {"E9_single_deletion", "index of deleted block"},
  };
  ASSERT_EQ(r.figures.size(), expected.size());
  for (const auto& [stem, label] : expected) {
    expect_figure(dir, stem, label);
    EXPECT_NE(std::find(r.figures.begin(), r.figures.end(), stem), r.figures.end()) << stem;
  }
  // Legends carry the series and the intact baselines.
  const std::string e1 = slurp(dir + "/E1_single_deletion.svg");
  EXPECT_TRUE(has(e1, "ResNet (preresnet56): intact (7.12%)"));
  EXPECT_TRUE(has(e1, "plain net (plain56): intact (9.21%)"));
  EXPECT_TRUE(has(e1, "downsampling block"));
  EXPECT_TRUE(has(slurp(dir + "/E7_short_path_training.svg"), "6.98%"));
  EXPECT_TRUE(has(slurp(dir + "/E8_remaining_paths.svg"), "0.0801"));

  const std::string html = slurp(r.index_html);
  for (const auto& [stem, label] : expected) {
    EXPECT_TRUE(has(html, "<img src=\"" + stem + ".svg\"")) << stem;
    EXPECT_TRUE(has(html, "<a href=\"" + stem + ".png\">PNG</a>")) << stem;
  }
  // The paper's numbers.
  for (const char* paper : {"6.03%", "6.46%", "42.2% (block 1)", "0.980 (98.0%)",
                            "5-17 of 54 blocks (0.45% of paths)", "6.10%", "5.96%", "0.80",
                            "0.080", "0.0030", "5.13%", "5.26%"})
    EXPECT_TRUE(has(html, paper)) << paper;
  // Ours: E1 intact, worst block, median (sorted errors: median of 27 is 8.2%), downsampling.
  for (const char* ours : {"7.12%", "35.00% (block 1)", "8.20%", "block 10: 12.00%, block 19: 12.00%",
                           "90.00%", "6.98%", "0.98017", "0.796", "0.0801", "0.00299",
                           "3-10 of 27 blocks", "2-9 of 27 blocks", "1.50e-12",
                           "23.00% (min 22.00%, max 24.00%; 3 sets)",
                           "13.70% (mean Kendall tau 0.935)", "6.50%", "6.60%"})
    EXPECT_TRUE(has(html, ours)) << ours;
  // Timings, configuration (escaped), data note.
  EXPECT_TRUE(has(html, "train preresnet56"));
  EXPECT_TRUE(has(html, "13m32s"));
  EXPECT_TRUE(has(html, "14m13s"));  // total 853.3 s
  EXPECT_TRUE(has(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_FALSE(has(html, "<script"));
  EXPECT_TRUE(has(html, "Our data set is fashion-mnist"));
  EXPECT_FALSE(has(html, "http://")) << "the page must not reference external URLs";
  EXPECT_FALSE(has(html, "https://"));
}

TEST(Report, ComparisonRowsHoldOurNumbers) {
  const auto rows = compare_with_paper(fake_results());
  std::map<std::string, ComparisonRow> by_quantity;
  for (const auto& r : rows) by_quantity[r.experiment + "|" + r.quantity] = r;
  const auto& worst = by_quantity["E1|ResNet (preresnet56): worst single deletion"];
  EXPECT_EQ(worst.ours, "35.00% (block 1)");
  EXPECT_EQ(worst.paper, "42.2% (block 1)");
  EXPECT_EQ(by_quantity["E7|normal training: test error"].ours, "7.12%");
  EXPECT_EQ(by_quantity["E7|short paths (23 of 54 blocks): test error"].paper,
            "5.96% (23 of 54 blocks)");
  EXPECT_EQ(by_quantity["E8|share of length-11 paths left, 20 of 54 deleted"].ours, "0.00299");
  EXPECT_EQ(by_quantity["E5|share of paths with 19-35 blocks"].ours, "0.98017");
  EXPECT_EQ(by_quantity["E9|stochastic depth (preresnet56-sd): one block deleted, median"].ours,
            "6.60%");
  EXPECT_EQ(by_quantity["E9|stochastic depth (preresnet56-sd): intact"].paper, "5.13%");
}

TEST(Report, MissingExperimentsAreSkippedWithANote) {
  TempDir tmp;
  json r = {{"E5", paths_of(54, 0)}};
  const ReportResult res = write_report(tmp.path(), r);
  EXPECT_EQ(res.figures, (std::vector<std::string>{"E5_path_lengths"}));
  EXPECT_EQ(res.skipped, (std::vector<std::string>{"E1", "E3", "E4", "E6", "E7", "E8", "E9"}));
  EXPECT_FALSE(fs::exists(tmp.path() + "/report/E1_single_deletion.svg"));
  const std::string html = slurp(res.index_html);
  EXPECT_TRUE(has(html, "E7: training only short paths: not in these results"));
  EXPECT_TRUE(has(html, "No timings recorded."));
  EXPECT_TRUE(has(html, "No configuration recorded."));
}

TEST(Report, MalformedResultsNameTheField) {
  TempDir tmp;
  json r = fake_results();
  r["E1"]["resnet"].erase("plans");
  std::string msg = user_error_of([&] { write_report(tmp.path(), r); });
  EXPECT_TRUE(has(msg, "E1.resnet")) << msg;
  EXPECT_TRUE(has(msg, "missing field \"plans\"")) << msg;
  EXPECT_FALSE(fs::exists(tmp.path() + "/report/index.html"));

  r = fake_results();
  r["E4"]["plans"][2]["top1_error"] = "high";
  msg = user_error_of([&] { write_report(tmp.path(), r); });
  EXPECT_TRUE(has(msg, "E4.plans[2].top1_error")) << msg;

  r = fake_results();
  r["E6"] = json::object();
  msg = user_error_of([&] { write_report(tmp.path(), r); });
  EXPECT_TRUE(has(msg, "E6")) << msg;
  EXPECT_TRUE(has(msg, "sample")) << msg;

  r = fake_results();
  r["E5"]["lengths"][3]["count"] = "12x";
  msg = user_error_of([&] { write_report(tmp.path(), r); });
  EXPECT_TRUE(has(msg, "E5.lengths[3].count")) << msg;

  r = fake_results();
  r["timings"]["train preresnet56"] = "long";
  msg = user_error_of([&] { write_report(tmp.path(), r); });
  EXPECT_TRUE(has(msg, "timings.train preresnet56")) << msg;

  msg = user_error_of([&] { write_report(tmp.path(), json::array()); });
  EXPECT_TRUE(has(msg, "results.json")) << msg;
}

TEST(Report, MissingGnuplotIsAUserError) {
  TempDir tmp;
  ReportOptions opts;
  opts.gnuplot.program = "/no/such/dir/gnuplot";
  const std::string msg =
      user_error_of([&] { write_report(tmp.path(), {{"E5", paths_of(54, 0)}}, opts); });
  EXPECT_EQ(msg, "gnuplot not found: apt-get install gnuplot-nox");
}

TEST(Report, GnuplotFailureNamesTheScript) {
  TempDir tmp;
  GnuplotFigure f(tmp.path(), "broken");
  f.set("set no_such_setting 3");
  f.data("x", {{1, 2}, {3, 4}});
  f.series(0, "using 1:2 with lines", "x");
  const std::string msg = user_error_of([&] { f.render(GnuplotOptions{}); });
  EXPECT_TRUE(has(msg, "gnuplot failed on " + tmp.path() + "/broken.gp")) << msg;
  EXPECT_EQ(gp_quote("it's"), "'it''s'");
}

TEST(Report, SingleRunDirectory) {
  TempDir tmp;
  const std::string run = tmp.path() + "/r20";
  fs::create_directories(run);
  spit(run + "/config.json", json{{"model", "preresnet20"}, {"data", "fashion-mnist"}}.dump());
  spit(run + "/summary.json", json{{"test_top1_error", 0.081}, {"epochs", 3}}.dump());
  std::string metrics;
  for (int e = 1; e <= 4; ++e) {
    metrics += json{{"type", "batch"}, {"epoch", e}, {"loss", 9.0}}.dump() + "\n";
    metrics += json{{"type", "epoch"}, {"epoch", e}, {"train_loss", 1.0 / e},
                    {"test_error", 0.2 - 0.03 * e}}.dump() + "\n";
  }
  spit(run + "/metrics.jsonl", metrics);
  json lesion = single_sweep("", 0.0712, resnet_errors(), {10, 19});
  lesion.erase("model");
  spit(run + "/lesion_single.json", lesion.dump());
  spit(run + "/paths_54.json", paths_of(54, 0).dump());
  spit(run + "/paths_d10.json", paths_of(54, 10).dump());
  spit(run + "/gradients_exact.json", gradients_of("exact", 27).dump());
  spit(run + "/gradients_sample.json", gradients_of("sample", 27).dump());
  spit(run + "/other.json", "{}");  // not an experiment file: ignored

  const ReportResult r = report_directory(run);
  EXPECT_EQ(r.index_html, run + "/report/index.html");
  const std::string dir = run + "/report";
  expect_figure(dir, "training_curves", "train loss");
  expect_figure(dir, "lesion_single_single_deletion", "index of deleted block");
  expect_figure(dir, "paths_54_lengths", "share of all paths");
  expect_figure(dir, "gradients_magnitude", "gradient magnitude at input");
  expect_figure(dir, "gradients_total", "total gradient magnitude");
  expect_figure(dir, "paths_remaining", "path length x");
  EXPECT_EQ(r.figures.size(), 6u);
  const std::string dat = slurp(dir + "/training_curves.dat");
  EXPECT_TRUE(has(dat, "4 0.25 8")) << dat;  // epoch 4: loss 1/4, error 8%
  const std::string html = slurp(r.index_html);
  EXPECT_TRUE(has(html, "unravel run: r20"));
  EXPECT_TRUE(has(html, "model: preresnet20"));
  EXPECT_TRUE(has(html, "preresnet20: worst single deletion"));  // model taken from config.json
  EXPECT_TRUE(has(html, "0.0801"));
  EXPECT_TRUE(has(html, "test_top1_error"));  // the run summary

  // --out elsewhere.
  ReportOptions opts;
  opts.out_dir = tmp.path() + "/elsewhere";
  EXPECT_EQ(report_directory(run, opts).index_html, tmp.path() + "/elsewhere/index.html");

  // An experiment file that is none of the three kinds.
  spit(run + "/lesion_bad.json", json{{"foo", 1}}.dump());
  EXPECT_TRUE(has(user_error_of([&] { report_directory(run); }), run + "/lesion_bad.json"));
}

TEST(Report, BadDirectories) {
  TempDir tmp;
  std::string msg = user_error_of([&] { report_directory(tmp.path() + "/nope"); });
  EXPECT_EQ(msg, "--run " + tmp.path() + "/nope: no such directory");
  msg = user_error_of([&] { report_directory(tmp.path()); });
  EXPECT_TRUE(has(msg, "neither results.json")) << msg;
  spit(tmp.path() + "/results.json", "{\"E1\": {\"resnet\": {\"baseline\": {}}}}");
  msg = user_error_of([&] { report_directory(tmp.path()); });
  EXPECT_EQ(msg, tmp.path() + "/results.json: E1.resnet.baseline: missing field \"top1_error\"");
}

// Renders the page in headless Chromium and checks that the screenshot shows something.
TEST(Report, OpensInHeadlessChromium) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium not installed (apt-get install chromium)";
  TempDir tmp;
  const ReportResult r = write_report(tmp.path(), fake_results());
  // Every referenced file exists.
  const std::string html = slurp(r.index_html);
  for (size_t pos = 0; (pos = html.find("src=\"", pos)) != std::string::npos;) {
    pos += 5;
    const std::string src = html.substr(pos, html.find('"', pos) - pos);
    EXPECT_TRUE(fs::exists(tmp.path() + "/report/" + src)) << src;
  }
  auto screenshot = [&](const std::string& page, const std::string& shot) {
    const std::string cmd =
        "timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        "--user-data-dir='" + tmp.path() + "/profile' --screenshot='" + shot +
        "' --window-size=1200,900 'file://" + page + "' >'" + tmp.path() + "/chromium.log' 2>&1";
    return std::system(cmd.c_str());
  };
  // Control: an empty page gives a uniform screenshot, so the check below can fail.
  spit(tmp.path() + "/blank.html", "<!DOCTYPE html><html><body></body></html>");
  ASSERT_EQ(screenshot(tmp.path() + "/blank.html", tmp.path() + "/blank.png"), 0)
      << slurp(tmp.path() + "/chromium.log");
  const PngStats blank = png_stats(tmp.path() + "/blank.png");
  ASSERT_EQ(blank.error, "");
  EXPECT_EQ(blank.non_background, 0.0);
  EXPECT_EQ(blank.colours, 1u);

  const std::string shot = tmp.path() + "/shot.png";
  ASSERT_EQ(screenshot(r.index_html, shot), 0) << "chromium failed; log:\n"
                                               << slurp(tmp.path() + "/chromium.log");
  ASSERT_TRUE(fs::exists(shot));
  const PngStats st = png_stats(shot);
  ASSERT_EQ(st.error, "");
  EXPECT_EQ(st.width, 1200);
  EXPECT_EQ(st.height, 900);
  EXPECT_GT(st.non_background, 0.02) << "screenshot nearly blank";
  EXPECT_GE(st.colours, 16u) << "screenshot has almost no colours";
}

// The command line, when the program is built.
TEST(Report, CommandLine) {
  const char* bin = std::getenv("UNRAVEL_BIN");
  if (!bin || !fs::exists(bin)) GTEST_SKIP() << "unravel program not built";
  TempDir tmp;
  spit(tmp.path() + "/results.json", json{{"E5", paths_of(54, 0)}}.dump());
  const std::string out = tmp.path() + "/out.txt";
  int rc = std::system((std::string(bin) + " report --run '" + tmp.path() + "' >'" + out +
                        "' 2>&1").c_str());
  EXPECT_EQ(rc, 0) << slurp(out);
  EXPECT_EQ(slurp(out), tmp.path() + "/report/index.html\n");
  rc = std::system((std::string(bin) + " report --run '" + tmp.path() + "/nope' >'" + out +
                    "' 2>&1").c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc;
  const std::string err = slurp(out);
  EXPECT_TRUE(has(err, "/nope: no such directory")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace
