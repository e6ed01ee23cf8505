// Whether each finding of the paper is reproduced: one stated rule per experiment, applied to a
// results object (DIR/results.json of `unravel repro`). The rules compare relative effects (how
// much a lesion hurts against the intact network), not absolute errors, because the data and
// schedules differ from the paper's. Torch-free.
#pragma once
#include <nlohmann/json.hpp>

namespace unravel::report {

// {"E1": {"rule": "...", "reproduced": true|false, "evidence": "..."}, ...} for every experiment
// present in `results`. The rules:
//   E1  the ResNet's median single deletion raises the error by less than 1 pp, and every single
//       deletion of the plain net leaves it within 10 pp of chance (1 - 1/classes)
//   E2  the median single deletion raises the error by less than 2 pp, and deleting a
//       downsampling block hurts more than the median deletion of the other blocks
//   E3  the error grows smoothly with the number of deleted blocks: Spearman's rho between k and
//       the mean error >= 0.9, and no step down of more than 2 pp
//   E4  the error grows as the order is corrupted: Spearman's rho between Kendall's tau and the
//       error <= -0.8 over all plans
//   E5  path lengths are Binomial(n, 1/2): the mean is n/2 and, for n = 54, 98.0% of the paths
//       have 19-35 blocks
//   E6  the effective path lengths (the shortest range of lengths holding most of the gradient)
//       end below n/2, for every method computed
//   E7  short-path training's error is within 0.5 pp of normal training's (or better)
//   E8  the shares of paths left equal C(n-d, x) / C(n, x)
//   E9  stochastic depth makes single deletions hurt less: its median rise and its worst single
//       deletion are at most the normal ResNet's
nlohmann::json judge(const nlohmann::json& results);

}  // namespace unravel::report
