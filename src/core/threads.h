// The thread policy of every command: how many compute threads to use, chosen from the cores
// this process may run on and how busy other processes keep them. libtorch's OpenMP threads
// spin at every barrier, so on a 2-core machine where another process holds one core, two
// threads ran 1.7-10x slower than one; on an idle machine two are the fastest. The default
// (`--threads 0`, "auto") therefore measures the other processes' load and re-measures it
// every couple of seconds; `--threads N` fixes N. Torch-free: the torch side applies the
// number (train/run.h, apply_thread_policy()).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace unravel {

// Cores this process may run on (sched_getaffinity; hardware_concurrency as a fallback).
int available_cores();

// CPU time counters of the whole machine and of this process, in seconds.
struct CpuSample {
  double machine_busy = 0;  ///< user+nice+system+irq+softirq+steal of all cores (/proc/stat)
  double self = 0;          ///< user+system of this process (all its threads)
  double wall = 0;          ///< monotonic clock
  bool valid = false;       ///< false where /proc/stat is unreadable (then: all cores)
};
CpuSample sample_cpu();
// Parses the aggregate "cpu " line of /proc/stat text into busy seconds (USER_HZ = 100 ticks
// per second assumed, as on Linux); false if the line is missing or malformed.
bool parse_proc_stat_busy(const std::string& text, double& busy_seconds);

// Cores kept busy by other processes between two samples (never negative).
double others_busy_cores(const CpuSample& a, const CpuSample& b);

// The rule: all cores, minus the cores other processes keep busy (rounded to the nearest
// whole core: 0.4 of a core of background work leaves all cores), at least 1.
int choose_threads(int cores, double others_busy);

// Re-measures the load of other processes every `interval_s` in a background thread and
// proposes a thread count by choose_threads(); a proposal that differs from the current one
// must hold for two measurements in a row before it is adopted (no flapping on a burst).
class ThreadGovernor {
 public:
  // Starts from a first measurement over `first_sample_s` (blocks that long).
  explicit ThreadGovernor(double interval_s = 2.0, double first_sample_s = 0.05);
  ~ThreadGovernor();
  ThreadGovernor(const ThreadGovernor&) = delete;
  ThreadGovernor& operator=(const ThreadGovernor&) = delete;

  int threads() const { return threads_.load(std::memory_order_relaxed); }
  int cores() const { return cores_; }
  double last_others_busy() const { return others_.load(std::memory_order_relaxed); }

 private:
  void loop();
  int cores_;
  double interval_s_;
  std::atomic<int> threads_{1};
  std::atomic<double> others_{0};
  std::atomic<bool> stop_{false};
  std::thread worker_;
};

}  // namespace unravel
