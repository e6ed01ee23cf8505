// Tests of the path arithmetic (src/paths/path_counts.h) against exact big-integer references
// and the numbers of the paper (Veit et al. 2016, E5 and E8), and of the small utilities of
// src/core/util.h (files, JSON, durations, progress lines).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "core/errors.h"
#include "core/util.h"
#include "paths/path_counts.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

using unravel::UserError;
using namespace unravel::paths;

// num / 2^n to ~20 significant digits, using only exact integer arithmetic and strtod (which
// rounds correctly): an independent reference for the log-space shares.
double ratio_pow2(BigUint num, int n) {
  if (num.is_zero()) return 0.0;
  // Scale by 10^e so that the integer quotient keeps at least 25 digits.
  const double quotient_digits = static_cast<double>(num.decimal_digits()) - n * std::log10(2.0);
  const int e = std::max(0, static_cast<int>(std::ceil(25 - quotient_digits)));
  for (int i = 0; i < e; ++i) num.mul_small(10);
  int left = n;
  for (; left >= 30; left -= 30) num.div_small(1u << 30);
  num.div_small(1u << left);
  const std::string text = num.to_string() + "e-" + std::to_string(e);
  return std::strtod(text.c_str(), nullptr);
}

// The exception message of `f`, or "" when it does not throw UserError.
template <class F>
std::string user_error_of(F&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

uint64_t choose_u64(int n, int k) {  // small n only: C(n,i) * (n-i) must fit 64 bits
  uint64_t c = 1;
  for (int i = 0; i < k; ++i) c = c * static_cast<uint64_t>(n - i) / static_cast<uint64_t>(i + 1);
  return c;
}

// ---- BigUint --------------------------------------------------------------------------------

TEST(BigUint, DecimalArithmetic) {
  EXPECT_EQ(BigUint().to_string(), "0");
  EXPECT_TRUE(BigUint(0).is_zero());
  EXPECT_EQ(BigUint(1000000000ull).to_string(), "1000000000");
  EXPECT_EQ(BigUint(999999999ull).decimal_digits(), 9u);
  EXPECT_EQ((BigUint(999999999ull) + BigUint(1)).to_string(), "1000000000");
  EXPECT_EQ((BigUint(999999999999999999ull) + BigUint(1)).to_string(), "1000000000000000000");

  BigUint x(123456789012345678ull);
  x.mul_small(1000u);
  EXPECT_EQ(x.to_string(), "123456789012345678000");
  const BigUint before = x;
  const uint32_t rem = x.div_small(7u);
  EXPECT_EQ(rem, 6u);  // 123456789012345678000 = 7 q + 6
  x.mul_small(7u);
  x += BigUint(rem);
  EXPECT_EQ(x, before);
  BigUint y(10);
  EXPECT_EQ(y.div_small(3u), 1u);
  EXPECT_EQ(y.to_string(), "3");
  BigUint z(5);
  z.mul_small(0);
  EXPECT_TRUE(z.is_zero());
}

TEST(BigUint, Fits64Bits) {
  const uint64_t max = ~uint64_t{0};
  EXPECT_EQ(BigUint(max).to_string(), "18446744073709551615");
  ASSERT_TRUE(BigUint(max).to_u64().has_value());
  EXPECT_EQ(*BigUint(max).to_u64(), max);
  EXPECT_FALSE(pow2(64).to_u64().has_value());
  EXPECT_EQ(pow2(64).to_string(), "18446744073709551616");
  EXPECT_EQ(*pow2(63).to_u64(), uint64_t{1} << 63);
  EXPECT_TRUE(BigUint(max) < pow2(64));
  EXPECT_FALSE(pow2(64) < BigUint(max));
  EXPECT_NEAR(pow2(1000).log10(), 1000 * std::log10(2.0), 1e-9);
}

TEST(BigUint, PowersOfTwo) {
  EXPECT_EQ(pow2(0).to_string(), "1");
  EXPECT_EQ(pow2(10).to_string(), "1024");
  EXPECT_EQ(pow2(54).to_string(), "18014398509481984");
  EXPECT_EQ(*pow2(54).to_u64(), uint64_t{1} << 54);
  EXPECT_EQ(pow2(44).to_string(), "17592186044416");
  // 2^1000 has floor(1000 log10 2) + 1 = 302 digits and ends in ...9376.
  const std::string p = pow2(1000).to_string();
  EXPECT_EQ(p.size(), 302u);
  EXPECT_EQ(p.substr(p.size() - 4), "9376");
  // Doubling 1000 times by addition agrees with pow2.
  BigUint doubled = 1;
  for (int i = 0; i < 1000; ++i) doubled += doubled;
  EXPECT_EQ(doubled, pow2(1000));
}

// ---- Exact counts ---------------------------------------------------------------------------

TEST(PathCounts, BinomialExactSmall) {
  EXPECT_EQ(binomial(54, 27).to_string(), "1946939425648112");
  EXPECT_EQ(*binomial(54, 27).to_u64(), 1946939425648112ull);
  EXPECT_EQ(binomial(54, 0).to_string(), "1");
  EXPECT_EQ(binomial(54, 54).to_string(), "1");
  EXPECT_EQ(binomial(54, 55).to_string(), "0");
  EXPECT_EQ(binomial(54, -1).to_string(), "0");
  const std::vector<BigUint> row = binomial_row(54);
  ASSERT_EQ(row.size(), 55u);
  for (int k = 0; k <= 54; ++k) {
    EXPECT_EQ(*row[k].to_u64(), choose_u64(54, k)) << "k=" << k;
    EXPECT_EQ(row[k], binomial(54, k)) << "k=" << k;
  }
}

TEST(PathCounts, RowsSumToPowerOfTwo) {
  for (int n : {1, 2, 54, 1000, 5000}) {
    BigUint sum = 0;
    for (const BigUint& c : binomial_row(n)) sum += c;
    EXPECT_EQ(sum, pow2(n)) << "n=" << n;
  }
}

TEST(PathCounts, PascalAndLargeBinomials) {
  const std::vector<BigUint> row1000 = binomial_row(1000), row1001 = binomial_row(1001);
  for (int k = 0; k < 1000; ++k)
    ASSERT_EQ(row1000[k] + row1000[k + 1], row1001[k + 1]) << "k=" << k;
  const std::string c = binomial(1000, 500).to_string();
  EXPECT_EQ(c.size(), 300u);  // C(1000,500) ~ 2.70e299
  EXPECT_EQ(c.substr(0, 20), "27028824094543656951");
  EXPECT_EQ(binomial(1000, 500), row1000[500]);
  EXPECT_FALSE(binomial(1000, 500).to_u64().has_value());
  EXPECT_EQ(binomial(5000, 2500).decimal_digits(), 1504u);
  EXPECT_EQ(binomial(5000, 2500), binomial_row(5000)[2500]);
}

// ---- Shares ---------------------------------------------------------------------------------

TEST(PathShares, PaperNumbersFor54Blocks) {
  const PathDistribution d = path_lengths(54);
  ASSERT_EQ(d.lengths.size(), 55u);
  EXPECT_EQ(d.lengths[27].count, "1946939425648112");
  EXPECT_EQ(d.total, "18014398509481984");
  // The paper's E5: lengths 19-35 hold 98.0% (0.98017); 5-17 hold 0.45% (0.0045367).
  EXPECT_NEAR(d.share_between(19, 35), 0.98017, 5e-6);
  EXPECT_NEAR(d.share_between(5, 17), 0.0045367, 5e-8);
  BigUint mid = 0, low = 0;
  for (int k = 19; k <= 35; ++k) mid += binomial(54, k);
  for (int k = 5; k <= 17; ++k) low += binomial(54, k);
  EXPECT_NEAR(d.share_between(19, 35), ratio_pow2(mid, 54), 1e-14);
  EXPECT_NEAR(d.share_between(5, 17) / ratio_pow2(low, 54), 1.0, 1e-13);
  EXPECT_DOUBLE_EQ(d.mean, 27.0);
  EXPECT_DOUBLE_EQ(d.lengths[0].share, std::ldexp(1.0, -54));
}

TEST(PathShares, MatchExactRatiosN1000) {
  const std::vector<BigUint> row = binomial_row(1000);
  double worst = 0;
  int checked = 0;
  for (int k = 0; k <= 1000; ++k) {
    const double ref = ratio_pow2(row[k], 1000);
    if (ref < 1e-290) continue;  // subnormal shares have fewer significant bits
    const double got = binomial_share(1000, k);
    worst = std::max(worst, std::fabs(got / ref - 1));
    ++checked;
  }
  EXPECT_GT(checked, 900);
  EXPECT_LT(worst, 1e-14);  // lgamma differences would give ~2e-12 here
}

TEST(PathShares, MatchExactRatiosN5000) {
  const std::vector<BigUint> row = binomial_row(5000);
  for (int k = 1500; k <= 3500; k += 125) {
    const double ref = ratio_pow2(row[k], 5000);
    ASSERT_GT(ref, 1e-290);
    EXPECT_NEAR(binomial_share(5000, k) / ref, 1.0, 1e-14) << "k=" << k;
  }
}

TEST(PathShares, SumToOneAndMean) {
  for (int n : {1, 7, 54, 1000, 5000, 100000}) {
    const PathDistribution d = path_lengths(n);
    long double sum = 0, mean = 0;
    for (const LengthRow& r : d.lengths) {
      ASSERT_TRUE(std::isfinite(r.share)) << "n=" << n << " k=" << r.length;
      ASSERT_GE(r.share, 0.0);
      sum += r.share;
      mean += r.length * static_cast<long double>(r.share);
    }
    EXPECT_NEAR(static_cast<double>(sum), 1.0, 1e-12) << "n=" << n;
    EXPECT_NEAR(static_cast<double>(mean) / (n / 2.0), 1.0, 1e-12) << "n=" << n;
    EXPECT_DOUBLE_EQ(d.mean, n / 2.0);
  }
}

TEST(PathShares, UnderflowIsZeroNotNaN) {
  EXPECT_EQ(binomial_share(5000, 0), 0.0);
  EXPECT_EQ(binomial_share(5000, 3), 0.0);
  EXPECT_DOUBLE_EQ(log_binomial_share(5000, 0), -5000 * std::log(2.0));
  EXPECT_NEAR(log_binomial_share(5000, 3), std::log(binomial(5000, 3).to_u64().value() + 0.0) -
                                               5000 * std::log(2.0), 1e-9);
  EXPECT_EQ(binomial_share(10, 11), 0.0);
  EXPECT_TRUE(std::isinf(log_binomial_share(10, -1)));
  EXPECT_DOUBLE_EQ(binomial_share(1, 0), 0.5);
}

// ---- Shortest range -------------------------------------------------------------------------

TEST(ShortestRange, NinetyFivePercentOf54) {
  const PathDistribution d = path_lengths(54);
  EXPECT_EQ(d.range95, std::make_pair(20, 34));
  EXPECT_EQ(d.range, d.range95);
  EXPECT_GE(d.share_between(20, 34), 0.95);
  // No window of 14 lengths or fewer reaches 95% (exact integers).
  const BigUint needed = [] {
    BigUint t = pow2(54);  // 95% of 2^54 = 2^54 * 19 / 20
    t.mul_small(19);
    t.div_small(20);
    return t;
  }();
  for (int a = 0; a + 13 <= 54; ++a) {
    BigUint window = 0;
    for (int k = a; k <= a + 13; ++k) window += binomial(54, k);
    EXPECT_TRUE(window < needed) << "a=" << a;
  }
  PathOptions all(54);
  all.mass = 1.0;
  EXPECT_EQ(path_lengths(all).range, std::make_pair(0, 54));
}

TEST(ShortestRange, TiesPreferLargerMassThenLeft) {
  const std::vector<double> v = {0.1, 0.2, 0.05, 0.6, 0.05};
  EXPECT_EQ(shortest_range(v, 0.6), std::make_pair(3, 3));
  EXPECT_EQ(shortest_range(v, 0.65), std::make_pair(2, 3));  // [2,3] and [3,4] both hold 0.65
  EXPECT_EQ(shortest_range(v, 0.7), std::make_pair(1, 3));   // 0.85 beats [2,4] with 0.70
  EXPECT_EQ(shortest_range(v, 1.0), std::make_pair(0, 4));
  EXPECT_EQ(shortest_range({0.0, 0.5, 0.5, 0.0}, 1.0), std::make_pair(1, 2));
  EXPECT_EQ(shortest_range({0.5, 0.5}, 0.5), std::make_pair(0, 0));
  EXPECT_NE(user_error_of([&] { shortest_range(v, 0.0); }).find("--mass"), std::string::npos);
}

// ---- Deletion (E8) --------------------------------------------------------------------------

TEST(RemainingShare, PaperE8) {
  // The paper's E8, x = 11 of n = 54: 0.80 (d=1), 0.080 (d=10), 0.0030 (d=20).
  EXPECT_NEAR(remaining_share(54, 1, 11), 43.0 / 54.0, 1e-15);
  EXPECT_NEAR(remaining_share(54, 10, 11), 0.080, 5e-4);
  EXPECT_NEAR(remaining_share(54, 20, 11), 0.0030, 5e-5);
  for (int d : {1, 10, 20, 43}) {
    const double exact = static_cast<double>(choose_u64(54 - d, 11)) /
                         static_cast<double>(choose_u64(54, 11));
    EXPECT_NEAR(remaining_share(54, d, 11) / exact, 1.0, 1e-14) << "d=" << d;
  }
  EXPECT_EQ(remaining_share(54, 44, 11), 0.0);
  EXPECT_EQ(remaining_share(54, 10, 0), 1.0);
  EXPECT_EQ(remaining_share(54, 0, 30), 1.0);
  EXPECT_EQ(remaining_share(54, 54, 0), 1.0);
}

TEST(RemainingShare, TableAgreesWithDirectFormula) {
  PathOptions o(54);
  o.deleted = 10;
  const PathDistribution d = path_lengths(o);
  ASSERT_EQ(d.lengths.size(), 55u);
  EXPECT_NEAR(d.lengths[11].kept_share, 0.080, 5e-4);
  EXPECT_EQ(d.lengths[11].kept_count, binomial(44, 11).to_string());
  EXPECT_EQ(d.lengths[45].kept_count, "0");
  EXPECT_EQ(d.lengths[45].kept_share, 0.0);
  EXPECT_EQ(d.remaining_total, "17592186044416");  // 2^44 paths survive
  EXPECT_DOUBLE_EQ(d.remaining_mean, 22.0);
  for (int x = 0; x <= 54; ++x)
    EXPECT_NEAR(d.lengths[x].kept_share, remaining_share(54, 10, x),
                1e-14 * remaining_share(54, 10, x)) << "x=" << x;
  EXPECT_EQ(d.range95, std::make_pair(20, 34));  // still the intact network's range
  EXPECT_EQ(d.remaining_range95, path_lengths(44).range95);
}

TEST(RemainingShare, LargeDeletionsCompose) {
  // Deleting 400 = deleting 200, then 200 more of the remaining 800.
  for (int x : {1, 50, 300, 599}) {
    const double whole = remaining_share(1000, 400, x);
    const double steps = remaining_share(1000, 200, x) * remaining_share(800, 200, x);
    EXPECT_NEAR(whole / steps, 1.0, 1e-12) << "x=" << x;
  }
  PathOptions o(1000);
  o.deleted = 400;
  const PathDistribution d = path_lengths(o);
  EXPECT_NEAR(d.lengths[300].kept_share / remaining_share(1000, 400, 300), 1.0, 1e-12);
  EXPECT_EQ(d.lengths[601].kept_share, 0.0);
}

// ---- Short-path training (E7) ---------------------------------------------------------------

TEST(ActiveBlocks, TwentyThreeOf54) {
  PathOptions o(54);
  o.active_blocks = 23;
  const PathDistribution d = path_lengths(o);
  EXPECT_EQ(d.m, 23);
  ASSERT_EQ(d.lengths.size(), 24u);
  EXPECT_DOUBLE_EQ(d.mean, 11.5);
  EXPECT_EQ(d.total, "8388608");  // 2^23 paths per mini-batch
  EXPECT_EQ(d.network_total, "18014398509481984");
  EXPECT_EQ(d.lengths[11].count, "1352078");
  EXPECT_DOUBLE_EQ(d.lengths[11].share, 1352078.0 / 8388608.0);
  EXPECT_DOUBLE_EQ(d.lengths[12].share, d.lengths[11].share);
  // Share of the network's length-11 paths trained in one batch: C(23,11) / C(54,11).
  EXPECT_NEAR(d.lengths[11].kept_share / (1352078.0 / choose_u64(54, 11)), 1.0, 1e-14);
  EXPECT_EQ(d.lengths[0].kept_share, 1.0);
  EXPECT_NEAR(d.share_between(0, 23), 1.0, 1e-15);
  EXPECT_EQ(d.range95, path_lengths(23).range95);
  const nlohmann::json j = d.to_json();
  EXPECT_EQ(j["n"], 54);
  EXPECT_EQ(j["active_blocks"], 23);
  EXPECT_EQ(j["lengths"].size(), 24u);
  EXPECT_TRUE(j["lengths"][11].contains("trained_share"));
}

// ---- Options and JSON -----------------------------------------------------------------------

TEST(PathOptionsCheck, BadInputsNameTheFlag) {
  auto run = [](int n, int d, int k, double mass) {
    return user_error_of([&] {
      PathOptions o(n);
      o.deleted = d;
      o.active_blocks = k;
      o.mass = mass;
      path_lengths(o);
    });
  };
  EXPECT_NE(run(0, 0, 0, 0.95).find("--blocks"), std::string::npos);
  EXPECT_NE(run(100001, 0, 0, 0.95).find("--blocks"), std::string::npos);
  EXPECT_NE(run(54, 55, 0, 0.95).find("--delete 55"), std::string::npos);
  EXPECT_NE(run(54, -1, 0, 0.95).find("--delete"), std::string::npos);
  EXPECT_NE(run(54, 0, 55, 0.95).find("--active-blocks 55"), std::string::npos);
  EXPECT_NE(run(54, 3, 23, 0.95).find("--active-blocks"), std::string::npos);
  EXPECT_NE(run(54, 0, 0, 0.0).find("--mass"), std::string::npos);
  EXPECT_NE(run(54, 0, 0, 1.5).find("--mass"), std::string::npos);
  EXPECT_EQ(run(54, 54, 0, 1.0), "");
  EXPECT_NE(user_error_of([] { remaining_share(54, 60, 1); }).find("--delete"), std::string::npos);
}

TEST(PathJson, Schema) {
  const nlohmann::json j = path_lengths(54).to_json();
  EXPECT_EQ(j["n"], 54);
  EXPECT_EQ(j["deleted"], 0);
  ASSERT_EQ(j["lengths"].size(), 55u);
  EXPECT_EQ(j["lengths"][0]["length"], 0);
  EXPECT_EQ(j["lengths"][0]["count"], "1");
  EXPECT_EQ(j["lengths"][27]["count"], "1946939425648112");
  EXPECT_DOUBLE_EQ(j["lengths"][0]["share"].get<double>(), std::ldexp(1.0, -54));
  EXPECT_EQ(j["range95"], nlohmann::json::array({20, 34}));
  EXPECT_EQ(j["total"], "18014398509481984");
  EXPECT_DOUBLE_EQ(j["mean"].get<double>(), 27.0);
  EXPECT_FALSE(j["lengths"][0].contains("remaining_share"));

  PathOptions o(54);
  o.deleted = 10;
  const nlohmann::json jd = path_lengths(o).to_json();
  EXPECT_EQ(jd["deleted"], 10);
  EXPECT_NEAR(jd["lengths"][11]["remaining_share"].get<double>(), 0.080, 5e-4);
  EXPECT_EQ(jd["remaining_total"], "17592186044416");

  // Above kMaxExactCountBlocks the table carries log10 of the count instead of its digits.
  const nlohmann::json big = path_lengths(kMaxExactCountBlocks + 1).to_json();
  EXPECT_FALSE(big["lengths"][0].contains("count"));
  EXPECT_NEAR(big["lengths"][1]["log10_count"].get<double>(),
              std::log10(kMaxExactCountBlocks + 1.0), 1e-12);
}

// ---- util.cpp -------------------------------------------------------------------------------

class UtilFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("unravel_test_util_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::filesystem::path dir_;
};

TEST_F(UtilFiles, AtomicWriteReplacesAndLeavesNoTemp) {
  const std::string path = (dir_ / "a.txt").string();
  unravel::write_file_atomic(path, "first version, longer\n");
  EXPECT_EQ(unravel::read_text_file(path), "first version, longer\n");
  unravel::write_file_atomic(path, "second");
  EXPECT_EQ(unravel::read_text_file(path), "second");
  EXPECT_EQ(entries(), std::vector<std::string>{"a.txt"});

  const std::string bad = (dir_ / "no_such_dir" / "b.txt").string();
  const std::string msg = user_error_of([&] { unravel::write_file_atomic(bad, "x"); });
  EXPECT_NE(msg.find(bad), std::string::npos) << msg;
  EXPECT_EQ(entries(), std::vector<std::string>{"a.txt"});
}

TEST_F(UtilFiles, JsonRoundTripAndErrorsNameTheFile) {
  const std::string path = (dir_ / "r.json").string();
  unravel::write_json_atomic(path, {{"n", 54}, {"range95", {20, 34}}});
  const std::string text = unravel::read_text_file(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\n  \"n\": 54"), std::string::npos) << text;  // indent 2
  const nlohmann::json j = unravel::read_json_file(path);
  EXPECT_EQ(j["n"], 54);
  EXPECT_EQ(j["range95"][1], 34);

  const std::string missing = (dir_ / "missing.json").string();
  std::string msg = user_error_of([&] { unravel::read_json_file(missing); });
  EXPECT_NE(msg.find("cannot read " + missing), std::string::npos) << msg;

  const std::string broken = (dir_ / "broken.json").string();
  std::ofstream(broken) << "{\"n\": 54,";
  msg = user_error_of([&] { unravel::read_json_file(broken); });
  EXPECT_NE(msg.find(broken + ": invalid JSON"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST_F(UtilFiles, MakeDirsAndExists) {
  const std::string nested = (dir_ / "x" / "y" / "z").string();
  EXPECT_FALSE(unravel::path_exists(nested));
  unravel::make_dirs(nested);
  EXPECT_TRUE(std::filesystem::is_directory(nested));
  unravel::make_dirs(nested);  // already there: fine
  const std::string file = (dir_ / "plain").string();
  unravel::write_file_atomic(file, "");
  EXPECT_TRUE(unravel::path_exists(file));
  const std::string below = file + "/sub";
  EXPECT_NE(user_error_of([&] { unravel::make_dirs(below); }).find(below), std::string::npos);
}

TEST(Util, DurationsTimesAndBuildInfo) {
  EXPECT_EQ(unravel::format_duration(12.34), "12.3s");
  EXPECT_EQ(unravel::format_duration(185), "3m05s");
  EXPECT_EQ(unravel::format_duration(3720), "1h02m");
  EXPECT_TRUE(std::regex_match(unravel::iso_time_now(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  const nlohmann::json b = unravel::build_info();
  EXPECT_FALSE(b["unravel"].get<std::string>().empty());
  EXPECT_FALSE(b["git_commit"].get<std::string>().empty());
  EXPECT_FALSE(b["compiler"].get<std::string>().empty());
  EXPECT_GE(b["cxx_standard"].get<long>(), 201703L);
}

TEST(Util, ProgressLines) {
  unravel::Progress quiet("train", 5000, "images", /*interval_s=*/3600);
  testing::internal::CaptureStderr();
  quiet.update(1234);  // inside the interval: nothing
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");

  unravel::Progress p("train", 5000, "images", /*interval_s=*/0);
  testing::internal::CaptureStderr();
  p.update(1234, "loss 0.5");
  p.finish();
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_search(
      out, std::regex(R"(^\[train\] 1234/5000 images  [0-9.]+ images/s  ETA \S+  loss 0\.5\n)")))
      << out;
  EXPECT_NE(out.find("done in"), std::string::npos) << out;

  unravel::Progress unknown("eval", 0, "batches", /*interval_s=*/0);
  testing::internal::CaptureStderr();
  unknown.update(7);
  const std::string u = testing::internal::GetCapturedStderr();
  EXPECT_EQ(u.rfind("[eval] 7 batches  ", 0), 0u) << u;
  EXPECT_EQ(u.find("ETA"), std::string::npos) << u;
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
// Whether mallinfo2() describes the malloc in use: a sanitizer's allocator (AddressSanitizer's)
// replaces glibc's, whose counters then do not move when memory is allocated.
bool mallinfo_sees_malloc() {
  const size_t before = mallinfo2().uordblks;
  void* volatile p = std::malloc(4096);
  const size_t during = mallinfo2().uordblks;
  std::free(p);
  return during >= before + 4096;
}
#endif

// keep_freed_memory(): a 64 MiB block comes from the heap (no mmap()ed bytes appear) and stays in
// the process after free (the heap is not trimmed), so the next one reuses it. Under a sanitizer
// glibc's malloc is not the one in use: the test says so (and fails if that happens elsewhere).
TEST(Util, KeepFreedMemoryServesLargeBlocksFromTheHeap) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) GTEST_SKIP() << "GLIBC_TUNABLES sets malloc";
  if (!mallinfo_sees_malloc()) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer's allocator replaces glibc's malloc: mallinfo2() cannot see it and "
                    "keep_freed_memory() has nothing to tune";
#else
    FAIL() << "mallinfo2() does not see malloc, in a build without AddressSanitizer";
#endif
  }
  unravel::keep_freed_memory();
  const size_t size = size_t{64} << 20;
  const struct mallinfo2 before = mallinfo2();
  char* p = static_cast<char*>(std::malloc(size));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, size);
  const struct mallinfo2 during = mallinfo2();
  EXPECT_EQ(during.hblkhd, before.hblkhd) << "the block was mmap()ed";
  EXPECT_GE(during.arena, before.arena + size - (size_t{1} << 20));
  std::free(p);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_EQ(after.arena, during.arena) << "the heap was trimmed";
  char* q = static_cast<char*>(std::malloc(size));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(mallinfo2().arena, during.arena) << "a second block did not reuse the first";
  std::free(q);
#else
  GTEST_SKIP() << "not glibc >= 2.33 (keep_freed_memory is a no-op there)";
#endif
}

}  // namespace
