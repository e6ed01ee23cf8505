// core/stats against Python's statistics module (mean, median, stdev = sample std with n - 1,
// pstdev = population std) and a Spearman rho computed in Python (mean ranks for ties, then
// statistics.correlation); the edge cases the header promises.
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "core/stats.h"
#include "testing.h"

namespace {

using unravel::testing::TempDir;

// Data sets: small and large, with ties, negative values, an even and an odd size.
std::vector<std::vector<double>> data_sets() {
  std::vector<std::vector<double>> sets = {
      {3.5},
      {1, 2},
      {16, 17, 18},
      {0.25, -1.5, 7, 7, 2.125, -1.5, 9.75, 0.25},
      {5.13, 5.26, 6.9, 6.1, 5.96, 6.03, 7.12, 5.13, 5.13},
  };
  std::vector<double> big;
  uint64_t x = 12345;
  for (int i = 0; i < 101; ++i) {  // a fixed LCG: the same values everywhere
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    big.push_back(static_cast<double>(x >> 40) / 1024.0 - 4000.0 + (i % 7 == 0 ? 0.0 : 0.5));
  }
  sets.push_back(big);
  return sets;
}

std::string py_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.17g}", i ? ", " : "", v[i]);
  return s + "]";
}

// The values Python's statistics module gives for each set, as JSON.
nlohmann::json python_statistics(const std::vector<std::vector<double>>& sets) {
  TempDir dir("stats");
  std::string script =
      "import json, statistics as st\n"
      "def ranks(v):\n"
      "    order = sorted(range(len(v)), key=lambda i: v[i])\n"
      "    r = [0.0] * len(v)\n"
      "    i = 0\n"
      "    while i < len(v):\n"
      "        j = i\n"
      "        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]: j += 1\n"
      "        for k in range(i, j + 1): r[order[k]] = (i + j) / 2 + 1\n"
      "        i = j + 1\n"
      "    return r\n"
      "out = []\n";
  for (const auto& v : sets) {
    script += "v = " + py_list(v) + "\n";
    script += "w = [x * x - 3 * x for x in v]\n";  // a second variable, not monotone in v
    script +=
        "out.append({'mean': st.mean(v), 'median': st.median(v),"
        " 'stdev': st.stdev(v) if len(v) > 1 else 0.0, 'pstdev': st.pstdev(v),"
        " 'rho': st.correlation(ranks(v), ranks(w)) if len(v) > 2 else None, 'w': w})\n";
  }
  script += "print(json.dumps(out))\n";
  unravel::testing::write_file(dir.file("stats.py"), script);
  const auto r = unravel::testing::run_python(dir.file("stats.py"));
  EXPECT_EQ(r.code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

void expect_close(double got, double want, const std::string& what) {
  EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::fabs(want))) << what;
}

}  // namespace

TEST(Stats, AgreeWithPythonStatistics) {
  const auto sets = data_sets();
  const nlohmann::json py = python_statistics(sets);
  ASSERT_EQ(py.size(), sets.size());
  for (size_t i = 0; i < sets.size(); ++i) {
    const auto& v = sets[i];
    const auto& p = py[i];
    const std::string set = fmt::format("set {} ({} values)", i, v.size());
    expect_close(unravel::mean(v), p["mean"].get<double>(), set + ": mean");
    expect_close(unravel::median(v), p["median"].get<double>(), set + ": median");
    expect_close(unravel::sample_std(v), p["stdev"].get<double>(), set + ": sample std (n - 1)");
    expect_close(unravel::population_std(v), p["pstdev"].get<double>(), set + ": population std (n)");
    if (!p["rho"].is_null())
      expect_close(unravel::spearman(v, p["w"].get<std::vector<double>>()), p["rho"].get<double>(), set + ": rho");
  }
}

TEST(Stats, SampleAndPopulationStdDifferByTheirDivisor) {
  // {16, 17, 18}: squared deviations sum to 2; sample std sqrt(2/2) = 1, population sqrt(2/3).
  EXPECT_DOUBLE_EQ(unravel::sample_std({16, 17, 18}), 1.0);
  EXPECT_DOUBLE_EQ(unravel::population_std({16, 17, 18}), std::sqrt(2.0 / 3.0));
}

TEST(Stats, EdgeCasesAsDocumented) {
  EXPECT_EQ(unravel::mean({}), 0.0);
  EXPECT_EQ(unravel::median({}), 0.0);
  EXPECT_EQ(unravel::sample_std({4.0}), 0.0);
  EXPECT_EQ(unravel::population_std({}), 0.0);
  EXPECT_EQ(unravel::median({4, 1, 3, 2}), 2.5);  // mean of the middle two
  EXPECT_EQ(unravel::spearman({1, 2, 3}, {1, 2}), 0.0);  // sizes differ
  EXPECT_EQ(unravel::spearman({1}, {1}), 0.0);            // below 2
  EXPECT_EQ(unravel::spearman({1, 2, 3}, {5, 5, 5}), 0.0);  // one side constant
  EXPECT_DOUBLE_EQ(unravel::spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(unravel::spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
}
