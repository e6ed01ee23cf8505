// Gradient per path length (E6): how much of the loss gradient at the input of block 1 (the stem
// output) flows through paths that take k residual branches. Three methods, one definition:
//   exact  - the per-length decomposition (docs/design.md, "The exact method"), O(n^2)
//            vector-Jacobian products;
//   sample - the paper's E6: backward passes through random sets of k residual branches;
//   brute  - all 2^n paths through the network's own backward gates (n <= 16): the test oracle.
//
// Definitions used throughout (and in the JSON/CSV written by `unravel gradients`):
//   loss       cross-entropy averaged over the batch (as in training);
//   gradient   d loss / d h0, h0 = stem output = input of block 1; a (B, C1, H1, W1) tensor whose
//              norm is the Frobenius norm over the whole batch;
//   path S     a set of blocks whose residual branch carries the gradient back; every other block
//              passes it through its shortcut (the forward pass is the intact network). Blocks
//              without a skip connection (plain nets) have no shortcut, so every path contains
//              them: a plain net has one path, of length n. Length = |S|.
//   g_S        the gradient of path S; the sum over all 2^n paths is the ordinary gradient.
//   g_k        the sum of g_S over the paths of length k.
// Batch norm: BnMode::Eval uses running statistics (samples independent; the default of the
// command, a trained network's inference behaviour); BnMode::Train uses batch statistics (samples
// of a batch couple; every method stays exact). Running statistics are never modified.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/network.h"

namespace unravel::paths {

enum class BnMode { Eval, Train };
BnMode parse_bn_mode(const std::string& text);  // "eval" | "train"; UserError naming --bn
const char* bn_mode_name(BnMode m);

// How `sample` computes path gradients.
//   Chain:      one recorded forward; per path one chain of per-block vector-Jacobian products
//               (residual or shortcut only), paths sorted so that shared suffixes are reused.
//               Valid in both batch-norm modes.
//   Replicated: the batch replicated R times along the batch dimension, per-sample backward gate
//               masks (models::StepExtras), one forward/backward for R paths. Eval mode only.
//   Auto:       Chain (on CPU about 5x faster per path than Replicated at the middle length of
//               preresnet56, batch 32: see bench_gradients).
enum class SampleEngine { Auto, Chain, Replicated };
SampleEngine parse_sample_engine(const std::string& text);  // UserError naming --engine
const char* sample_engine_name(SampleEngine e);

struct GradientOptions {
  /// batch-norm statistics used by the forward pass (see above)
  BnMode bn = BnMode::Eval;
  /// exact: random-sign draws for the mean squared single-path norm (0 = none). A draw flips
  /// each residual branch's backward output by an independent sign (per sample in BnMode::Eval,
  /// where samples are independent; per block for the whole batch in BnMode::Train), so that
  /// E||g_k(eps)||^2 = sum over paths of length k of ||g_S||^2.
  int sign_samples = 16;
  /// sample: random paths per length
  int64_t samples = 1000;
  /// sample: lengths a..b (inclusive); max_length < 0 means n
  int min_length = 0;
  int max_length = -1;
  /// seeds the random sets (sample) and the random signs (exact)
  uint64_t seed = 0;
  /// share of sum_k total that the effective range must hold
  double mass = 0.9;
  /// sample: engine, and for Replicated the rows (replicas x batch) of one backward (0 = auto)
  SampleEngine engine = SampleEngine::Auto;
  int64_t max_rows = 0;
  /// exact, brute: keep g_k and the ordinary gradient in the result (tests); brute also keeps
  /// the norm of every path
  bool keep_tensors = false;
  /// progress lines on stderr for long loops
  bool progress = false;
};

// Per path length k. Fields a method does not produce are NaN (null in JSON, empty in CSV).
struct LengthStats {
  int length = 0;
  std::string paths;     ///< number of paths of length k, exact decimal
  double count = 0;      ///< the same as a double
  double norm = NAN;     ///< exact, brute: ||g_k||, the norm of the summed gradient of all paths
  double mean = NAN;     ///< sample, brute: mean single-path norm; exact: = rms (an estimate)
  double std = NAN;      ///< sample: sample std (n-1) of single-path norms; brute: population std
  double rms = NAN;      ///< sqrt(mean_sq)
  double mean_sq = NAN;  ///< mean squared single-path norm (brute: exact; exact: random-sign
                         ///< estimate; sample: over the sampled paths)
  double mean_sq_se = NAN;  ///< standard error of mean_sq (exact: over sign draws; sample: over paths)
  double sum_sq = NAN;      ///< mean_sq * count: sum over all paths of ||g_S||^2
  double sum_sq_se = NAN;   ///< standard error of sum_sq
  double total = NAN;    ///< sample, brute: mean * count (the paper's Fig. 6c); exact: rms * count
  double share = NAN;    ///< total / sum over reported lengths of total
  int64_t samples = 0;   ///< paths measured (sample, brute) or sign draws (exact), over all batches
};

struct GradientResult {
  std::string method;  ///< "exact" | "sample" | "brute"
  int n = 0;           ///< blocks
  BnMode bn = BnMode::Eval;
  int64_t batch_size = 0;
  int64_t batches = 1;
  std::vector<LengthStats> lengths;  ///< ascending length
  double residual = NAN;   ///< exact, brute: ||sum_k g_k - g|| / ||g|| (max over batches)
  double grad_norm = NAN;  ///< ||g||, the ordinary autograd gradient (mean over batches)
  std::pair<int, int> effective_range{0, 0};  ///< shortest range of lengths holding `mass`
  double effective_share = NAN;                ///< share of the total actually held
  std::string effective_basis = "total";      ///< "total", or "norm" when totals are missing
  double mass = 0.9;
  double seconds = 0;
  std::string engine;  ///< sample: the engine used
  // keep_tensors (one batch): g_k for k = 0..n (B, C1, H1, W1) and the ordinary gradient g.
  std::vector<torch::Tensor> g;
  torch::Tensor grad;
  // brute with keep_tensors: ||g_S|| at index sum_{i in S} 2^(i-1) (NaN where S is no path).
  std::vector<double> path_norms;
};

// --- building blocks -----------------------------------------------------------------------

// Puts the network in the requested batch-norm mode and saves every buffer; the destructor
// restores buffers and mode, so an analysis never changes running statistics.
class AnalysisModeGuard {
 public:
  AnalysisModeGuard(models::Network& net, BnMode bn);
  ~AnalysisModeGuard();
  AnalysisModeGuard(const AnalysisModeGuard&) = delete;
  AnalysisModeGuard& operator=(const AnalysisModeGuard&) = delete;

 private:
  models::Network net_;
  bool was_training_;
  std::vector<torch::Tensor> saved_;
};

// Blocks that must take their residual branch in every path (those without a skip), sorted.
std::vector<int> forced_blocks(models::Network& net);
// Number of paths of length k: C(n - f, k - f) with f forced blocks; exact decimal / double.
std::string path_count_decimal(int n, int k, int forced = 0);
double path_count(int n, int k, int forced = 0);

// The ordinary gradient d loss / d h0 through the network's default plan.  (B, C1, H1, W1)
torch::Tensor input_gradient(models::Network& net, const torch::Tensor& images,
                             const torch::Tensor& labels, BnMode bn);

// The gradient of one path through the network's backward gates (Plan with Gate::ResidualOnly on
// the blocks of `residual_blocks`, Gate::ShortcutOnly elsewhere).  (B, C1, H1, W1)
torch::Tensor path_gradient(models::Network& net, const torch::Tensor& images,
                            const torch::Tensor& labels, const std::vector<int>& residual_blocks,
                            BnMode bn);

// ||g_S|| for each set (1-based block indices taking the residual branch; must contain the
// forced blocks), by opts.engine. The engine of `sample`.
std::vector<double> path_gradient_norms(models::Network& net, const torch::Tensor& images,
                                        const torch::Tensor& labels,
                                        const std::vector<std::vector<int>>& sets,
                                        const GradientOptions& opts);

// `count` random paths of length k (uniform over the paths of that length), sorted indices.
// Deterministic in (seed, k). Empty when no path has length k.
std::vector<std::vector<int>> sample_path_sets(int n, int k, int64_t count, uint64_t seed,
                                               const std::vector<int>& forced = {});

// The effective range uses shortest_range() of paths/path_counts.h on the per-length totals.

// --- the three methods, on one batch ------------------------------------------------------

GradientResult exact_gradients(models::Network& net, const torch::Tensor& images,
                               const torch::Tensor& labels, const GradientOptions& opts);
GradientResult sample_gradients(models::Network& net, const torch::Tensor& images,
                                const torch::Tensor& labels, const GradientOptions& opts);
// Throws UserError when the network has more than 16 blocks.
GradientResult brute_gradients(models::Network& net, const torch::Tensor& images,
                               const torch::Tensor& labels, const GradientOptions& opts);
// The three methods as a closed set; parsed from "exact" | "sample" | "brute" (UserError naming
// --method otherwise) and named back the same way (GradientResult::method, the JSON "method").
enum class GradientMethod { Exact, Sample, Brute };
GradientMethod parse_gradient_method(const std::string& text);
const char* method_name(GradientMethod m);
GradientResult gradients_by_method(GradientMethod method, models::Network& net,
                                   const torch::Tensor& images, const torch::Tensor& labels,
                                   const GradientOptions& opts);

// Averages per-batch results (fields per length; standard errors combined as sqrt(sum se^2)/N;
// residual: the maximum) and recomputes shares and the effective range.
GradientResult average_results(const std::vector<GradientResult>& per_batch, double mass);

// Output: JSON object (schema in the file comment above and in `unravel gradients --help`),
// CSV (a header and a row per length), readable table.
nlohmann::json to_json(const GradientResult& r);
std::string to_csv(const GradientResult& r);
std::string format_table(const GradientResult& r);

}  // namespace unravel::paths
