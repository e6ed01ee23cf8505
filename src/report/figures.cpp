// The figures of the report (see figures.h): each turns parsed results into a gnuplot figure.
// Axis labels follow the paper's figures (Fig. 3, 5, 6) with units added.
#include "report/figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace unravel::report {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// At most ~20 integer tics over [lo, hi].
int tic_step(int lo, int hi) {
  const int span = std::max(1, hi - lo);
  for (int step : {1, 2, 3, 5, 6, 9, 10, 20, 25, 50, 100})
    if (span / step <= 20) return step;
  return span / 20 + 1;
}

std::string method_label(const Gradients& g) {
  if (g.method == "sample") return "sampled paths";
  if (g.method == "exact") return "exact decomposition";
  if (g.method == "brute") return "brute force (all paths)";
  return g.method;
}

// The legend of `entries` lines goes into the widest empty horizontal band between the values
// ys (ResNet low, plain net high), or on top of the data with the y range stretched to make room.
// Sets the key position and the y range [0, top].
void place_key_in_gap(GnuplotFigure& f, std::vector<double> ys, double ymax, int entries, const GnuplotOptions& opts) {
  const double key_height = (entries * 19.0 + 12.0) / (opts.height * 0.75);  // share of the plot
  double top = std::max(1.0, ymax * 1.08);
  ys.push_back(top);
  std::sort(ys.begin(), ys.end());
  double gap_lo = 0, gap_hi = 0;
  for (size_t i = 1; i < ys.size(); ++i)
    if (ys[i] - ys[i - 1] > gap_hi - gap_lo) {
      gap_lo = ys[i - 1];
      gap_hi = ys[i];
    }
  if ((gap_hi - gap_lo) / top >= key_height + 0.08) {
    f.set(fmt::format("set key at graph 0.98, graph {} right center", gp_number(0.5 * (gap_lo + gap_hi) / top)));
  } else {
    top = std::max(1.0, ymax) / std::max(0.3, 1.0 - key_height - 0.06);
    f.set("set key at graph 0.98, graph 0.98 right top");
  }
  f.set(fmt::format("set yrange [0:{}]", gp_number(top)));
}

}  // namespace

// ---- E1 / E9 -------------------------------------------------------------------------------

std::optional<Figure> plot_single_deletion(const std::string& dir, const std::string& stem,
                                           const std::string& title,
                                           const std::vector<std::pair<std::string, LesionStudy>>& nets,
                                           const GnuplotOptions& opts) {
  GnuplotFigure f(dir, stem);
  f.title(title).xlabel("index of deleted block").ylabel("test error (%)");
  int xmin = std::numeric_limits<int>::max(), xmax = std::numeric_limits<int>::min();
  double ymax = 0;
  std::vector<int> downsampling;
  struct Drawn {
    std::string label;
    double baseline;
    int lt;
    std::vector<std::pair<int, double>> points;
  };
  std::vector<Drawn> drawn;
  int lt = 0;
  for (const auto& [label, lesion] : nets) {
    ++lt;
    auto points = lesion.single_deletions();
    if (points.empty()) continue;
    std::vector<double> x, y;
    for (const auto& [block, err] : points) {
      x.push_back(block);
      y.push_back(err);
      xmin = std::min(xmin, block);
      xmax = std::max(xmax, block);
      ymax = std::max(ymax, err);
    }
    ymax = std::max(ymax, lesion.baseline);
    const int b = f.data(label + ": test error (%) per deleted block", {x, y});
    f.series(b, fmt::format("using 1:2 with linespoints lt {}", lt), label + ": one block deleted");
    if (downsampling.empty()) downsampling = lesion.downsampling_blocks();
    drawn.push_back({label, lesion.baseline, lt, std::move(points)});
  }
  if (drawn.empty()) return std::nullopt;
  for (const Drawn& d : drawn) {
    const int b = f.data(d.label + ": intact network",
                         {{xmin - 0.5, xmax + 0.5}, {d.baseline, d.baseline}});
    f.series(b, fmt::format("using 1:2 with lines lt {} dt 2 lw 1.5", d.lt),
             d.label + ": intact (" + pct(d.baseline) + ")");
  }
  if (!downsampling.empty()) {
    std::vector<double> x, y;
    for (const Drawn& d : drawn)
      for (const auto& [block, err] : d.points)
        if (std::count(downsampling.begin(), downsampling.end(), block)) {
          x.push_back(block);
          y.push_back(err);
        }
    for (int block : downsampling)
      f.set(fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead dt 3 lc rgb '#909090' back",
                        block));
    const int b = f.data("downsampling blocks", {x, y});
    f.series(b, "using 1:2 with points pt 4 ps 1.8 lw 1.5 lc rgb '#000000'",
             "downsampling block");
  }
  f.set(fmt::format("set xrange [{}:{}]", xmin - 1, xmax + 1));
  f.set(fmt::format("set xtics {},{}", xmin, tic_step(xmin, xmax)));
  std::vector<double> ys{0.0};
  for (const Drawn& d : drawn) {
    ys.push_back(d.baseline);
    for (const auto& pt : d.points) ys.push_back(pt.second);
  }
  place_key_in_gap(f, ys, ymax, 2 * static_cast<int>(drawn.size()) + (downsampling.empty() ? 0 : 1), opts);
  f.render(opts);
  std::string caption = "Top-1 test error when one block is deleted at test time (the block "
                        "passes its input through its shortcut only). Dashed lines: the intact "
                        "networks.";
  if (!downsampling.empty()) caption += " Dotted verticals and squares: downsampling blocks.";
  return Figure{stem, title, caption};
}

// ---- E3 ------------------------------------------------------------------------------------

std::optional<Figure> plot_random_deletion(const std::string& dir, const std::string& stem,
                                           const LesionStudy& lesion, const GnuplotOptions& opts) {
  const auto stats = lesion.stats_by_k("delete");
  if (stats.empty()) return std::nullopt;
  GnuplotFigure f(dir, stem);
  f.title("Deleting k random blocks").xlabel("number of deleted blocks k").ylabel("test error (%)");
  std::vector<double> sx, sy;
  for (const LesionPlan& p : lesion.plans)
    if (p.kind == "delete") {
      sx.push_back(p.k);
      sy.push_back(p.error);
    }
  std::vector<double> k{0}, mean{lesion.baseline}, lo{lesion.baseline}, hi{lesion.baseline},
      sd{0};
  for (const ErrorStats& s : stats) {
    k.push_back(s.k);
    mean.push_back(s.mean);
    lo.push_back(s.min);
    hi.push_back(s.max);
    sd.push_back(s.std);
  }
  const int samples = f.data("every sampled set: k, test error (%)", {sx, sy});
  const int means = f.data("per k: k, mean, min, max, std (k = 0: intact network)",
                           {k, mean, lo, hi, sd});
  f.series(samples, "using 1:2 with points pt 7 ps 0.45 lc rgb '#a8a8a8'", "each sampled set");
  f.series(means, "using 1:2:3:4 with yerrorlines lt 1", "mean (bars: min to max)");
  f.set(fmt::format("set xrange [-0.5:{}]", stats.back().k + 0.5));
  f.set(fmt::format("set xtics 0,{}", tic_step(0, stats.back().k)));
  f.set("set yrange [0:*]");
  f.set("set key top left");
  f.render(opts);
  return Figure{stem, "Deleting k random blocks",
                fmt::format("Top-1 test error after deleting k random blocks at test time; "
                            "{} sets in all, k = 0 is the intact network ({}).",
                            sx.size(), pct(lesion.baseline))};
}

// ---- E4 ------------------------------------------------------------------------------------

std::optional<Figure> plot_reorder(const std::string& dir, const std::string& stem,
                                   const LesionStudy& lesion, const GnuplotOptions& opts) {
  std::vector<double> tau, err;
  for (const LesionPlan& p : lesion.plans)
    if (p.kind == "swap" && p.kendall_tau) {
      tau.push_back(*p.kendall_tau);
      err.push_back(p.error);
    }
  if (tau.empty()) return std::nullopt;
  GnuplotFigure f(dir, stem);
  const std::string title = "Reordering blocks: error vs Kendall tau";
  f.title(title)
      .xlabel("Kendall tau correlation of the block order (1 = original order)")
      .ylabel("test error (%)");
  std::vector<double> mt, me, ms;
  for (const ErrorStats& s : lesion.stats_by_k("swap"))
    if (s.has_tau) {
      mt.push_back(s.mean_tau);
      me.push_back(s.mean);
      ms.push_back(s.k);
    }
  const int all = f.data("every sampled order: Kendall tau, test error (%)", {tau, err});
  const int mean = f.data("per number of swaps: mean tau, mean error (%), swaps", {mt, me, ms});
  const int intact = f.data("intact order", {{1.0}, {lesion.baseline}});
  f.series(all, "using 1:2 with points pt 7 ps 0.45 lc rgb '#a8a8a8'", "each sampled order");
  f.series(mean, "using 1:2 with linespoints lt 1", "mean per number of swaps");
  f.series(intact, "using 1:2 with points pt 3 ps 2 lc rgb '#d62728'",
           "intact (" + pct(lesion.baseline) + ")");
  const double tmin = *std::min_element(tau.begin(), tau.end());
  const double pad = 0.05 * (1.0 - std::min(tmin, 0.99)) + 0.002;
  f.set(fmt::format("set xrange [{}:{}]", gp_number(1.0 + pad), gp_number(tmin - pad)));
  f.set("set yrange [0:*]");
  f.set("set key top left");
  f.render(opts);
  return Figure{stem, title,
                fmt::format("Top-1 test error after k random swaps of same-shape blocks, against "
                            "the Kendall tau of the resulting order ({} orders; the axis runs "
                            "from the original order to the most corrupted).",
                            tau.size())};
}

// ---- E5 ------------------------------------------------------------------------------------

std::optional<Figure> plot_path_lengths(const std::string& dir, const std::string& stem,
                                        const LengthShares& paths, const GnuplotOptions& opts) {
  if (paths.lengths.empty()) return std::nullopt;
  GnuplotFigure f(dir, stem);
  const std::string title = fmt::format("Distribution of path lengths, n = {} blocks", paths.n);
  f.title(title).xlabel("path length (number of residual branches on the path)")
      .ylabel("share of all paths");
  std::vector<double> x, y;
  for (const PathLength& l : paths.lengths) {
    x.push_back(l.length);
    y.push_back(l.share);
  }
  const int b = f.data("length, share of all 2^n paths", {x, y});
  f.set("set boxwidth 0.8");
  f.series(b, "using 1:2 with boxes lt 1 fs solid 0.7", "C(n,k) / 2^n");
  std::string caption = fmt::format(
      "Share of the 2^{} paths that pass through k residual branches (Binomial(n, 1/2), mean "
      "{:.1f}).",
      paths.n, paths.mean);
  if (paths.range95) {
    const auto [lo, hi] = *paths.range95;
    const double share = paths.share_between(lo, hi);
    f.set(fmt::format("set object 1 rect from {},graph 0 to {},graph 1 behind fc rgb '#fde3c0' "
                      "fs solid 1.0 noborder",
                      lo - 0.5, hi + 0.5));
    f.set(fmt::format("set label 1 {} at graph 0.02, graph 0.92 front",
                      gp_quote(fmt::format("shaded: lengths {}-{}, {:.2f}% of paths", lo, hi,
                                           100 * share))));
    caption += fmt::format(" Shaded: the shortest range holding 95% of paths, lengths {}-{} "
                           "({:.2f}% of paths).",
                           lo, hi, 100 * share);
  }
  f.set(fmt::format("set xrange [-0.5:{}]", paths.lengths.back().length + 0.5));
  f.set(fmt::format("set xtics 0,{}", tic_step(0, paths.lengths.back().length)));
  f.set("set yrange [0:*]");
  f.set("set key top right");
  f.render(opts);
  return Figure{stem, title, caption};
}

// ---- E6 ------------------------------------------------------------------------------------

std::optional<Figure> plot_gradient_magnitude(const std::string& dir, const std::string& stem,
                                              const std::vector<Gradients>& methods,
                                              const GnuplotOptions& opts) {
  GnuplotFigure f(dir, stem);
  const std::string title = "Gradient magnitude per path length";
  f.title(title).xlabel("path length (number of residual branches on the path)")
      .ylabel("gradient magnitude at input (mean norm of one path)");
  int lt = 0, kmax = 0;
  for (const Gradients& g : methods) {
    ++lt;
    std::vector<double> k, mean, sd;
    for (const GradLength& l : g.lengths)
      if (l.mean && *l.mean > 0) {
        k.push_back(l.length);
        mean.push_back(*l.mean);
        sd.push_back(l.std.value_or(std::nan("")));
        kmax = std::max(kmax, l.length);
      }
    if (k.empty()) continue;
    const int b = f.data(g.method + ": length, mean norm of one path, std", {k, mean, sd});
    f.series(b, fmt::format("using 1:2 with linespoints lt {}", lt), method_label(g));
  }
  if (f.empty()) return std::nullopt;
  f.set("set logscale y");
  f.set("set format y '%.0e'");
  f.set(fmt::format("set xrange [-0.5:{}]", kmax + 0.5));
  f.set(fmt::format("set xtics 0,{}", tic_step(0, kmax)));
  f.set("set key top right");
  f.render(opts);
  return Figure{stem, title,
                "Norm of the gradient at the input of block 1 carried by a single path of each "
                "length (mean over sampled paths; for the exact method the random-sign estimate), "
                "log scale: it falls roughly exponentially with the length."};
}

std::optional<Figure> plot_gradient_total(const std::string& dir, const std::string& stem,
                                          const std::vector<Gradients>& methods,
                                          const GnuplotOptions& opts) {
  GnuplotFigure f(dir, stem);
  const std::string title = "Total gradient magnitude per path length";
  f.title(title).xlabel("path length (number of residual branches on the path)")
      .ylabel("total gradient magnitude (share of all lengths)");
  int lt = 0, kmax = 0, object = 1;
  std::vector<std::string> ranges;
  bool shaded = false;
  for (const Gradients& g : methods) {
    ++lt;
    std::vector<double> k, share;
    double sum = 0;
    for (const GradLength& l : g.lengths) {
      const auto c = l.contribution();
      if (c && std::isfinite(*c) && *c >= 0) sum += *c;
    }
    if (!(sum > 0)) continue;
    for (const GradLength& l : g.lengths) {
      const auto c = l.contribution();
      if (!c || !std::isfinite(*c) || *c < 0) continue;
      k.push_back(l.length);
      share.push_back(*c / sum);
      kmax = std::max(kmax, l.length);
    }
    const bool from_norm = !g.lengths.empty() && !g.lengths[0].total && !g.lengths[0].mean;
    const int b = f.data(g.method + ": length, contribution / sum over lengths", {k, share});
    f.series(b, fmt::format("using 1:2 with linespoints lt {}", lt),
             method_label(g) + (from_norm ? " (norm of summed gradient)" : " (mean x C(n,k))"));
    if (g.effective_range) {
      const auto [lo, hi] = *g.effective_range;
      ranges.push_back(fmt::format("{} {}-{}", g.method, lo, hi));
      if (!shaded) {
        f.set(fmt::format("set object {} rect from {},graph 0 to {},graph 1 behind "
                          "fc rgb '#fde3c0' fs solid 1.0 noborder",
                          object++, lo - 0.5, hi + 0.5));
        shaded = true;
      } else {
        for (double x : {lo - 0.5, hi + 0.5})
          f.set(fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead lt {1} dt 2 lw 1 "
                            "back",
                            gp_number(x), lt));
      }
    }
  }
  if (f.empty()) return std::nullopt;
  std::string caption =
      "Contribution of all paths of each length to the gradient: mean norm x number of paths "
      "C(n,k) for sampled paths, the norm of the summed gradient of all paths of that length for "
      "the exact method; each curve divided by its sum over lengths.";
  if (!ranges.empty()) {
    std::string text = "effective range: ";
    for (size_t i = 0; i < ranges.size(); ++i) text += (i ? ", " : "") + ranges[i];
    f.set("set label 1 " + gp_quote(text) + " at graph 0.98, graph 0.70 right front");
    caption += " Shaded: the effective range (" + text.substr(17) + ").";
  }
  f.set(fmt::format("set xrange [-0.5:{}]", kmax + 0.5));
  f.set(fmt::format("set xtics 0,{}", tic_step(0, kmax)));
  f.set("set yrange [0:*]");
  f.set("set key top right");
  f.render(opts);
  return Figure{stem, title, caption};
}

// ---- E7 ------------------------------------------------------------------------------------

std::optional<Figure> plot_short_path_training(const std::string& dir, const std::string& stem,
                                               const ShortPathTraining& e7,
                                               const GnuplotOptions& opts) {
  GnuplotFigure f(dir, stem);
  const std::string title = "Training only short paths";
  const std::string short_label =
      e7.active_blocks > 0 && e7.n > 0
          ? fmt::format("short paths: {} of {} blocks per batch", e7.active_blocks, e7.n)
          : std::string("short-path training");
  f.title(title).xlabel("training").ylabel("test error (%)");
  const int b = f.data("bar, test error (%), colour", {{0, 1}, {e7.normal, e7.short_paths}, {1, 3}});
  f.set("set boxwidth 0.5");
  f.set("set xrange [-0.6:1.6]");
  f.set("set xtics (" + gp_quote("normal training") + " 0, " + gp_quote(short_label) + " 1)");
  f.set(fmt::format("set yrange [0:{}]",
                    gp_number(std::max(1.0, 1.25 * std::max(e7.normal, e7.short_paths)))));
  f.set("set key off");
  f.set("set grid noxtics");
  f.series(b, "using 1:2:3 with boxes lc variable fs solid 0.75", "");
  f.series(b, "using 1:2:(sprintf('%.2f%%', $2)) with labels offset 0,1", "");
  f.render(opts);
  return Figure{stem, title,
                fmt::format("Top-1 test error of normal training ({}) and of training with only "
                            "{} ({}).",
                            pct(e7.normal),
                            e7.active_blocks > 0 ? fmt::format("{} random blocks active per "
                                                               "mini-batch",
                                                               e7.active_blocks)
                                                 : std::string("short paths"),
                            pct(e7.short_paths))};
}

// ---- E8 ------------------------------------------------------------------------------------

std::optional<Figure> plot_remaining_paths(const std::string& dir, const std::string& stem,
                                           const std::vector<LengthShares>& deletions,
                                           int mark_x, const GnuplotOptions& opts) {
  GnuplotFigure f(dir, stem);
  const int n = deletions.empty() ? 0 : deletions[0].n;
  const std::string title =
      fmt::format("Paths left after deleting d of {} blocks", n);
  f.title(title).xlabel("path length x").ylabel("share of the paths of length x remaining");
  int lt = 0, xmax = 0, label = 1;
  double ymin = 1;
  for (const LengthShares& p : deletions) {
    ++lt;
    std::vector<double> x, y;
    for (int len = 0; len <= p.n; ++len) {
      const double r = p.remaining_at(len);
      if (!(r > 0)) continue;
      x.push_back(len);
      y.push_back(r);
      xmax = std::max(xmax, len);
      ymin = std::min(ymin, r);
    }
    if (x.empty()) continue;
    const int b = f.data(fmt::format("d = {}: length x, C(n-d,x)/C(n,x)", p.deleted), {x, y});
    f.series(b, fmt::format("using 1:2 with linespoints lt {} ps 0.5", lt),
             fmt::format("d = {} deleted", p.deleted));
    const double at = p.remaining_at(mark_x);
    if (at > 0)
      f.set(fmt::format("set label {} {} at {},{} offset 1,0.6 front tc lt {}", label++,
                        gp_quote(fmt::format("{:.3g}", at)), mark_x, gp_number(at), lt));
  }
  if (f.empty()) return std::nullopt;
  f.set(fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead dt 3 lc rgb '#707070' back",
                    mark_x));
  f.set("set logscale y");
  f.set("set format y '%.0e'");
  f.set(fmt::format("set yrange [{}:10]", gp_number(std::max(ymin / 3, 1e-300))));
  f.set(fmt::format("set xrange [-0.5:{}]", xmax + 0.5));
  f.set(fmt::format("set xtics 0,{}", tic_step(0, xmax)));
  f.set("set key bottom left");
  f.render(opts);
  return Figure{stem, title,
                fmt::format("Share of the paths of each length that survive the deletion of d "
                            "blocks, C(n-d,x) / C(n,x) (log scale); the dotted line marks x = {} "
                            "with its values.",
                            mark_x)};
}

// ---- training curves -----------------------------------------------------------------------

std::optional<Figure> plot_training_curves(const std::string& dir, const std::string& stem,
                                           const std::vector<EpochPoint>& epochs,
                                           const GnuplotOptions& opts) {
  std::vector<double> e, loss, err;
  bool any_loss = false, any_err = false;
  for (const EpochPoint& p : epochs) {
    e.push_back(p.epoch);
    loss.push_back(p.train_loss.value_or(std::nan("")));
    err.push_back(p.test_error.value_or(std::nan("")));
    any_loss |= p.train_loss.has_value();
    any_err |= p.test_error.has_value();
  }
  if (!any_loss && !any_err) return std::nullopt;
  GnuplotFigure f(dir, stem);
  const std::string title = "Training curves";
  f.title(title).xlabel("epoch");
  const int b = f.data("epoch, train loss, test error (%)", {e, loss, err});
  if (any_loss) {
    f.ylabel("train loss");
    f.series(b, "using 1:2 with linespoints lt 1 axes x1y1", "train loss");
  }
  if (any_err) {
    if (any_loss) {
      f.set("set y2label 'test error (%)'");
      f.set("set ytics nomirror");
      f.set("set y2tics");
      f.set("set y2range [0:*]");
    } else {
      f.ylabel("test error (%)");
    }
    f.series(b, std::string("using 1:3 with linespoints lt 2 axes ") + (any_loss ? "x1y2" : "x1y1"),
             "test error (%)");
  }
  const int first = static_cast<int>(std::floor(e.front())), last = static_cast<int>(std::ceil(e.back()));
  f.set(fmt::format("set xtics {},{}", first, tic_step(first, last)));
  f.set("set yrange [0:*]");
  f.set("set key top right");
  f.render(opts);
  return Figure{stem, title, "Mean training loss (left axis) and top-1 test error (right axis) "
                             "after each epoch, from metrics.jsonl."};
}

}  // namespace unravel::report
