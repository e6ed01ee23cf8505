// gnuplot driver (see gnuplot.h): writes STEM.dat and STEM.gp and runs gnuplot on them, with no
// shell in between (posix_spawn), so folder names need no quoting.
#include "report/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "core/util.h"

extern char** environ;

namespace unravel::report {

std::string gp_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "''";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out + "'";
}

std::string gp_number(double v) {
  if (!std::isfinite(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

GnuplotFigure::GnuplotFigure(std::string dir, std::string stem)
    : dir_(std::move(dir)), stem_(std::move(stem)) {}

GnuplotFigure& GnuplotFigure::set(const std::string& command) {
  settings_.push_back(command);
  return *this;
}
GnuplotFigure& GnuplotFigure::title(const std::string& t) { return set("set title " + gp_quote(t)); }
GnuplotFigure& GnuplotFigure::xlabel(const std::string& t) {
  return set("set xlabel " + gp_quote(t));
}
GnuplotFigure& GnuplotFigure::ylabel(const std::string& t) {
  return set("set ylabel " + gp_quote(t));
}

int GnuplotFigure::data(const std::string& comment, const std::vector<std::vector<double>>& columns) {
  if (blocks_ > 0) data_ += "\n\n";  // two blank lines separate indexed blocks
  data_ += "# block " + std::to_string(blocks_) + ": " + comment + "\n";
  const size_t rows = columns.empty() ? 0 : columns[0].size();
  for (const auto& c : columns)
    if (c.size() != rows) throw std::logic_error("GnuplotFigure::data: ragged columns");
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < columns.size(); ++c) {
      if (c) data_ += ' ';
      data_ += gp_number(columns[c][r]);
    }
    data_ += '\n';
  }
  if (rows == 0) data_ += "NaN NaN\n";  // an empty block would shift the indices after it
  return blocks_++;
}

GnuplotFigure& GnuplotFigure::series(int block, const std::string& spec, const std::string& title) {
  std::string c = gp_quote(stem_ + ".dat") + " index " + std::to_string(block) + " " + spec;
  c += title.empty() ? " notitle" : " title " + gp_quote(title);
  clauses_.push_back(c);
  return *this;
}

GnuplotFigure& GnuplotFigure::clause(const std::string& text) {
  clauses_.push_back(text);
  return *this;
}

std::string GnuplotFigure::script(const GnuplotOptions& opts) const {
  const std::string size = std::to_string(opts.width) + "," + std::to_string(opts.height);
  std::string s;
  s += "# " + stem_ + ": drawn by `unravel report` from " + stem_ + ".dat.\n";
  s += "# Redraw with `gnuplot " + stem_ + ".gp` in this folder.\n";
  s += "set terminal svg size " + size + " noenhanced font " + gp_quote(opts.font + ",12") +
       " background rgb 'white'\n";
  s += "set output " + gp_quote(stem_ + ".svg") + "\n";
  s += "set encoding utf8\n";
  s += "set grid lc rgb '#d8d8d8' lw 1\n";
  s += "set border lc rgb '#404040'\n";
  s += "set key box lc rgb '#c0c0c0' opaque samplen 2.5 spacing 1.1\n";
  s += "set style fill solid 0.75 border -1\n";
  s += "set linetype 1 lc rgb '#1f77b4' lw 2 pt 7 ps 0.7\n";
  s += "set linetype 2 lc rgb '#d62728' lw 2 pt 5 ps 0.7\n";
  s += "set linetype 3 lc rgb '#2ca02c' lw 2 pt 9 ps 0.8\n";
  s += "set linetype 4 lc rgb '#ff7f0e' lw 2 pt 11 ps 0.8\n";
  s += "set linetype 5 lc rgb '#9467bd' lw 2 pt 13 ps 0.8\n";
  s += "set linetype 6 lc rgb '#7f7f7f' lw 2 pt 6 ps 0.7\n";
  for (const std::string& line : settings_) s += line + "\n";
  s += "plot ";
  for (size_t i = 0; i < clauses_.size(); ++i) s += (i ? ", \\\n     " : "") + clauses_[i];
  s += "\nunset output\n";
  s += "set terminal pngcairo size " + size + " noenhanced font " + gp_quote(opts.font + ",11") +
       " background rgb 'white'\n";
  s += "set output " + gp_quote(stem_ + ".png") + "\n";
  s += "replot\nunset output\n";
  return s;
}

void GnuplotFigure::render(const GnuplotOptions& opts) const {
  if (clauses_.empty()) throw std::logic_error("GnuplotFigure::render: nothing to plot in " + stem_);
  write_file_atomic(dir_ + "/" + stem_ + ".dat", data_);
  write_file_atomic(dir_ + "/" + stem_ + ".gp", script(opts));
  std::string err;
  const int status = run_gnuplot(opts.program, dir_, stem_ + ".gp", err);
  if (status != 0) {
    std::string first;
    for (size_t pos = 0; pos < err.size();) {  // the first non-blank line of stderr
      size_t end = err.find('\n', pos);
      if (end == std::string::npos) end = err.size();
      std::string line = err.substr(pos, end - pos);
      if (line.find_first_not_of(" \t^") != std::string::npos) {
        first = line;
        break;
      }
      pos = end + 1;
    }
    throw UserError("gnuplot failed on " + dir_ + "/" + stem_ + ".gp (status " +
                    std::to_string(status) + ")" + (first.empty() ? "" : ": " + first));
  }
  for (const char* ext : {".svg", ".png"})
    if (!path_exists(dir_ + "/" + stem_ + ext))
      throw UserError("gnuplot wrote no " + dir_ + "/" + stem_ + ext);
}

int run_gnuplot(const std::string& program, const std::string& dir, const std::string& script,
                std::string& err) {
  if (!path_exists(dir)) throw UserError("cannot run gnuplot: no such directory " + dir);
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    throw UserError(std::string("cannot run gnuplot: pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  std::vector<char*> argv = {const_cast<char*>(program.c_str()),
                             const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    if (rc == ENOENT || rc == EACCES)
      throw UserError("gnuplot not found: apt-get install gnuplot-nox");
    throw UserError("cannot run " + program + " in " + dir + ": " + std::strerror(rc));
  }
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (err.size() < (1 << 20)) err.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw UserError(std::string("cannot wait for gnuplot: ") + std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace unravel::report
