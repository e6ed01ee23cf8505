// Per-length statistics of the gradient methods (internal to src/paths): filling a length from
// single-path norms, the shares and the effective range of a result.
#pragma once
#include <limits>
#include <vector>

#include "paths/gradients.h"

namespace unravel::paths::detail {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Per-length statistics of a list of single-path norms; `population`: exact over all paths
// (population std), else a sample (sample std and standard errors).
void fill_norm_stats(LengthStats& ls, const std::vector<double>& norms, bool population);
// Length k of n blocks (forced of them without a skip): its path count, nothing measured yet.
LengthStats empty_length(int n, int k, int forced);
// A length without any path: every magnitude is zero.
void zero_length(LengthStats& ls);
// Shares and effective range from the totals (or, when some total is missing, the norms).
void finish_summary(GradientResult& r, double mass);

}  // namespace unravel::paths::detail
