// Threads, allocator and device (see compute.h).
#include "engine/compute.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>
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

// libtorch 2.4 replaced the per-device autocast switches by ones that take the device type.
#if defined(TORCH_VERSION_MAJOR) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
#define UNRAVEL_AUTOCAST_BY_DEVICE_TYPE 1
#endif

MixedPrecision::MixedPrecision(Precision precision, torch::Device device)
    : active_(precision == Precision::BF16), cuda_(device.is_cuda()) {
  if (!active_) return;
  namespace ac = at::autocast;
#ifdef UNRAVEL_AUTOCAST_BY_DEVICE_TYPE
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  was_enabled_ = ac::is_autocast_enabled(type);
  was_dtype_ = ac::get_autocast_dtype(type);
  ac::set_autocast_dtype(type, torch::kBFloat16);
  ac::set_autocast_enabled(type, true);
#else
  was_enabled_ = cuda_ ? ac::is_enabled() : ac::is_cpu_enabled();
  was_dtype_ = cuda_ ? ac::get_autocast_gpu_dtype() : ac::get_autocast_cpu_dtype();
  if (cuda_) {
    ac::set_autocast_gpu_dtype(torch::kBFloat16);
    ac::set_enabled(true);
  } else {
    ac::set_autocast_cpu_dtype(torch::kBFloat16);
    ac::set_cpu_enabled(true);
  }
#endif
  ac::increment_nesting();
}

MixedPrecision::~MixedPrecision() {
  if (!active_) return;
  namespace ac = at::autocast;
  if (ac::decrement_nesting() == 0) ac::clear_cache();
#ifdef UNRAVEL_AUTOCAST_BY_DEVICE_TYPE
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  ac::set_autocast_enabled(type, was_enabled_);
  ac::set_autocast_dtype(type, was_dtype_);
#else
  if (cuda_) {
    ac::set_enabled(was_enabled_);
    ac::set_autocast_gpu_dtype(was_dtype_);
  } else {
    ac::set_cpu_enabled(was_enabled_);
    ac::set_autocast_cpu_dtype(was_dtype_);
  }
#endif
}

// ----------------------------------------------------------------------------------------------
// Networks for experiments

}  // namespace unravel
