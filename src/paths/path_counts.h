// Exact path arithmetic of E5, E7, E8 (docs/experiments.md): a network of n residual blocks has
// C(n,k) paths of length k out of 2^n; deleting d blocks leaves C(n-d,k) of them; training with K
// active blocks per mini-batch sees Binomial(K, 1/2) lengths. Counts are exact big integers,
// shares are computed in log space (accurate to ~1e-15 relative for any n). Torch-free.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace unravel::paths {

constexpr int kMaxBlocks = 100000;          // largest n the path tables accept
constexpr int kMaxExactCountBlocks = 5000;  // above this, tables carry log10(count), not digits

// ---- Exact unsigned integers ----------------------------------------------------------------

// Unsigned big integer in base 1e9 limbs: just enough arithmetic for C(n,k) and 2^n.
class BigUint {
 public:
  BigUint(uint64_t value = 0);  // NOLINT: implicit on purpose, BigUint x = 5;

  BigUint& operator+=(const BigUint& other);
  BigUint& mul_small(uint32_t factor);
  uint32_t div_small(uint32_t divisor);  // divides in place, returns the remainder; divisor > 0

  std::string to_string() const;          // decimal, no leading zeros ("0" for zero)
  std::optional<uint64_t> to_u64() const;  // the value when it fits 64 bits
  size_t decimal_digits() const;
  double log10() const;                    // -inf for zero
  bool is_zero() const { return limbs_.empty(); }

  bool operator==(const BigUint& o) const { return limbs_ == o.limbs_; }
  bool operator!=(const BigUint& o) const { return !(*this == o); }
  bool operator<(const BigUint& o) const;

 private:
  static constexpr uint32_t kBase = 1000000000u;
  std::vector<uint32_t> limbs_;  // little-endian, no trailing zero limbs
  void trim();
};

BigUint operator+(BigUint a, const BigUint& b);
BigUint pow2(int n);               // 2^n, n >= 0
BigUint binomial(int n, int k);    // C(n,k), 0 when k < 0 or k > n
std::vector<BigUint> binomial_row(int n);  // C(n,0..n)

// ---- Shares (log space) ---------------------------------------------------------------------

// log(C(n,k) / 2^n), -inf when k < 0 or k > n. Loader's saddle-point form: no large cancelling
// terms, so the result is accurate to a few ulps of the share itself for every n.
double log_binomial_share(int n, int k);
// C(n,k) / 2^n: the share of paths of length k among n blocks; 0 where it underflows double.
double binomial_share(int n, int k);
// log C(n,k) = log_binomial_share(n,k) + n log 2; -inf when k < 0 or k > n.
inline double log_binomial(int n, int k) { return log_binomial_share(n, k) + n * 0.69314718055994530942; }
// C(n-d,x) / C(n,x): the share of the paths of length x that survive deleting d blocks (E8).
double remaining_share(int n, int d, int x);
// Shortest contiguous range [a,b] of indices whose values sum to >= mass (ties: larger sum,
// then leftmost). `shares` must be non-negative; mass in (0,1]; mass 1 gives the whole support.
std::pair<int, int> shortest_range(const std::vector<double>& shares, double mass);

// ---- Tables ---------------------------------------------------------------------------------

struct PathOptions {
  explicit PathOptions(int blocks) : blocks(blocks) {}
  int blocks;             ///< n, the residual blocks of the network (--blocks)
  int deleted = 0;        ///< d blocks deleted at test time (E8, --delete); 0 = intact
  int active_blocks = 0;  ///< K active blocks per mini-batch (E7, --active-blocks); 0 = all run
  double mass = 0.95;     ///< probability mass of the reported shortest range (--mass)
};

// Throws UserError naming the flag: --blocks outside 1..kMaxBlocks, --delete outside 0..n,
// --active-blocks outside 0..n (0 = off), both --delete and --active-blocks, --mass outside (0,1].
void validate(const PathOptions& options);

struct LengthRow {
  int length = 0;
  std::string count;      ///< exact decimal count ("" when too many blocks, see log10_count)
  double log10_count = 0; ///< log10 of the count (-inf for 0)
  double share = 0;       ///< count / total paths
  /// deleted > 0: C(n-d,k)/C(n,k), the share of these paths left (E8);
  /// active_blocks > 0: C(K,k)/C(n,k), the share of the network's length-k paths trained in
  /// one mini-batch; otherwise 1.
  double kept_share = 1;
  std::string kept_count; ///< deleted > 0: exact C(n-d,k) (same rules as `count`)
};

// The distribution of path lengths. Without options: the n-block network (rows 0..n).
// With deleted = d: rows 0..n of the intact network plus what survives per length.
// With active_blocks = K: the network of one short-path training batch (rows 0..K).
struct PathDistribution {
  PathOptions options{1};
  int m = 0;                      ///< blocks whose paths the rows count: n, or K when active
  std::vector<LengthRow> lengths; ///< index = length
  std::string total;              ///< 2^m, exact ("" above kMaxExactCountBlocks)
  double mean = 0;                ///< sum of length x share (= m/2)
  std::pair<int, int> range95;    ///< shortest range holding 95% of the paths
  std::pair<int, int> range;      ///< shortest range holding options.mass of the paths
  std::string network_total;      ///< 2^n, all paths of the network (= total unless active)
  // deleted > 0: the surviving network of n-d blocks (its lengths are Binomial(n-d, 1/2)).
  std::string remaining_total;    ///< 2^(n-d)
  double remaining_mean = 0;      ///< (n-d)/2
  std::pair<int, int> remaining_range95{0, 0};

  std::vector<double> shares() const;
  double share_between(int a, int b) const;  // sum of shares of lengths a..b (clamped)
  // {"n", "deleted", "lengths": [{"length", "count", "share", ...}], "mean", "range95", ...};
  // see path_counts.cpp for every field.
  nlohmann::json to_json() const;
};

PathDistribution path_lengths(const PathOptions& options);
inline PathDistribution path_lengths(int n) { return path_lengths(PathOptions(n)); }

}  // namespace unravel::paths
