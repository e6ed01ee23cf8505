// SplitMix64, stream derivation and the bounded, uniform and normal draws (see random.h).
#include "core/random.h"

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace unravel {

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t s = a;
  const uint64_t h = splitmix64(s);
  s = h ^ (b * 0xD1B54A32D192ED03ULL + 0x632BE59BD9B4E019ULL);
  return splitmix64(s);
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw std::logic_error("Rng::below(0)");
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // accept [0, limit): a multiple of n
  uint64_t x;
  do {
    x = next();
  } while (x >= limit);
  return x % n;
}

int64_t Rng::between(int64_t lo, int64_t hi) {
  if (hi < lo) throw std::logic_error("Rng::between: hi < lo");
  return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  const double u1 = 1.0 - uniform(), u2 = uniform();  // u1 in (0, 1]: log is finite
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::vector<int64_t> permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

std::vector<int> sample_without_replacement(std::vector<int> pool, int k, Rng& rng) {
  if (k < 0 || static_cast<size_t>(k) > pool.size())
    throw std::logic_error("sample_without_replacement: k outside [0, pool size]");
  for (int i = 0; i < k; ++i) {
    const size_t j = static_cast<size_t>(i) + rng.below(pool.size() - static_cast<size_t>(i));
    std::swap(pool[static_cast<size_t>(i)], pool[j]);
  }
  pool.resize(static_cast<size_t>(k));
  return pool;
}

}  // namespace unravel
