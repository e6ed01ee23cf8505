// The project's one seeded random generator (SplitMix64) and the few draws it needs. Every
// random choice of unravel (batch order, augmentation, synthetic data, validation splits,
// sampled training plans, lesion sweeps, sampled paths) comes from here, so that a seed gives
// the same results with any compiler, standard library, libtorch version or platform (the
// standard <random> distributions are implementation-defined). Torch-free.
#pragma once
#include <cstdint>
#include <vector>

namespace unravel {

// One step of SplitMix64 (Steele, Lea & Flood 2014): advances `state`, returns 64 random bits.
uint64_t splitmix64(uint64_t& state);

// A hash of two values, used to derive independent streams: Rng(mix(seed, stream)),
// Rng(mix(mix(seed, epoch), stream)). Different (a, b) give unrelated streams.
uint64_t mix(uint64_t a, uint64_t b);

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // The stream `stream` of a user's seed: Rng(mix(seed, stream)).
  static Rng stream(uint64_t seed, uint64_t stream) { return Rng(mix(seed, stream)); }

  uint64_t next() { return splitmix64(state_); }
  // Uniform integer in [0, n), n > 0 (rejection sampling: no modulo bias).
  uint64_t below(uint64_t n);
  // Uniform integer in [lo, hi], lo <= hi.
  int64_t between(int64_t lo, int64_t hi);
  // Uniform double in [0, 1): the top 53 bits of next().
  double uniform();
  // Standard normal (Box-Muller, one draw of two uniforms per call).
  double normal();
  // A fair coin: the top bit of next().
  bool coin() { return (next() >> 63) != 0; }

 private:
  uint64_t state_;
};

// A uniform permutation of 0..n-1 (Fisher-Yates from the end).
std::vector<int64_t> permutation(int64_t n, Rng& rng);

// A uniform k-subset of `pool`, in the order drawn (partial Fisher-Yates on a copy): the first k
// elements after k swaps. k <= pool.size().
std::vector<int> sample_without_replacement(std::vector<int> pool, int k, Rng& rng);

}  // namespace unravel
