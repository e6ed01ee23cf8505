// Helpers shared by the test programs: temporary directories, reading and writing files, running
// the unravel program and Python (Debian's python3-torch at /usr/bin/python3), user errors (of a
// command or a call: one short line naming the input), and the work a call does measured so that
// a busy machine cannot change it (CPU time, bytes read).
// Sections: temporary directories / files / commands and Python / fixture cache / user errors /
// work measures / gradient results (E6).
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"

namespace unravel::testing {

namespace fs = std::filesystem;

// ---- temporary directories -----------------------------------------------------------------

// A fresh directory under the system temp dir, removed with everything in it (read-only folders
// made writable first); UNRAVEL_KEEP_TMP=1 in the environment keeps it to look at.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("unravel_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    if (std::getenv("UNRAVEL_KEEP_TMP")) return;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0755);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }  // as a string

 private:
  fs::path path_;
};

// ---- files ---------------------------------------------------------------------------------

// The bytes of a file ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string s = slurp(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

inline nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(slurp(path)); }

// Writes `bytes` to `path` (created or truncated), failing the test when that does not work.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- commands and Python --------------------------------------------------------------------

struct CommandResult {
  int code = -1;    // exit status, -1 when killed by a signal
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command line, capturing stdout and stderr.
inline CommandResult run_command(const std::string& command) {
  TempDir capture("cmd");
  const std::string out = (capture / "out").string(), err = (capture / "err").string();
  const int status = std::system((command + " >" + out + " 2>" + err).c_str());
  CommandResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// The program under test (UNRAVEL_BIN, set by tests/CMakeLists.txt).
inline std::string unravel_bin() {
  const char* b = std::getenv("UNRAVEL_BIN");
  return b ? b : "unravel";
}

inline CommandResult run_unravel(const std::string& args) { return run_command(unravel_bin() + " " + args); }

// Debian's Python with torch and torchvision (the python3 first on PATH may lack them).
constexpr const char* kPython = "/usr/bin/python3";
inline CommandResult run_python(const std::string& args) { return run_command(std::string(kPython) + " " + args); }
// Whether that Python imports every module of `modules` ("torch", "torch, torchvision").
inline bool python_has(const std::string& modules) {
  return run_python("-c 'import " + modules + "'").code == 0;
}

// A script of the source tree (tests/data/NAME).
inline std::string test_script(const std::string& name) {
  return std::string(UNRAVEL_TEST_SOURCE_DIR) + "/tests/data/" + name;
}

// ---- fixture cache -----------------------------------------------------------------------------

// A directory of fixtures made once and shared by every test process of a build (ctest runs
// each test in its own process): DIR = <build>/test_cache/NAME-<hash of key> ($UNRAVEL_TEST_CACHE
// overrides), made by
// make(DIR) into a temporary sibling and renamed into place, so that concurrent processes never
// see half a fixture. `key` should hold everything the fixture depends on (e.g. the text of the
// script that writes it).
inline fs::path cached_fixture(const std::string& name, const std::string& key,
                               const std::function<void(const fs::path&)>& make) {
  const char* root_env = std::getenv("UNRAVEL_TEST_CACHE");
#ifdef UNRAVEL_TEST_CACHE_DIR
  const fs::path root = root_env ? fs::path(root_env) : fs::path(UNRAVEL_TEST_CACHE_DIR);
#else
  const fs::path root = root_env ? fs::path(root_env) : fs::temp_directory_path() / "unravel_test_cache";
#endif
  const fs::path dir = root / (name + "-" + std::to_string(std::hash<std::string>{}(key)));
  if (fs::exists(dir / ".complete")) return dir;
  fs::create_directories(root);
  const fs::path tmp = root / (name + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  make(tmp);
  std::ofstream(tmp / ".complete") << "ok\n";
  std::error_code ec;
  fs::rename(tmp, dir, ec);  // another process may have won the race: then use its copy
  if (ec) fs::remove_all(tmp);
  return dir;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// ---- user errors -------------------------------------------------------------------------------

// A user error of a command: exit status 1, exactly one line on stderr (at most ~200 characters +
// the program's prefix) that contains `needle`, no stack dump, nothing on stdout.
inline void expect_user_error(const CommandResult& r, const std::string& needle, const std::string& what) {
  EXPECT_EQ(r.code, 1) << what << "\n" << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << what << "\n" << r.err;
  EXPECT_LE(r.err.size(), 260u) << what << "\n" << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << what << ": no '" << needle << "' in\n" << r.err;
  EXPECT_EQ(r.err.find("frame #"), std::string::npos) << what << ": stack dump\n" << r.err;
  EXPECT_EQ(r.out, "") << what << ": output on stdout";
}

// What user_error_of returns when the call throws no UserError.
constexpr const char* kNoUserError = "(no UserError)";

// The message of the UserError that f throws, or kNoUserError.
inline std::string user_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const unravel::UserError& e) {
    return e.what();
  }
  return kNoUserError;
}

// f must throw a UserError of one line containing every part. SHOW_ERRORS=1 in the environment
// prints each message (to review their wording).
inline void expect_thrown_user_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const unravel::UserError& e) {
    const std::string msg = e.what();
    if (std::getenv("SHOW_ERRORS")) std::printf("  msg: %s\n", msg.c_str());
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const auto& p : parts) EXPECT_TRUE(has(msg, p)) << "message lacks '" << p << "': " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected UserError, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected UserError, nothing was thrown";
}

// ---- work measures ------------------------------------------------------------------------------
// Tests bound the work a call does, never its wall-clock time (which a busy machine stretches
// without a defect): CPU seconds of this process and bytes it read; the wall time is printed.

// CPU-time budgets are written for the Release build. Under AddressSanitizer (scripts/sanitize.sh)
// every memory access is checked and the same work takes several times longer (the 1 s budget of
// a hostile pickle was met in 1.75 s there), so budgets are scaled, never skipped: work that is
// bounded still passes, a loop that is not still fails.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr double kCpuBudgetScale = 10;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr double kCpuBudgetScale = 10;
#else
inline constexpr double kCpuBudgetScale = 1;
#endif
#else
inline constexpr double kCpuBudgetScale = 1;
#endif
inline double cpu_budget(double release_seconds) { return release_seconds * kCpuBudgetScale; }

// CPU seconds this process has used (all its threads).
inline double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Bytes this process has read through read(2) and the like (/proc/self/io "rchar"); -1 where the
// kernel does not account them.
inline int64_t process_bytes_read() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value)
    if (key == "rchar:") return value;
  return -1;
}

struct Work {
  double wall_s = 0;        ///< wall-clock seconds (printed, never asserted)
  double cpu_s = 0;         ///< CPU seconds of this process
  int64_t bytes_read = -1;  ///< bytes read (-1: not accounted here)
};

// The work f does; `label` non-empty prints a line with the wall and CPU times.
inline Work work_of(const std::function<void()>& f, const std::string& label = "") {
  const int64_t r0 = process_bytes_read();
  const double c0 = process_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  Work w;
  w.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  w.cpu_s = process_cpu_seconds() - c0;
  const int64_t r1 = process_bytes_read();
  w.bytes_read = r0 >= 0 && r1 >= 0 ? r1 - r0 : -1;
  if (!label.empty()) std::printf("  %s: %.3f s wall, %.3f s CPU\n", label.c_str(), w.wall_s, w.cpu_s);
  return w;
}

// ---- gradient results (E6) ------------------------------------------------------------------------

// The shortest window [a, b] of `w` whose sum holds at least `mass` of the total, found by trying
// every window (ties: the larger sum, then the leftmost).
inline std::pair<int, int> shortest_window_brute(const std::vector<double>& w, double mass) {
  double total = 0;
  for (double x : w) total += x;
  std::pair<int, int> best{0, static_cast<int>(w.size()) - 1};
  double best_sum = -1;
  for (int a = 0; a < static_cast<int>(w.size()); ++a) {
    double held = 0;
    for (int b = a; b < static_cast<int>(w.size()); ++b) {
      held += w[b];
      if (held < mass * total * (1 - 1e-12)) continue;
      const int width = b - a, best_width = best.second - best.first;
      if (best_sum < 0 || width < best_width || (width == best_width && held > best_sum * (1 + 1e-12))) {
        best = {a, b};
        best_sum = held;
      }
      break;  // longer windows from a are wider
    }
  }
  return best;
}

// The arithmetic that ties the per-length fields of a gradient result (the JSON of
// paths::to_json) together, recomputed here: rms = sqrt(mean_sq), sum_sq = mean_sq x paths,
// total = mean x paths (sample, brute) or rms x paths (exact), share = total / the sum of the
// totals, and the effective range = the shortest window holding `mass` of the totals.
inline void expect_gradient_arithmetic(const nlohmann::json& r) {
  const bool exact = r.at("method") == "exact";
  const nlohmann::json& lengths = r.at("lengths");
  bool totals = true;
  for (const auto& row : lengths) totals = totals && row.at("total").is_number();
  EXPECT_EQ(r.at("effective_basis"), totals ? "total" : "norm");
  std::vector<double> w;
  for (const auto& row : lengths) {
    SCOPED_TRACE("length " + row.at("length").dump());
    const double count = std::stod(row.at("paths").get<std::string>());
    if (row.at("mean_sq").is_number()) {
      const double ms = row.at("mean_sq").get<double>();
      EXPECT_NEAR(row.at("rms").get<double>(), std::sqrt(ms), 1e-15 * std::sqrt(ms) + 1e-300);
      EXPECT_NEAR(row.at("sum_sq").get<double>(), ms * count, 1e-14 * ms * count + 1e-300);
    }
    if (totals) {
      const double per_path = row.at(exact ? "rms" : "mean").get<double>();
      EXPECT_NEAR(row.at("total").get<double>(), per_path * count, 1e-14 * per_path * count + 1e-300);
    }
    w.push_back(row.at(totals ? "total" : "norm").get<double>());
  }
  double sum = 0;
  for (double x : w) sum += x;
  ASSERT_GT(sum, 0);
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_NEAR(lengths[i].at("share").get<double>(), w[i] / sum, 1e-15) << "share of length " << i;
  const auto [a, b] = shortest_window_brute(w, r.at("mass").get<double>());
  EXPECT_EQ(r.at("effective_range")[0], lengths[a].at("length"));
  EXPECT_EQ(r.at("effective_range")[1], lengths[b].at("length"));
  double held = 0;
  for (int i = a; i <= b; ++i) held += w[i];
  EXPECT_NEAR(r.at("effective_share").get<double>(), held / sum, 1e-14);
}

}  // namespace unravel::testing
