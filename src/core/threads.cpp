// Thread policy: available cores, the load of other processes from /proc/stat, the rule, and
// the background governor (see threads.h).
#include "core/threads.h"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

namespace unravel {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

bool parse_proc_stat_busy(const std::string& text, double& busy_seconds) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu ", 0) != 0) continue;
    std::istringstream f(line.substr(4));
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    double v[8];
    for (double& x : v)
      if (!(f >> x) || x < 0) return false;
    busy_seconds = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0;
    return true;
  }
  return false;
}

CpuSample sample_cpu() {
  CpuSample s;
  s.wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    s.self = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
             1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  std::ifstream f("/proc/stat");
  if (!f) return s;
  std::string head;
  std::getline(f, head);
  s.valid = parse_proc_stat_busy(head + "\n", s.machine_busy);
  return s;
}

double others_busy_cores(const CpuSample& a, const CpuSample& b) {
  const double dt = b.wall - a.wall;
  if (!a.valid || !b.valid || dt <= 0) return 0.0;
  const double others = (b.machine_busy - a.machine_busy) - (b.self - a.self);
  return std::max(0.0, others / dt);
}

int choose_threads(int cores, double others_busy) {
  const int busy = static_cast<int>(std::lround(std::max(0.0, others_busy)));
  return std::max(1, cores - busy);
}

ThreadGovernor::ThreadGovernor(double interval_s, double first_sample_s)
    : cores_(available_cores()), interval_s_(interval_s) {
  const CpuSample a = sample_cpu();
  std::this_thread::sleep_for(std::chrono::duration<double>(first_sample_s));
  const CpuSample b = sample_cpu();
  // /proc/stat counts in 10 ms ticks: over a short first sample, round generously towards
  // "idle" only when nothing was seen at all.
  const double others = others_busy_cores(a, b);
  others_.store(others);
  threads_.store(choose_threads(cores_, others));
  if (cores_ > 1 && interval_s_ > 0) worker_ = std::thread([this] { loop(); });
}

ThreadGovernor::~ThreadGovernor() {
  stop_.store(true);
  if (worker_.joinable()) worker_.join();
}

void ThreadGovernor::loop() {
  CpuSample prev = sample_cpu();
  int pending = -1;
  while (!stop_.load()) {
    // sleep in short slices so that the destructor does not wait a whole interval
    for (double slept = 0; slept < interval_s_ && !stop_.load(); slept += 0.05)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (stop_.load()) break;
    const CpuSample now = sample_cpu();
    const double others = others_busy_cores(prev, now);
    prev = now;
    others_.store(others);
    const int want = choose_threads(cores_, others);
    if (want == threads_.load()) {
      pending = -1;
    } else if (want == pending) {
      threads_.store(want);
      pending = -1;
    } else {
      pending = want;
    }
  }
}

}  // namespace unravel
