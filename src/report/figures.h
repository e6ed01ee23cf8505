// One figure per experiment of the paper (docs/experiments.md), drawn by gnuplot from the parsed
// results (results.h).
// Each function writes DIR/STEM.{dat,gp,svg,png} and returns what the HTML page shows about it,
// or nothing when the data holds nothing to draw (e.g. a lesion sweep without swaps).
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "report/gnuplot.h"
#include "report/results.h"

namespace unravel::report {

struct Figure {
  std::string stem;     ///< STEM.svg / STEM.png in the report folder
  std::string title;    ///< heading on the page
  std::string caption;  ///< plain text (escaped by the page writer)
};

// E1 / E9: test error per deleted block, one curve per network, the intact errors as dashed
// horizontal lines, downsampling blocks marked (vertical lines and open squares).
std::optional<Figure> plot_single_deletion(const std::string& dir, const std::string& stem,
                                           const std::string& title,
                                           const std::vector<std::pair<std::string, LesionStudy>>& nets,
                                           const GnuplotOptions& opts);

// E3: error vs number of deleted blocks: every sample as a dot, the mean with min-max bars,
// the intact net at k = 0.
std::optional<Figure> plot_random_deletion(const std::string& dir, const std::string& stem,
                                           const LesionStudy& lesion, const GnuplotOptions& opts);

// E4: error vs Kendall tau of the block order: every sampled order, the mean per number of swaps.
std::optional<Figure> plot_reorder(const std::string& dir, const std::string& stem,
                                   const LesionStudy& lesion, const GnuplotOptions& opts);

// E5: share of paths per length, the shortest range holding 95% of them shaded.
std::optional<Figure> plot_path_lengths(const std::string& dir, const std::string& stem,
                                        const LengthShares& paths, const GnuplotOptions& opts);

// E6 (a): mean gradient norm of one path per length (log y), sample and exact where present.
std::optional<Figure> plot_gradient_magnitude(const std::string& dir, const std::string& stem,
                                              const std::vector<Gradients>& methods,
                                              const GnuplotOptions& opts);
// E6 (b): total contribution per length (mean x C(n,k); exact: norm of the summed gradient),
// each method normalised to sum 1, with its effective range shaded.
std::optional<Figure> plot_gradient_total(const std::string& dir, const std::string& stem,
                                          const std::vector<Gradients>& methods,
                                          const GnuplotOptions& opts);

// E7: test error of normal training and short-path training, as bars.
std::optional<Figure> plot_short_path_training(const std::string& dir, const std::string& stem,
                                               const ShortPathTraining& e7,
                                               const GnuplotOptions& opts);

// E8: share of the paths of length x left after deleting d blocks, one curve per d (log y),
// length `mark_x` marked.
std::optional<Figure> plot_remaining_paths(const std::string& dir, const std::string& stem,
                                           const std::vector<LengthShares>& deletions,
                                           int mark_x, const GnuplotOptions& opts);

// A single run: train loss (left axis) and test error (right axis) per epoch.
std::optional<Figure> plot_training_curves(const std::string& dir, const std::string& stem,
                                           const std::vector<EpochPoint>& epochs,
                                           const GnuplotOptions& opts);

}  // namespace unravel::report
