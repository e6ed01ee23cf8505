// The reproduction end to end: the smoke preset into a temporary folder (one full run and one
// rerun that must reuse every step), checked against independent arithmetic; plus the preset
// table, the derived sizes and the cache hash.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/hash.h"
#include "repro/repro.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace unravel;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "unravel_repro_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {  // UNRAVEL_KEEP_TMP=1 keeps the folder to look at
    if (std::getenv("UNRAVEL_KEEP_TMP")) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return json::parse(in);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// C(n, k) by the multiplicative formula in long double: independent of the library's big integers
// and log-space shares.
long double choose(int n, int k) {
  if (k < 0 || k > n) return 0;
  long double c = 1;
  for (int i = 1; i <= k; ++i) c = c * (n - k + i) / i;
  return c;
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Plans of a lesion JSON of one kind, grouped by k.
std::map<int, int> plans_per_k(const json& lesion, const std::string& kind) {
  std::map<int, int> out;
  for (const json& p : lesion.at("plans"))
    if (p.at("kind") == kind) ++out[p.at("k").get<int>()];
  return out;
}

void expect_error_fraction(const json& j, const std::string& what) {
  ASSERT_TRUE(j.is_number()) << what << " is " << j.dump();
  const double v = j.get<double>();
  EXPECT_GE(v, 0.0) << what;
  EXPECT_LE(v, 1.0) << what;
}

}  // namespace

// ---- cheap unit tests ------------------------------------------------------------------------

TEST(ReproPresets, TableHasThePresetsWithTheirContracts) {
  const auto& t = repro::presets();
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].name, "smoke");
  EXPECT_EQ(t[1].name, "quick");
  EXPECT_EQ(t[2].name, "paper");
  EXPECT_EQ(t[3].name, "full");
  // smoke: a 6-block net on synthetic data (runs in this suite)
  EXPECT_EQ(t[0].model, "preresnet14");
  EXPECT_EQ(t[0].data.rfind("synthetic", 0), 0u);
  EXPECT_EQ(t[0].threads, 1);  // robust to a busy machine (spinning OpenMP barriers)
  // quick: at least 27 blocks on Fashion-MNIST, within 20 minutes
  EXPECT_EQ(t[1].model, "preresnet56");
  EXPECT_EQ(t[1].data, "fashion-mnist");
  EXPECT_LE(t[1].budget_s, 1200);
  // paper: the paper's 54 blocks and its ~15-layer plain control, all of Fashion-MNIST, E3/E4 on
  // 2000 test images, about two hours
  EXPECT_EQ(t[2].model, "preresnet110");
  EXPECT_EQ(t[2].plain_model, "plain14");
  EXPECT_EQ(t[2].train_subset, 0);
  EXPECT_EQ(t[2].test_subset, 0);
  EXPECT_EQ(t[2].random_test_subset, 2000);
  EXPECT_LE(t[2].budget_s, 7200);
  // full: the paper's ResNet-110 and schedule on all the data, 1000 samples per length
  EXPECT_EQ(t[3].model, "preresnet110");
  EXPECT_EQ(t[3].epochs, 164);
  EXPECT_EQ(t[3].batch_size, 128);
  EXPECT_DOUBLE_EQ(t[3].lr, 0.1);
  EXPECT_EQ(t[3].milestones, (std::vector<double>{0.5, 0.75}));
  EXPECT_EQ(t[3].train_subset, 0);
  EXPECT_EQ(t[3].test_subset, 0);
  EXPECT_EQ(t[3].grad_samples, 1000);
  const std::string text = repro::presets_table();
  for (const char* s : {"smoke", "quick", "paper", "full", "preresnet56", "preresnet110", "plain14", "fashion-mnist"})
    EXPECT_NE(text.find(s), std::string::npos) << s;
}

TEST(ReproPresets, UnknownPresetIsAUserErrorNamingTheFlag) {
  try {
    repro::find_preset("medium");
    FAIL() << "no exception";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--preset 'medium'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(&repro::find_preset("quick"), &repro::presets()[1]);
}

TEST(ReproSizes, PaperNetworkGivesThePapersNumbers) {
  const repro::Sizes s = repro::derive_sizes(54, 26);
  EXPECT_EQ(s.active_blocks, 23);
  EXPECT_EQ(s.delete_k_max, 27);
  EXPECT_EQ(s.swap_k_max, 18);
  EXPECT_EQ(s.deleted, (std::vector<int>{1, 10, 20}));
  EXPECT_EQ(s.x, 11);
}

TEST(ReproSizes, SmallerNetworksScaleAndClip) {
  const repro::Sizes q = repro::derive_sizes(27, 12);  // preresnet56
  EXPECT_EQ(q.active_blocks, 12);                       // round(11.5)
  EXPECT_EQ(q.delete_k_max, 13);
  EXPECT_EQ(q.swap_k_max, 9);
  EXPECT_EQ(q.deleted, (std::vector<int>{1, 10, 20}));
  EXPECT_EQ(q.x, 6);                                    // round(5.5)
  const repro::Sizes s = repro::derive_sizes(6, 1);    // preresnet14: one swappable pair
  EXPECT_EQ(s.active_blocks, 3);                        // round(2.56)
  EXPECT_EQ(s.delete_k_max, 3);
  EXPECT_EQ(s.swap_k_max, 1);
  EXPECT_EQ(s.deleted, (std::vector<int>{1, 5}));       // 10 and 20 clipped to 5, once
  EXPECT_EQ(s.x, 1);
  EXPECT_EQ(repro::derive_sizes(6, 0).swap_k_max, 0);   // nothing to swap: E4 is skipped
  EXPECT_THROW(repro::derive_sizes(0, 0), UserError);
}

TEST(ReproHash, Fnv1aMatchesPublishedVectors) {
  EXPECT_EQ(fnv1a_hex(""), "cbf29ce484222325");
  EXPECT_EQ(fnv1a_hex("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(fnv1a_hex("foobar"), "85944171f73967e8");
}

// ---- the smoke preset end to end --------------------------------------------------------------

TEST(ReproSmoke, EndToEndThenEveryStepReused) {
  TempDir tmp;
  repro::ReproOptions o;
  o.preset = "smoke";
  o.out = tmp.path() + "/smoke";
  o.quiet = true;
  // One thread: with two, OpenMP's spinning barriers make libtorch up to 10x slower whenever
  // another process (a parallel ctest) holds a core; one thread keeps the timings meaningful.
  o.threads = 1;
  repro::ReproResult first, second;
  const double t_first = seconds_of([&] { first = repro::run_repro(o); });
  std::cerr << "smoke: first run " << t_first << " s\n";
  EXPECT_LT(t_first, 180) << "the smoke preset must stay under 3 minutes";

  // ---- results.json ----
  const std::string results_path = o.out + "/results.json";
  ASSERT_TRUE(fs::exists(results_path));
  const json r = read_json(results_path);
  EXPECT_EQ(r, first.results);
  for (const char* id : {"E1", "E3", "E4", "E5", "E6", "E7", "E8", "E9", "config", "timings", "meta"})
    EXPECT_TRUE(r.contains(id)) << id;
  const int n = r.at("config").at("sizes").at("n").get<int>();
  EXPECT_EQ(n, 6);  // preresnet14
  EXPECT_EQ(r.at("meta").at("preset"), "smoke");
  EXPECT_TRUE(r.at("meta").contains("finished"));
  EXPECT_TRUE(r.at("meta").at("versions").contains("libtorch"));

  // E1: every block of both networks deleted once, the baseline a real test error.
  for (const char* net : {"resnet", "plain"}) {
    SCOPED_TRACE(net);
    const json& l = r.at("E1").at(net);
    EXPECT_EQ(plans_per_k(l, "delete"), (std::map<int, int>{{1, n}}));
    std::set<int> blocks;
    for (const json& p : l.at("plans")) {
      ASSERT_EQ(p.at("blocks").size(), 1u);
      blocks.insert(p.at("blocks")[0].get<int>());
      expect_error_fraction(p.at("top1_error"), "plan " + p.at("plan").get<std::string>());
      EXPECT_EQ(p.at("n").get<int>(), 512);
    }
    EXPECT_EQ(blocks.size(), static_cast<size_t>(n));
    EXPECT_EQ(*blocks.begin(), 1);
    EXPECT_EQ(*blocks.rbegin(), n);
    expect_error_fraction(l.at("baseline").at("top1_error"), "baseline");
  }
  EXPECT_EQ(r.at("E1").at("plain").at("model"), "plain14");
  // The ResNet learned something: well below chance (90%) on the learnable synthetic set.
  EXPECT_LT(r.at("E1").at("resnet").at("baseline").at("top1_error").get<double>(), 0.7);

  // E3: k = 1..3 random deletions, 2 sets each; E4: one swap (one same-shape pair in preresnet14).
  EXPECT_EQ(plans_per_k(r.at("E3"), "delete"), (std::map<int, int>{{1, 2}, {2, 2}, {3, 2}}));
  EXPECT_EQ(plans_per_k(r.at("E4"), "swap"), (std::map<int, int>{{1, 2}}));
  for (const json& p : r.at("E4").at("plans")) {
    EXPECT_EQ(p.at("blocks"), (json{1, 2}));  // the only blocks of equal shapes
    EXPECT_NEAR(p.at("kendall_tau").get<double>(), 1.0 - 2.0 * 2 / (n * (n - 1)), 1e-12);
  }

  // E5: shares of Binomial(6, 1/2) summing to 1, exact counts.
  {
    const json& e5 = r.at("E5");
    ASSERT_EQ(e5.at("lengths").size(), static_cast<size_t>(n + 1));
    double sum = 0;
    for (int k = 0; k <= n; ++k) {
      const json& row = e5.at("lengths")[k];
      EXPECT_EQ(row.at("length").get<int>(), k);
      EXPECT_EQ(row.at("count").get<std::string>(), std::to_string(static_cast<long>(choose(n, k))));
      EXPECT_NEAR(row.at("share").get<double>(), static_cast<double>(choose(n, k) / 64.0L), 1e-15);
      sum += row.at("share").get<double>();
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
    EXPECT_DOUBLE_EQ(e5.at("mean").get<double>(), 3.0);
  }

  // E6: both methods on one batch; the exact decomposition sums to the ordinary gradient.
  {
    const json& s = r.at("E6").at("sample");
    const json& e = r.at("E6").at("exact");
    EXPECT_EQ(s.at("method"), "sample");
    EXPECT_EQ(e.at("method"), "exact");
    EXPECT_EQ(s.at("n").get<int>(), n);
    ASSERT_EQ(e.at("lengths").size(), static_cast<size_t>(n + 1));
    ASSERT_EQ(s.at("lengths").size(), static_cast<size_t>(n + 1));
    EXPECT_LT(e.at("residual").get<double>(), 1e-5);  // float32; a wrong decomposition is O(1)
    EXPECT_EQ(e.at("dtype"), "float32");
    for (const json& row : s.at("lengths")) {
      EXPECT_GT(row.at("mean").get<double>(), 0) << row.dump();
      EXPECT_EQ(row.at("samples").get<int64_t>(), 20) << row.dump();
    }
    EXPECT_EQ(s.at("batch_size").get<int64_t>(), 16);
  }

  // E7: the short-path net (3 of 6 blocks per batch) against the normal one, both conventions.
  {
    const json& e7 = r.at("E7");
    EXPECT_EQ(e7.at("n").get<int>(), n);
    EXPECT_EQ(e7.at("active_blocks").get<int>(), 3);
    expect_error_fraction(e7.at("normal").at("top1_error"), "E7 normal");
    expect_error_fraction(e7.at("short").at("top1_error"), "E7 short");
    expect_error_fraction(e7.at("conventions").at("scaled"), "E7 scaled");
    expect_error_fraction(e7.at("conventions").at("all"), "E7 all");
    const std::string def = e7.at("default_convention");
    EXPECT_EQ(e7.at("short").at("top1_error"), e7.at("conventions").at(def));
    const json normal_summary = read_json(o.out + "/runs/preresnet14/summary.json");
    EXPECT_EQ(e7.at("normal").at("top1_error"), normal_summary.at("test_error"));
  }

  // E8: C(n-d, x) / C(n, x), computed here, for d = 1 and 5 (10 and 20 clipped below n).
  {
    const json& e8 = r.at("E8");
    const int x = e8.at("x").get<int>();
    EXPECT_EQ(x, 1);
    ASSERT_EQ(e8.at("deleted").size(), 2u);
    std::vector<int> ds;
    for (const json& p : e8.at("deleted")) {
      const int d = p.at("deleted").get<int>();
      ds.push_back(d);
      EXPECT_EQ(p.at("n").get<int>(), n);
      for (int len = 0; len <= n; ++len) {
        const double want = static_cast<double>(choose(n - d, len) / choose(n, len));
        EXPECT_NEAR(p.at("lengths")[len].at("remaining_share").get<double>(), want, 1e-14)
            << "d " << d << " length " << len;
      }
    }
    EXPECT_EQ(ds, (std::vector<int>{1, 5}));
    EXPECT_NEAR(e8.at("deleted")[0].at("lengths")[x].at("remaining_share").get<double>(), 5.0 / 6.0,
                1e-15);
  }

  // E9: the stochastic-depth net's sweep beside the normal one (the same numbers as E1).
  EXPECT_EQ(r.at("E9").at("resnet"), r.at("E1").at("resnet"));
  EXPECT_EQ(plans_per_k(r.at("E9").at("stochastic"), "delete"), (std::map<int, int>{{1, n}}));

  // Every step timed, all computed on the first run.
  ASSERT_EQ(first.steps.size(), r.at("timings").size());
  for (const auto& s : first.steps) {
    EXPECT_TRUE(r.at("timings").at(s.id).is_number()) << s.id;
    EXPECT_NE(s.status, "cached") << s.id;
  }

  // ---- the report ----
  const std::string index = o.out + "/report/index.html";
  ASSERT_EQ(first.report_index, index);
  ASSERT_TRUE(fs::exists(index));
  const std::string html = slurp(index);
  std::set<std::string> figures;
  const std::regex img("<img src=\"([^\"]+)\\.svg\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), img); it != std::sregex_iterator(); ++it)
    figures.insert((*it)[1].str());
  EXPECT_GE(figures.size(), 7u);
  for (const std::string& f : figures)
    for (const char* ext : {".svg", ".png"}) {
      const fs::path p = fs::path(o.out) / "report" / (f + ext);
      ASSERT_TRUE(fs::exists(p)) << p;
      EXPECT_GT(fs::file_size(p), 1000u) << p;
    }
  for (const char* stem : {"E1_single_deletion", "E3_random_deletion", "E5_path_lengths",
                           "E7_short_path_training", "E8_remaining_paths", "E9_single_deletion"})
    EXPECT_TRUE(figures.count(stem)) << stem;

  // ---- the rerun reuses every step ----
  const double t_second = seconds_of([&] { second = repro::run_repro(o); });
  std::cerr << "smoke: second run " << t_second << " s\n";
  EXPECT_LT(t_second, 0.2 * t_first);
  ASSERT_EQ(second.steps.size(), first.steps.size());
  for (const auto& s : second.steps) EXPECT_EQ(s.status, "cached") << s.id;
  const json r2 = read_json(results_path);
  for (const char* id : {"E1", "E3", "E4", "E5", "E6", "E7", "E8", "E9"}) EXPECT_EQ(r2.at(id), r.at(id)) << id;
  for (const auto& [id, v] : r2.at("steps").items()) EXPECT_EQ(v.at("status"), "cached") << id;
  const std::string all = std::to_string(second.steps.size());
  EXPECT_EQ(r2.at("meta").at("steps_cached"), all + " of " + all);

  // ---- the same folder with another seed is refused, naming --out ----
  repro::ReproOptions other = o;
  other.seed = 7;
  try {
    repro::run_repro(other);
    FAIL() << "no exception";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--out " + o.out), std::string::npos) << e.what();
  }
}
