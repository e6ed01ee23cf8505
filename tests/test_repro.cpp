// The reproduction end to end: the smoke preset into a temporary folder (one full run and one
// rerun that must reuse every step), checked against independent arithmetic and independent
// evaluations (E6 by brute force over all 2^6 paths of the trained net, E9 by `unravel lesion`);
// plus the preset table, the derived sizes and the cache hash.
// Sections: helpers and oracles / cheap unit tests / the smoke preset end to end (results.json
// per experiment, the report, the rerun). Std reported: E6 sample "std" is the sample std (n-1),
// pinned in the E6 oracle.
#include <gtest/gtest.h>
#include <stdlib.h>

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
#include "data/dataset.h"
#include "paths/gradients.h"
#include "repro/repro.h"
#include "testing.h"
#include "train/run.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace unravel;
using unravel::testing::read_json;
using unravel::testing::slurp;
using unravel::testing::TempDir;
namespace ut = unravel::testing;

namespace {

// C(n, k) by the multiplicative formula in long double: independent of the library's big integers
// and log-space shares.
long double choose(int n, int k) {
  if (k < 0 || k > n) return 0;
  long double c = 1;
  for (int i = 1; i <= k; ++i) c = c * (n - k + i) / i;
  return c;
}

// Every file under `dir` with its bytes and modification time: a rerun that recomputes nothing
// leaves this unchanged below runs/ and steps/.
std::map<std::string, std::pair<std::string, fs::file_time_type>> snapshot(const fs::path& dir) {
  std::map<std::string, std::pair<std::string, fs::file_time_type>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != ".lock")  // the writer's lock is taken each time
      out[fs::relative(e.path(), dir).string()] = {slurp(e.path().string()), fs::last_write_time(e.path())};
  return out;
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

uint32_t mask_of(const std::vector<int>& set) {
  uint32_t m = 0;
  for (int b : set) m |= 1u << (b - 1);
  return m;
}

// E6 recomputed here: the batch the step used (the first shuffled, unaugmented training batch of
// the seed), then the norm of every one of the 2^n paths of the trained ResNet by brute force.
// exact: each ||g_k|| equals the brute-force norm of the summed paths of length k; sample: the
// mean and sample std (n-1, not the population std) of the brute-force norms of exactly the paths
// the method drew (sample_path_sets with the step's seed). float32, as the step ran.
void expect_e6_matches_brute_force(const json& e6, const std::string& out) {
  const json& s = e6.at("sample");
  const json& e = e6.at("exact");
  LoadedNetwork loaded = load_run(out + "/" + s.at("run").get<std::string>());
  models::Network net = loaded.net;
  net->to(torch::kFloat32);
  const data::Dataset ds = data::load_dataset(data::parse_data_spec(s.at("data").get<std::string>()));
  data::LoaderOptions lo;
  lo.batch_size = s.at("batch_size").get<int64_t>();
  lo.shuffle = true;
  lo.augment = false;
  lo.seed = s.at("seed").get<uint64_t>();
  data::Loader loader(ds.train, loaded.norm, lo, /*epoch=*/0);
  data::Batch batch;
  ASSERT_TRUE(loader.next(batch));
  paths::GradientOptions go;
  go.keep_tensors = true;
  go.sign_samples = 0;
  const paths::GradientResult br = paths::brute_gradients(net, batch.images, batch.labels, go);
  const int n = br.n;
  ASSERT_EQ(e.at("lengths").size(), static_cast<size_t>(n + 1));
  EXPECT_NEAR(e.at("grad_norm").get<double>(), br.grad_norm, 1e-5 * br.grad_norm);
  for (int k = 0; k <= n; ++k) {
    SCOPED_TRACE("length " + std::to_string(k));
    const json& er = e.at("lengths")[k];
    EXPECT_EQ(er.at("paths"), std::to_string(static_cast<long>(choose(n, k))));
    const double want_norm = br.lengths[k].norm;
    ASSERT_GT(want_norm, 0);
    EXPECT_NEAR(er.at("norm").get<double>(), want_norm, 1e-4 * want_norm) << "exact vs brute force";

    const json& sr = s.at("lengths")[k];
    const int64_t m = sr.at("samples").get<int64_t>();
    const auto sets = paths::sample_path_sets(n, k, m, s.at("seed").get<uint64_t>());
    ASSERT_EQ(static_cast<int64_t>(sets.size()), m);
    double sum = 0, sum_sq = 0;
    for (const auto& set : sets) {
      const double x = br.path_norms[mask_of(set)];
      sum += x;
      sum_sq += x * x;
    }
    const double mean = sum / m;
    double ss = 0;
    for (const auto& set : sets) ss += std::pow(br.path_norms[mask_of(set)] - mean, 2);
    const double sample_std = std::sqrt(ss / (m - 1)), population_std = std::sqrt(ss / m);
    EXPECT_NEAR(sr.at("mean").get<double>(), mean, 1e-4 * mean) << "sampled mean vs brute force";
    EXPECT_NEAR(sr.at("mean_sq").get<double>(), sum_sq / m, 2e-4 * sum_sq / m);
    EXPECT_NEAR(sr.at("std").get<double>(), sample_std, 1e-4 * mean + 1e-3 * sample_std);
    if (sample_std > 1e-3 * mean) {  // pins n-1: sqrt(20/19) differs by 2.6%
      EXPECT_GT(std::abs(sr.at("std").get<double>() - population_std), 0.01 * sample_std);
    }
  }
}

// E9's normal network, evaluated again by the command line (`unravel lesion --single` on the
// same run directory, which reads the run's data set itself): the same counts, block by block.
void expect_e9_resnet_matches_the_command_line(const json& e9, const std::string& out) {
  const json& mine = e9.at("resnet");
  TempDir tmp("repro_e9");
  const std::string file = tmp.file("lesion.json");
  const ut::CommandResult r = ut::run_unravel("lesion --run " + out + "/" + mine.at("run").get<std::string>() +
                                                        " --single --threads 1 --quiet --json " + file);
  ASSERT_EQ(r.code, 0) << r.err;
  const json cli = read_json(file);
  EXPECT_EQ(mine.at("baseline").at("correct"), cli.at("baseline").at("correct"));
  EXPECT_EQ(mine.at("baseline").at("n"), cli.at("baseline").at("n"));
  std::map<int, json> by_block;
  for (const json& p : cli.at("plans")) by_block[p.at("blocks")[0].get<int>()] = p;
  ASSERT_EQ(mine.at("plans").size(), by_block.size());
  for (const json& p : mine.at("plans")) {
    const int b = p.at("blocks")[0].get<int>();
    ASSERT_TRUE(by_block.count(b)) << "block " << b;
    EXPECT_EQ(p.at("plan"), by_block[b].at("plan")) << "block " << b;
    EXPECT_EQ(p.at("correct"), by_block[b].at("correct")) << "block " << b;
    EXPECT_EQ(p.at("n"), by_block[b].at("n")) << "block " << b;
    EXPECT_DOUBLE_EQ(p.at("top1_error").get<double>(), by_block[b].at("top1_error").get<double>()) << "block " << b;
  }
}

}  // namespace

// ---- cheap unit tests ------------------------------------------------------------------------

TEST(ReproPresets, TableHasThePresetsWithTheirContracts) {
  const auto& t = repro::presets();
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t[0].name, "smoke");
  EXPECT_EQ(t[1].name, "quick");
  EXPECT_EQ(t[2].name, "paper");
  EXPECT_EQ(t[3].name, "full");
  EXPECT_EQ(t[4].name, "imagenet");
  EXPECT_TRUE(t[4].data.empty()) << "the imagenet preset takes the user's folder";
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
  TempDir tmp("repro");
  repro::ReproOptions o;
  o.preset = "smoke";
  o.out = tmp.str() + "/smoke";
  o.quiet = true;
  // One thread: with two, OpenMP's spinning barriers make libtorch up to 10x slower whenever
  // another process (a parallel ctest) holds a core.
  o.threads = 1;
  repro::ReproResult first, second;
  // The wall time is printed, not asserted: a busy machine stretches it without a defect.
  ut::work_of([&] { first = repro::run_repro(o); }, "smoke: first run");

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

  // E6: both methods on one batch against brute force over all 64 paths of the same batch; the
  // exact decomposition sums to the ordinary gradient (its built-in check, float32: a wrong
  // decomposition is O(1)); shares and the effective range follow from the totals.
  {
    const json& s = r.at("E6").at("sample");
    const json& e = r.at("E6").at("exact");
    EXPECT_EQ(s.at("method"), "sample");
    EXPECT_EQ(e.at("method"), "exact");
    EXPECT_EQ(s.at("n").get<int>(), n);
    ASSERT_EQ(e.at("lengths").size(), static_cast<size_t>(n + 1));
    ASSERT_EQ(s.at("lengths").size(), static_cast<size_t>(n + 1));
    EXPECT_LT(e.at("residual").get<double>(), 1e-5);
    EXPECT_EQ(e.at("dtype"), "float32");
    for (const json& row : s.at("lengths")) EXPECT_EQ(row.at("samples").get<int64_t>(), 20) << row.dump();
    EXPECT_EQ(s.at("batch_size").get<int64_t>(), 16);
    ut::expect_gradient_arithmetic(s);
    ut::expect_gradient_arithmetic(e);
    expect_e6_matches_brute_force(r.at("E6"), o.out);
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

  // E9: the stochastic-depth net's sweep beside the normal one, whose single deletions an
  // independent `unravel lesion --single` of the same run counts the same.
  expect_e9_resnet_matches_the_command_line(r.at("E9"), o.out);
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
  // Each verdict of results.json is a row of the report's verdict table.
  ASSERT_TRUE(r.at("verdicts").is_object());
  for (const auto& [id, v] : r.at("verdicts").items())
    EXPECT_NE(html.find("<tr><td>" + id + "</td><td>" +
                        (v.at("reproduced").get<bool>() ? "reproduced" : "<b>not reproduced</b>") + "</td>"),
              std::string::npos)
        << id;
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

  // ---- the rerun reuses every step: every step reports "cached" and nothing under runs/
  // (checkpoints, metrics, summaries) or steps/ (the cached results) is written again ----
  const auto runs_before = snapshot(fs::path(o.out) / "runs"), steps_before = snapshot(fs::path(o.out) / "steps");
  ASSERT_FALSE(runs_before.empty());
  ASSERT_FALSE(steps_before.empty());
  ut::work_of([&] { second = repro::run_repro(o); }, "smoke: second run");
  auto changed = [](const auto& before, const auto& after) {
    std::string names;
    for (const auto& [name, v] : after)
      if (!before.count(name) || before.at(name) != v) names += " " + name;
    for (const auto& [name, v] : before)
      if (!after.count(name)) names += " -" + name;
    return names;
  };
  EXPECT_EQ(changed(runs_before, snapshot(fs::path(o.out) / "runs")), "") << "the rerun wrote into runs/";
  EXPECT_EQ(changed(steps_before, snapshot(fs::path(o.out) / "steps")), "") << "the rerun recomputed a step";
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
