// Helpers shared by the test programs: temporary directories, running the unravel program and
// Python (Debian's python3-torch at /usr/bin/python3), reading files, and the assertion that a
// command failed as a user error: exit status 1, one short line on stderr naming the input.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace unravel::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it.
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
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(slurp(path)); }

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

// A script of the source tree (tests/data/NAME).
inline std::string test_script(const std::string& name) {
  return std::string(UNRAVEL_TEST_SOURCE_DIR) + "/tests/data/" + name;
}

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

// A user error: exit status 1, exactly one line on stderr (at most ~200 characters + the
// program's prefix) that contains `needle`, nothing on stdout.
inline void expect_user_error(const CommandResult& r, const std::string& needle, const std::string& what) {
  EXPECT_EQ(r.code, 1) << what << "\n" << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << what << "\n" << r.err;
  EXPECT_LE(r.err.size(), 260u) << what << "\n" << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << what << ": no '" << needle << "' in\n" << r.err;
}

}  // namespace unravel::testing
