// Typed views of the experiment JSONs that the report draws (lesion sweeps, path counts,
// gradients per path length, short-path training). Parsing validates once, in one place, and
// throws UserError naming the offending field ("results.json: E1.resnet: missing field \"plans\"").
// Errors are converted to percent here, whatever unit the producer used (see error_percent).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/stats.h"  // mean, median, sample_std: the report's statistics
#include "paths/path_counts.h"

namespace unravel::report {

// An error in percent as the report writes it: "12.34%" (tables and figure legends alike).
std::string pct(double percent);

// ---- checked field access ------------------------------------------------------------------
// `where` names the object for error messages, e.g. "results.json: E1.resnet".
const nlohmann::json& require(const nlohmann::json& j, const std::string& key,
                              const std::string& where);
double require_number(const nlohmann::json& j, const std::string& key, const std::string& where);
std::optional<double> optional_number(const nlohmann::json& j, const std::string& key,
                                      const std::string& where);
// A count written as a decimal string (exact, may exceed 64 bits) or as a number.
std::optional<double> optional_count(const nlohmann::json& j, const std::string& key,
                                     const std::string& where);

// top1_error of a result object in percent. The producer may write a fraction (0.0603) or a
// percent (6.03); when "correct" and "n" are present they decide, otherwise values <= 1 are
// read as fractions.
double error_percent(const nlohmann::json& j, const std::string& where,
                     const std::string& key = "top1_error");

// ---- lesion sweeps (E1, E3, E4, E9) --------------------------------------------------------
struct BlockMark {
  int index = 0;  ///< 1-based, as in the paper
  int stage = 0;
  bool downsample = false;
};

struct LesionPlan {
  std::string plan;                   ///< "delete=4"
  std::string kind;                   ///< delete | swap | duplicate | custom
  int k = 0;                          ///< number of edits (blocks deleted, swaps made, ...)
  std::vector<int> blocks;            ///< blocks touched, 1-based
  double error = 0;                   ///< top-1 test error, percent
  std::optional<double> kendall_tau;  ///< of the resulting block order (swap sweeps)
};

// mean / std / min / max / median of the errors of all plans of one kind and k (percent); std is
// the sample std (n - 1; 0 for one plan), as in `unravel lesion`'s summary (core/stats.h).
struct ErrorStats {
  int k = 0;
  int count = 0;
  double mean = 0, std = 0, min = 0, max = 0, median = 0;
  double mean_tau = 0;  ///< mean Kendall tau of these plans (0 when they have none)
  bool has_tau = false;
};

// The results of one lesion study of one network as the report reads them (lesion::Lesion is
// one plan of a sweep; lesion::LesionResult what run_lesion returns).
struct LesionStudy {
  std::string model;
  std::vector<BlockMark> blocks;  ///< may be empty (field is optional)
  double baseline = 0;            ///< intact network, percent
  std::vector<LesionPlan> plans;

  // Plans deleting exactly one block, sorted by that block: (block index, error percent).
  std::vector<std::pair<int, double>> single_deletions() const;
  // Statistics per k over plans of `kind`, sorted by k.
  std::vector<ErrorStats> stats_by_k(const std::string& kind) const;
  std::vector<int> downsampling_blocks() const;
};

LesionStudy parse_lesion(const nlohmann::json& j, const std::string& where);

// ---- path counts (E5, E8) ------------------------------------------------------------------
struct PathLength {
  int length = 0;
  double share = 0;                       ///< of all 2^n paths
  std::optional<double> count;            ///< exact decimal string, read as a double
  std::optional<double> remaining_share;  ///< C(n-d, x) / C(n, x) when d > 0
};

// The shares of path lengths of an `unravel paths` table as the report reads them (what
// paths::PathDistribution::to_json wrote).
struct LengthShares {
  int n = 0;
  int deleted = 0;
  std::vector<PathLength> lengths;
  double mean = 0;
  std::optional<std::pair<int, int>> range95;

  // Share of all paths whose length lies in [lo, hi].
  double share_between(int lo, int hi) const;
  // remaining_share at length x: the field when present, else paths::remaining_share(n, deleted, x).
  double remaining_at(int x) const;
};

// UserError for n outside 0..paths::kMaxBlocks or deleted outside 0..n.
LengthShares parse_paths(const nlohmann::json& j, const std::string& where);

// ---- gradients per path length (E6) --------------------------------------------------------
struct GradLength {
  int length = 0;
  double paths = 0;            ///< C(n, k): the field, else paths' exact count (nearest double)
  std::optional<double> norm;  ///< norm of the summed gradient of all paths of this length
  std::optional<double> mean;  ///< mean norm of one path's gradient
  std::optional<double> std;
  std::optional<double> total;  ///< mean x C(n, k)

  // The contribution of this length: total, else mean x paths, else norm.
  std::optional<double> contribution() const;
};

struct Gradients {
  std::string method;  ///< exact | sample | brute
  int n = 0;
  std::vector<GradLength> lengths;
  std::optional<double> residual;
  std::optional<std::pair<int, int>> effective_range;
  std::optional<double> seconds;
};

Gradients parse_gradients(const nlohmann::json& j, const std::string& where);

// ---- short-path training (E7) --------------------------------------------------------------
struct ShortPathTraining {
  int n = 0;              ///< blocks of the network (0 when not given)
  int active_blocks = 0;  ///< per mini-batch (0 when not given)
  double normal = 0;      ///< test error of normal training, percent
  double short_paths = 0; ///< test error of short-path training, percent
};

ShortPathTraining parse_short_path_training(const nlohmann::json& j, const std::string& where);

// ---- training curves (single run) ----------------------------------------------------------
struct EpochPoint {
  double epoch = 0;
  std::optional<double> train_loss;
  std::optional<double> test_error;  ///< percent
};

// Lines of metrics.jsonl with "type": "epoch". Accepts train_loss|loss and
// test_error|test_top1_error|top1_error|test.top1_error. `where` names the file.
std::vector<EpochPoint> parse_epochs(const std::string& jsonl, const std::string& where);


}  // namespace unravel::report
