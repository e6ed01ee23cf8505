// Summary statistics used by every report: mean, median, standard deviations and Spearman's rank
// correlation. Torch-free. Which std each output reports: lesion summaries (`unravel lesion`
// "summary", its table) and the report's per-k statistics: sample_std (n - 1); gradients
// (paths/gradients.h): sample std for `sample`, population std for `brute`.
#pragma once
#include <vector>

namespace unravel {

double mean(const std::vector<double>& v);                // 0 for an empty vector
double median(std::vector<double> v);                     // mean of the middle two for even sizes
double sample_std(const std::vector<double>& v);          // sqrt(sum (x - mean)^2 / (n - 1)); 0 for n < 2
double population_std(const std::vector<double>& v);      // sqrt(sum (x - mean)^2 / n); 0 for n < 1
// Spearman's rho: Pearson's correlation of the ranks (ties get their mean rank). 0 when either
// side is constant or the sizes differ or are below 2.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace unravel
