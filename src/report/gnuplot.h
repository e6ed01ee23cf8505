// A small gnuplot driver: a figure is a data file (STEM.dat, one indexed block per series), a
// script (STEM.gp) and its two renderings (STEM.svg, STEM.png), all in one folder. Running
// `gnuplot STEM.gp` in that folder redraws the figure without unravel.
#pragma once
#include <string>
#include <vector>

namespace unravel::report {

struct GnuplotOptions {
  std::string program = "gnuplot";  ///< looked up on PATH unless it contains a '/'
  int width = 800;                  ///< pixels, SVG and PNG
  int height = 500;
  std::string font = "DejaVu Sans";
};

// gnuplot string literal: 'text' with ' doubled.
std::string gp_quote(const std::string& text);
// A number as gnuplot and the data file read it (%.10g; "NaN" when not finite).
std::string gp_number(double v);

class GnuplotFigure {
 public:
  GnuplotFigure(std::string dir, std::string stem);

  /// A line of the script before the plot command ("set logscale y").
  GnuplotFigure& set(const std::string& command);
  GnuplotFigure& title(const std::string& t);
  GnuplotFigure& xlabel(const std::string& t);
  GnuplotFigure& ylabel(const std::string& t);

  /// Appends a data block (columns of equal length, one row per point) to STEM.dat; returns its
  /// index for `series`. `comment` heads the block ("# resnet: block error").
  int data(const std::string& comment, const std::vector<std::vector<double>>& columns);
  /// One plot clause drawing data block `block`: spec is "using 1:2 with lines lc 1".
  GnuplotFigure& series(int block, const std::string& spec, const std::string& title);
  /// A plot clause as written (a function, e.g. "5.96 with lines").
  GnuplotFigure& clause(const std::string& text);

  bool empty() const { return clauses_.empty(); }
  std::string script(const GnuplotOptions& opts) const;
  /// Writes STEM.dat and STEM.gp, runs gnuplot in `dir`; STEM.svg and STEM.png exist after.
  /// UserError when gnuplot is missing or fails (its first line of stderr).
  void render(const GnuplotOptions& opts) const;

  const std::string& stem() const { return stem_; }

 private:
  std::string dir_, stem_;
  std::vector<std::string> settings_;
  std::vector<std::string> clauses_;
  std::string data_;
  int blocks_ = 0;
};

// Runs `program args...` with working directory `dir`; returns the exit status, stderr captured
// into `err`. Throws UserError "gnuplot not found: apt-get install gnuplot-nox" when the program
// cannot be started.
int run_gnuplot(const std::string& program, const std::string& dir, const std::string& script,
                std::string& err);

}  // namespace unravel::report
