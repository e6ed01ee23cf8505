// --nproc N: data-parallel training on one machine. Ranks 1..N-1 are this program again (fork +
// exec of the same command line with --world-size/--rank/--store), rank 0 is this process. A
// rank that fails stops the others: a watchdog reaps the children, and each child dies with its
// parent (PR_SET_PDEATHSIG), so no rank is left waiting in a collective.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "core/errors.h"
#include "core/threads.h"
#include "core/util.h"

namespace unravel::cli {

namespace {

std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}

// The command line without the flags a rank gets its own values of.
std::vector<std::string> rank_arguments() {
  const std::vector<std::string>& all = command_line();
  std::vector<std::string> out;
  for (size_t i = 1; i < all.size(); ++i) {
    const std::string& a = all[i];
    if (a == "--nproc" || a == "--threads") {
      ++i;  // and its value
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a.rfind("--threads=", 0) == 0) continue;
    out.push_back(a);
  }
  return out;
}

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int status = 0;
  bool done = false;
  std::string log;
};

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "stopped";
}

// Starts this program again with `args` (rank r), its output going to `log`; the child dies with
// its parent. Returns the child's pid, or -1 when fork fails.
pid_t spawn_rank(std::vector<std::string> args, const std::string& log, int r) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ::execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "unravel: exec of rank %d failed\n", r);
  ::_exit(127);
}

// Reaps the children that have ended; returns the first that failed, or nullptr. The caller
// holds the lock that guards `children`.
const Child* reap(std::vector<Child>& children) {
  const Child* failed = nullptr;
  for (auto& c : children) {
    int st = 0;
    if (!c.done && ::waitpid(c.pid, &st, WNOHANG) == c.pid) c.done = true, c.status = st;
    if (c.done && c.status != 0 && !failed) failed = &c;
  }
  return failed;
}

void kill_children(std::vector<Child>& children) {
  for (auto& c : children)
    if (!c.done) ::kill(c.pid, SIGKILL);
}

// Reaps the children every 100 ms until all have ended. When one fails while rank 0 still runs
// (main_done false), rank 0 gets a second to fail alike (the same bad input, a NaN loss: its own
// message is the better one); then this names the failed rank, stops everything and exits 1.
std::thread start_watchdog(std::vector<Child>& children, std::mutex& mu, std::atomic<bool>& main_done, int nproc,
                           const std::string& store_path) {
  return std::thread([&children, &mu, &main_done, nproc, store_path] {
    for (;;) {
      bool all_done = true;
      const Child* failed = nullptr;
      {
        std::lock_guard<std::mutex> lock(mu);
        failed = reap(children);
        for (const auto& c : children) all_done = all_done && c.done;
      }
      if (failed && !main_done) {
        for (int i = 0; i < 20 && !main_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::lock_guard<std::mutex> lock(mu);
        if (!main_done) {
          std::fprintf(stderr, "unravel: error: rank %d of %d %s; see %s\n", failed->rank, nproc,
                       describe(failed->status).c_str(), failed->log.c_str());
          kill_children(children);
          std::remove(store_path.c_str());
          ::_exit(1);
        }
      }
      if (all_done) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

// The first child that failed, as a line naming it and its log, waiting up to a second for the
// watchdog's bookkeeping to see it; "" when none failed.
std::string failed_child(std::vector<Child>& children, std::mutex& mu, int nproc) {
  for (int i = 0; i < 20; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (const Child* c = reap(children))
        return fmt::format("rank {} of {} {}; see {}", c->rank, nproc, describe(c->status), c->log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "";
}

}  // namespace

void set_command_line(int argc, char** argv) {
  command_line().assign(argv, argv + argc);
}

void launch_local_ranks(int nproc, int threads, const std::string& dir,
                        const std::function<void(int, const std::string&)>& rank0) {
  if (nproc < 1) throw UserError(fmt::format("--nproc must be at least 1, got {}", nproc));
  const int cores = available_cores();
  const int per_rank = std::max(1, (threads > 0 ? threads : cores) / nproc);
  make_dirs(dir);
  const std::string store_path = fmt::format("{}/.c10d-store-{}", dir, ::getpid());
  std::remove(store_path.c_str());
  const std::string store = "file:" + store_path;

  std::vector<Child> children;
  for (int r = 1; r < nproc; ++r) {
    Child c;
    c.rank = r;
    c.log = fmt::format("{}/rank-{}.log", dir, r);
    std::vector<std::string> args{"/proc/self/exe"};
    for (auto& a : rank_arguments()) args.push_back(a);
    for (const std::string& a : {std::string("--threads"), std::to_string(per_rank), std::string("--world-size"),
                                 std::to_string(nproc), std::string("--rank"), std::to_string(r),
                                 std::string("--store"), store})
      args.push_back(a);
    const pid_t pid = spawn_rank(args, c.log, r);
    if (pid < 0) {
      kill_children(children);
      throw UserError(fmt::format("--nproc {}: cannot start rank {}: fork failed", nproc, r));
    }
    c.pid = pid;
    children.push_back(c);
  }

  // The watchdog reaps children; while rank 0 still trains, a failed child stops everything.
  std::mutex mu;
  std::atomic<bool> main_done{false};
  std::thread watchdog = start_watchdog(children, mu, main_done, nproc, store_path);
  auto stop_children = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      main_done = true;
      kill_children(children);
    }
    watchdog.join();
    std::remove(store_path.c_str());
  };
  try {
    rank0(per_rank, store);
  } catch (const PeerError&) {
    // Rank 0 lost its peers: the cause is a child that failed first.
    const std::string cause = failed_child(children, mu, nproc);
    stop_children();
    if (!cause.empty()) throw UserError(cause);
    throw;
  } catch (...) {  // rank 0's own error (the ranks failing alike, e.g. a NaN loss, report it too)
    stop_children();
    throw;
  }
  main_done = true;
  watchdog.join();
  std::remove(store_path.c_str());
  for (const auto& c : children)
    if (c.status != 0)
      throw UserError(fmt::format("rank {} of {} {}; see {}", c.rank, nproc, describe(c.status), c.log));
}

}  // namespace unravel::cli
