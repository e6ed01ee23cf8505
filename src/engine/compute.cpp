// Threads, allocator and device (see compute.h).
#include "engine/compute.h"

#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "core/errors.h"
#include "core/threads.h"
#include "core/util.h"

namespace unravel {

namespace {
std::unique_ptr<ThreadGovernor>& governor() {
  static std::unique_ptr<ThreadGovernor> g;
  return g;
}
}  // namespace

void setup_compute(int threads) {
  if (threads < 0) throw UserError(fmt::format("threads must be >= 0 (0 = automatic), got {}", threads));
  keep_freed_memory();
  if (threads == 0) {
    if (!governor()) governor() = std::make_unique<ThreadGovernor>();
    torch::set_num_threads(governor()->threads());
    if (std::getenv("UNRAVEL_THREADS_LOG"))
      std::cerr << fmt::format("[threads] start with {} (others keep {:.2f} cores busy)\n", governor()->threads(),
                               governor()->last_others_busy());
  } else {
    governor().reset();
    torch::set_num_threads(threads);
  }
}

void apply_thread_policy() {
  const auto& g = governor();
  if (!g) return;
  const int want = g->threads();
  if (want != torch::get_num_threads()) {
    if (std::getenv("UNRAVEL_THREADS_LOG"))
      std::cerr << fmt::format("[threads] {} -> {} (others keep {:.2f} cores busy)\n", torch::get_num_threads(), want,
                               g->last_others_busy());
    torch::set_num_threads(want);
  }
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      throw UserError("--device cuda: no CUDA device is available (this libtorch build or machine has none)");
    return torch::kCUDA;
  }
  throw UserError(fmt::format("--device must be auto, cpu or cuda, got '{}'", name));
}

// ----------------------------------------------------------------------------------------------
// Networks for experiments

}  // namespace unravel
