// The project's one generator (core/random.h): golden values pin every draw, so a seed gives the
// same batches, augmentations, sampled training plans, sweeps and paths on every platform.
// The golden numbers come from an independent Python implementation of the same definitions;
// the first three SplitMix64 outputs for state 0 are those of the published reference code.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/random.h"

namespace unravel {
namespace {

TEST(Random, SplitMix64MatchesTheReferenceSequence) {
  uint64_t state = 0;
  EXPECT_EQ(splitmix64(state), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(splitmix64(state), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(splitmix64(state), 0x06c45d188009454fULL);
}

TEST(Random, StreamDerivationIsPinned) {
  EXPECT_EQ(mix(0, 0), 0x988ec8e37f1ff94fULL);
  EXPECT_EQ(mix(42, 1), 0xa6d546135fe816b3ULL);
  EXPECT_EQ(mix(mix(7, 3), 1), 0xe08f2d4de4e4cb9eULL);  // (seed 7, epoch 3, stream 1)
}

TEST(Random, BoundedUniformAndPermutationDrawsArePinned) {
  Rng r = Rng::stream(42, 1);
  const std::vector<uint64_t> expect{0, 6, 1, 6, 2, 0, 2, 7};
  for (uint64_t e : expect) EXPECT_EQ(r.below(10), e);
  Rng u = Rng::stream(42, 2);
  EXPECT_DOUBLE_EQ(u.uniform(), 0.7130163486977789);
  EXPECT_DOUBLE_EQ(u.uniform(), 0.9858220467488633);
  EXPECT_DOUBLE_EQ(u.uniform(), 0.8676756500158996);
  Rng p(123);
  EXPECT_EQ(permutation(8, p), (std::vector<int64_t>{6, 0, 7, 2, 1, 4, 5, 3}));
}

// Draw frequencies within 5 binomial standard deviations: below() has no modulo bias and
// between() covers both ends; sample_without_replacement gives distinct elements of the pool,
// each with rate k/n.
TEST(Random, DrawsAreUniform) {
  Rng r(9);
  const int draws = 60000, n = 6;
  std::vector<int> hist(n, 0);
  for (int i = 0; i < draws; ++i) ++hist[static_cast<size_t>(r.between(-2, 3) + 2)];
  const double p = 1.0 / n, sd = std::sqrt(draws * p * (1 - p));
  for (int c : hist) EXPECT_NEAR(c, draws * p, 5 * sd);

  std::vector<int> pool(10);
  std::iota(pool.begin(), pool.end(), 100);
  std::vector<int> chosen(10, 0);
  const int sets = 20000, k = 3;
  for (int i = 0; i < sets; ++i) {
    auto s = sample_without_replacement(pool, k, r);
    ASSERT_EQ(s.size(), 3u);
    std::sort(s.begin(), s.end());
    ASSERT_TRUE(std::adjacent_find(s.begin(), s.end()) == s.end());
    for (int v : s) ++chosen[static_cast<size_t>(v - 100)];
  }
  const double q = 0.3, sdq = std::sqrt(sets * q * (1 - q));
  for (int c : chosen) EXPECT_NEAR(c, sets * q, 5 * sdq);

  double sum = 0, sum2 = 0;
  for (int i = 0; i < draws; ++i) {
    const double x = r.normal();
    sum += x;
    sum2 += x * x;
  }
  EXPECT_NEAR(sum / draws, 0.0, 5.0 / std::sqrt(draws));
  EXPECT_NEAR(sum2 / draws, 1.0, 5.0 * std::sqrt(2.0 / draws));
}

}  // namespace
}  // namespace unravel
