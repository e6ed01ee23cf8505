// The thread policy (core/threads.h): the rule that picks the thread count from the cores and
// the load of other processes, the /proc/stat arithmetic behind the load, and a live check that
// a process spinning on one core is seen as one busy core.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/threads.h"

namespace unravel {
namespace {

TEST(Threads, RuleSubtractsTheCoresOthersKeepBusy) {
  EXPECT_EQ(choose_threads(2, 0.0), 2);   // idle: every core
  EXPECT_EQ(choose_threads(2, 0.4), 2);   // a little background work: still every core
  EXPECT_EQ(choose_threads(2, 0.6), 1);   // another process on most of a core
  EXPECT_EQ(choose_threads(2, 1.0), 1);
  EXPECT_EQ(choose_threads(2, 3.0), 1);   // never below one
  EXPECT_EQ(choose_threads(16, 5.2), 11);
  EXPECT_EQ(choose_threads(1, 0.0), 1);
  EXPECT_EQ(choose_threads(4, -1.0), 4);  // clock noise cannot add cores
}

TEST(Threads, ProcStatBusyTimeIsTheNonIdleTicks) {
  // user nice system idle iowait irq softirq steal guest guest_nice (ticks of 10 ms)
  double busy = 0;
  ASSERT_TRUE(parse_proc_stat_busy("cpu  100 20 30 5000 70 1 2 3 40 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n", busy));
  EXPECT_DOUBLE_EQ(busy, (100 + 20 + 30 + 1 + 2 + 3) / 100.0);  // idle and iowait excluded
  EXPECT_FALSE(parse_proc_stat_busy("cpu0 1 2 3 4 5 6 7 8\n", busy));  // no aggregate line
  EXPECT_FALSE(parse_proc_stat_busy("cpu  1 2 x\n", busy));
  EXPECT_FALSE(parse_proc_stat_busy("", busy));
}

TEST(Threads, OthersLoadIsMachineLoadMinusOurOwn) {
  CpuSample a, b;
  a.valid = b.valid = true;
  a.wall = 10;
  b.wall = 12;  // 2 s apart
  a.machine_busy = 100;
  b.machine_busy = 104;  // 4 core-seconds busy: both cores
  a.self = 50;
  b.self = 52;  // we used 2 of them
  EXPECT_DOUBLE_EQ(others_busy_cores(a, b), 1.0);
  b.self = 54;  // we used all of them
  EXPECT_DOUBLE_EQ(others_busy_cores(a, b), 0.0);
  b.self = 55;  // tick rounding may make us look bigger than the machine: not negative
  EXPECT_DOUBLE_EQ(others_busy_cores(a, b), 0.0);
  b.valid = false;  // no /proc/stat: assume idle (all cores)
  EXPECT_DOUBLE_EQ(others_busy_cores(a, b), 0.0);
}

// A child process spinning for a second is one busy core to us, whatever else runs (other
// load can only add to it).
TEST(Threads, ASpinningProcessIsSeenAsABusyCore) {
  if (available_cores() < 2) GTEST_SKIP() << "one core: nothing to share";
  const CpuSample a0 = sample_cpu();
  if (!a0.valid) GTEST_SKIP() << "/proc/stat is not readable here";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    volatile unsigned long x = 0;
    while (std::chrono::steady_clock::now() < end) x = x + 1;
    _exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const CpuSample a = sample_cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const CpuSample b = sample_cpu();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  EXPECT_GE(others_busy_cores(a, b), 0.7);
}

TEST(Threads, GovernorStartsFromAMeasurementAndStops) {
  ThreadGovernor g(/*interval_s=*/10, /*first_sample_s=*/0.05);  // only the first measurement
  EXPECT_GE(g.threads(), 1);
  EXPECT_LE(g.threads(), g.cores());
  EXPECT_EQ(g.threads(), choose_threads(g.cores(), g.last_others_busy()));
}

}  // namespace
}  // namespace unravel
