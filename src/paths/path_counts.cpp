// Path counts and shares for `unravel paths` (E5, E7, E8, docs/experiments.md): exact big-integer
// binomials, binomial shares in log space after Loader (2000, "Fast and accurate computation of
// binomial probabilities"), surviving shares after deletion, and the shortest mass range.
#include "paths/path_counts.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "core/errors.h"

namespace unravel::paths {

// ---- BigUint --------------------------------------------------------------------------------

BigUint::BigUint(uint64_t value) {
  while (value > 0) {
    limbs_.push_back(static_cast<uint32_t>(value % kBase));
    value /= kBase;
  }
}

void BigUint::trim() {
  while (!limbs_.empty() && limbs_.back() == 0) limbs_.pop_back();
}

BigUint& BigUint::operator+=(const BigUint& other) {
  if (limbs_.size() < other.limbs_.size()) limbs_.resize(other.limbs_.size(), 0);
  uint32_t carry = 0;
  for (size_t i = 0; i < limbs_.size(); ++i) {
    uint32_t sum = limbs_[i] + carry + (i < other.limbs_.size() ? other.limbs_[i] : 0);
    carry = sum >= kBase ? 1 : 0;  // limbs < 1e9, so the sum stays below 2^32
    limbs_[i] = carry ? sum - kBase : sum;
    if (!carry && i >= other.limbs_.size()) break;
  }
  if (carry) limbs_.push_back(carry);
  return *this;
}

BigUint operator+(BigUint a, const BigUint& b) { return a += b; }

BigUint& BigUint::mul_small(uint32_t factor) {
  if (factor == 0) {
    limbs_.clear();
    return *this;
  }
  uint64_t carry = 0;
  for (uint32_t& limb : limbs_) {
    uint64_t cur = static_cast<uint64_t>(limb) * factor + carry;  // < 2^63
    limb = static_cast<uint32_t>(cur % kBase);
    carry = cur / kBase;
  }
  while (carry > 0) {
    limbs_.push_back(static_cast<uint32_t>(carry % kBase));
    carry /= kBase;
  }
  return *this;
}

uint32_t BigUint::div_small(uint32_t divisor) {
  if (divisor == 0) throw std::invalid_argument("BigUint::div_small: division by zero");
  uint64_t rem = 0;
  for (size_t i = limbs_.size(); i-- > 0;) {
    uint64_t cur = rem * kBase + limbs_[i];  // rem < divisor < 2^32, so cur < 2^62
    limbs_[i] = static_cast<uint32_t>(cur / divisor);
    rem = cur % divisor;
  }
  trim();
  return static_cast<uint32_t>(rem);
}

std::string BigUint::to_string() const {
  if (limbs_.empty()) return "0";
  std::string out = std::to_string(limbs_.back());
  for (size_t i = limbs_.size() - 1; i-- > 0;) {
    std::string part = std::to_string(limbs_[i]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

std::optional<uint64_t> BigUint::to_u64() const {
  unsigned __int128 value = 0;
  for (size_t i = limbs_.size(); i-- > 0;) {
    value = value * kBase + limbs_[i];
    if (value > std::numeric_limits<uint64_t>::max()) return std::nullopt;
  }
  return static_cast<uint64_t>(value);
}

size_t BigUint::decimal_digits() const {
  if (limbs_.empty()) return 1;
  return 9 * (limbs_.size() - 1) + std::to_string(limbs_.back()).size();
}

double BigUint::log10() const {
  if (limbs_.empty()) return -std::numeric_limits<double>::infinity();
  const size_t n = limbs_.size();
  double top = limbs_[n - 1];
  if (n == 1) return std::log10(top);
  top = top * kBase + limbs_[n - 2];
  return std::log10(top) + 9.0 * static_cast<double>(n - 2);
}

bool BigUint::operator<(const BigUint& o) const {
  if (limbs_.size() != o.limbs_.size()) return limbs_.size() < o.limbs_.size();
  for (size_t i = limbs_.size(); i-- > 0;) {
    if (limbs_[i] != o.limbs_[i]) return limbs_[i] < o.limbs_[i];
  }
  return false;
}

BigUint pow2(int n) {
  if (n < 0) throw std::invalid_argument("pow2: negative exponent");
  BigUint r = 1;
  for (; n >= 30; n -= 30) r.mul_small(1u << 30);
  r.mul_small(1u << n);
  return r;
}

BigUint binomial(int n, int k) {
  if (k < 0 || k > n) return 0;
  k = std::min(k, n - k);
  BigUint r = 1;
  // r = C(n, i) -> C(n, i+1) = C(n, i) * (n - i) / (i + 1), exact at every step.
  for (int i = 0; i < k; ++i) {
    r.mul_small(static_cast<uint32_t>(n - i));
    [[maybe_unused]] uint32_t rem = r.div_small(static_cast<uint32_t>(i + 1));
    assert(rem == 0);
  }
  return r;
}

std::vector<BigUint> binomial_row(int n) {
  if (n < 0) throw std::invalid_argument("binomial_row: negative n");
  std::vector<BigUint> row;
  row.reserve(static_cast<size_t>(n) + 1);
  row.emplace_back(1);
  for (int k = 0; k < n; ++k) {
    BigUint next = row.back();
    next.mul_small(static_cast<uint32_t>(n - k));
    next.div_small(static_cast<uint32_t>(k + 1));
    row.push_back(std::move(next));
  }
  return row;
}

// ---- Shares in log space --------------------------------------------------------------------

namespace {

using ld = long double;
constexpr ld kLn2 = 0.693147180559945309417232121458176568L;
constexpr ld kLn2Pi = 1.837877066409345483560659472811235279L;  // log(2*pi)

// stirlerr(n) = log(n!) - log(sqrt(2 pi n) (n/e)^n), the error of Stirling's formula, n >= 1.
ld stirlerr(int n) {
  if (n <= 15) {
    ld fact = 1;  // n! is exact in long double for n <= 15
    for (int i = 2; i <= n; ++i) fact *= i;
    const ld x = n;
    return std::log(fact) - (x + 0.5L) * std::log(x) + x - 0.5L * kLn2Pi;
  }
  // Asymptotic series 1/(12n) - 1/(360n^3) + 1/(1260n^5) - ...; enough terms for n > 15.
  constexpr ld s0 = 1.0L / 12, s1 = 1.0L / 360, s2 = 1.0L / 1260, s3 = 1.0L / 1680,
               s4 = 1.0L / 1188, s5 = 691.0L / 360360;
  const ld x = n, xx = x * x;
  return (s0 - (s1 - (s2 - (s3 - (s4 - s5 / xx) / xx) / xx) / xx) / xx) / x;
}

// bd0(x, m) = x log(x/m) + m - x, computed without cancellation when x is close to m.
ld bd0(ld x, ld m) {
  if (std::fabs(x - m) < 0.1L * (x + m)) {
    ld v = (x - m) / (x + m);
    ld s = (x - m) * v;
    ld ej = 2 * x * v;
    const ld v2 = v * v;
    for (int j = 1; j < 1000; ++j) {
      ej *= v2;
      ld s1 = s + ej / (2 * j + 1);
      if (s1 == s) return s1;
      s = s1;
    }
    return s;
  }
  return x * std::log(x / m) + m - x;
}

ld log_share_ld(int n, int k) {
  if (n < 0 || k < 0 || k > n) return -std::numeric_limits<ld>::infinity();
  if (k == 0 || k == n) return -static_cast<ld>(n) * kLn2;
  const ld half = static_cast<ld>(n) / 2;
  const ld lc = stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(k, half) - bd0(n - k, half);
  // log(2 pi k (n-k) / n)
  const ld lf = kLn2Pi + std::log(static_cast<ld>(k)) +
                std::log1p(-static_cast<ld>(k) / static_cast<ld>(n));
  return lc - 0.5L * lf;
}

void check_blocks(int n) {
  if (n < 1 || n > kMaxBlocks)
    throw UserError("--blocks must be between 1 and " + std::to_string(kMaxBlocks) + " (got " +
                    std::to_string(n) + ")");
}

void check_deleted(int n, int d) {
  if (d < 0 || d > n)
    throw UserError("--delete " + std::to_string(d) + " must be between 0 and the " +
                    std::to_string(n) + " blocks of the network");
}

std::vector<double> shares_of(int m) {
  std::vector<double> s(static_cast<size_t>(m) + 1);
  for (int k = 0; k <= m; ++k) s[static_cast<size_t>(k)] = binomial_share(m, k);
  return s;
}

// C(n-d,x)/C(n,x) for x = 0..upto, by the recurrence r(x+1) = r(x) (n-d-x)/(n-x) in log space.
std::vector<double> kept_shares(int n, int d, int upto) {
  std::vector<double> out(static_cast<size_t>(upto) + 1, 0.0);
  ld log_r = 0;
  for (int x = 0; x <= upto && x <= n - d; ++x) {
    out[static_cast<size_t>(x)] = static_cast<double>(std::exp(log_r));
    if (x < n) log_r += std::log1p(-static_cast<ld>(d) / static_cast<ld>(n - x));
  }
  return out;
}

nlohmann::json range_json(std::pair<int, int> r) { return nlohmann::json::array({r.first, r.second}); }

}  // namespace

double log_binomial_share(int n, int k) { return static_cast<double>(log_share_ld(n, k)); }

double binomial_share(int n, int k) {
  if (n < 0 || k < 0 || k > n) return 0.0;
  if (k == 0 || k == n) return std::ldexp(1.0, -n);  // exact, 0 below the smallest subnormal
  return static_cast<double>(std::exp(log_share_ld(n, k)));
}

double remaining_share(int n, int d, int x) {
  check_blocks(n);
  check_deleted(n, d);
  if (x < 0 || x > n - d) return 0.0;
  // C(n-d,x)/C(n,x) = prod_{j<a} (1 - b/(n-j)) with a = min(d,x), b = max(d,x).
  const int a = std::min(d, x), b = std::max(d, x);
  ld log_r = 0;
  for (int j = 0; j < a; ++j) log_r += std::log1p(-static_cast<ld>(b) / static_cast<ld>(n - j));
  return static_cast<double>(std::exp(log_r));
}

std::pair<int, int> shortest_range(const std::vector<double>& shares, double mass) {
  if (!(mass > 0.0 && mass <= 1.0))
    throw UserError(fmt::format("--mass must be in (0, 1] (got {})", mass));
  if (shares.empty()) throw std::invalid_argument("shortest_range: no values");
  const int n = static_cast<int>(shares.size());
  if (mass >= 1.0) {
    int a = 0, b = n - 1;
    while (a < b && shares[static_cast<size_t>(a)] <= 0) ++a;
    while (b > a && shares[static_cast<size_t>(b)] <= 0) --b;
    return {a, b};
  }
  std::vector<ld> prefix(static_cast<size_t>(n) + 1, 0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + shares[static_cast<size_t>(i)];
  // Rounding must not decide whether a window reaches the mass, nor which tie wins.
  const ld target = static_cast<ld>(mass) * prefix[n] * (1 - 1e-13L);
  const ld tie = 1e-15L * prefix[n];
  std::pair<int, int> best{0, n - 1};
  ld best_sum = -1;
  int end = 1;  // window [a, end-1]
  for (int a = 0; a < n; ++a) {
    end = std::max(end, a + 1);
    while (end <= n && prefix[end] - prefix[a] < target) ++end;
    if (end > n) break;
    const int width = end - 1 - a, best_width = best.second - best.first;
    const ld sum = prefix[end] - prefix[a];
    if (best_sum < 0 || width < best_width || (width == best_width && sum > best_sum + tie)) {
      best = {a, end - 1};
      best_sum = sum;
    }
  }
  return best;
}

// ---- Tables ---------------------------------------------------------------------------------

void validate(const PathOptions& o) {
  check_blocks(o.blocks);
  check_deleted(o.blocks, o.deleted);
  if (o.active_blocks < 0 || o.active_blocks > o.blocks)
    throw UserError("--active-blocks " + std::to_string(o.active_blocks) +
                    " must be between 1 and the " + std::to_string(o.blocks) +
                    " blocks of the network");
  if (o.deleted > 0 && o.active_blocks > 0)
    throw UserError("--delete and --active-blocks cannot be combined");
  if (!(o.mass > 0.0 && o.mass <= 1.0))
    throw UserError(fmt::format("--mass must be in (0, 1] (got {})", o.mass));
}

PathDistribution path_lengths(const PathOptions& options) {
  validate(options);
  const int n = options.blocks, d = options.deleted, K = options.active_blocks;
  PathDistribution dist;
  dist.options = options;
  dist.m = K > 0 ? K : n;
  const int m = dist.m;

  const bool exact = m <= kMaxExactCountBlocks;
  std::vector<BigUint> counts = exact ? binomial_row(m) : std::vector<BigUint>{};
  std::vector<BigUint> kept_counts;
  if (d > 0 && n <= kMaxExactCountBlocks) kept_counts = binomial_row(n - d);
  std::vector<double> kept;
  if (d > 0) kept = kept_shares(n, d, n);
  if (K > 0) kept = kept_shares(n, n - K, K);  // C(K,k)/C(n,k): trained in one mini-batch

  dist.lengths.resize(static_cast<size_t>(m) + 1);
  for (int k = 0; k <= m; ++k) {
    LengthRow& row = dist.lengths[static_cast<size_t>(k)];
    row.length = k;
    if (exact) row.count = counts[static_cast<size_t>(k)].to_string();
    row.log10_count = static_cast<double>((log_share_ld(m, k) + m * kLn2) / std::log(10.0L));
    row.share = binomial_share(m, k);
    if (!kept.empty()) row.kept_share = kept[static_cast<size_t>(k)];
    if (!kept_counts.empty())
      row.kept_count = k <= n - d ? kept_counts[static_cast<size_t>(k)].to_string() : "0";
  }
  if (exact) dist.total = pow2(m).to_string();
  if (n <= kMaxExactCountBlocks) dist.network_total = pow2(n).to_string();
  dist.mean = m / 2.0;
  const std::vector<double> shares = dist.shares();
  dist.range95 = shortest_range(shares, 0.95);
  dist.range = shortest_range(shares, options.mass);
  if (d > 0) {
    if (n - d <= kMaxExactCountBlocks) dist.remaining_total = pow2(n - d).to_string();
    dist.remaining_mean = (n - d) / 2.0;
    dist.remaining_range95 = shortest_range(shares_of(n - d), 0.95);
  }
  return dist;
}

std::vector<double> PathDistribution::shares() const {
  std::vector<double> s;
  s.reserve(lengths.size());
  for (const LengthRow& r : lengths) s.push_back(r.share);
  return s;
}

double PathDistribution::share_between(int a, int b) const {
  a = std::max(a, 0);
  b = std::min(b, static_cast<int>(lengths.size()) - 1);
  ld sum = 0;
  for (int k = a; k <= b; ++k) sum += lengths[static_cast<size_t>(k)].share;
  return static_cast<double>(sum);
}

// Fields: n, deleted, [active_blocks], total (2^m, decimal), [network_total], lengths[] with
// length, count (decimal; log10_count instead above kMaxExactCountBlocks), share, and
// remaining_count/remaining_share (deleted > 0) or trained_share (active_blocks > 0); mean,
// range95, mass, range; deleted > 0: remaining_total, remaining_mean, remaining_range95.
nlohmann::json PathDistribution::to_json() const {
  const int d = options.deleted, K = options.active_blocks;
  nlohmann::json j;
  j["n"] = options.blocks;
  j["deleted"] = d;
  if (K > 0) j["active_blocks"] = K;
  if (!total.empty()) j["total"] = total;
  if (K > 0 && !network_total.empty()) j["network_total"] = network_total;
  nlohmann::json rows = nlohmann::json::array();
  for (const LengthRow& r : lengths) {
    nlohmann::json row = {{"length", r.length}};
    if (!r.count.empty()) {
      row["count"] = r.count;
    } else {
      row["log10_count"] = r.log10_count;
    }
    row["share"] = r.share;
    if (d > 0) {
      if (!r.kept_count.empty()) row["remaining_count"] = r.kept_count;
      row["remaining_share"] = r.kept_share;
    }
    if (K > 0) row["trained_share"] = r.kept_share;
    rows.push_back(std::move(row));
  }
  j["lengths"] = std::move(rows);
  j["mean"] = mean;
  j["range95"] = range_json(range95);
  j["mass"] = options.mass;
  j["range"] = range_json(range);
  if (d > 0) {
    if (!remaining_total.empty()) j["remaining_total"] = remaining_total;
    j["remaining_mean"] = remaining_mean;
    j["remaining_range95"] = range_json(remaining_range95);
  }
  return j;
}

}  // namespace unravel::paths
