// What every command that computes does first: threads (core/threads.h), the allocator policy
// (core/util.h keep_freed_memory) and the device.
#pragma once
#include <torch/torch.h>

#include <string>

#include "core/precision.h"

namespace unravel {

// What every command that computes does first. threads = 0: automatic (core/threads.h: all
// the cores this process may use, minus those other processes keep busy, re-measured every
// 2 s in the background and applied by apply_thread_policy()); N > 0: exactly N. Also
// keep_freed_memory() (core/util.h): tensors reuse freed heap memory instead of fresh,
// page-faulting mmap()s.
void setup_compute(int threads);
// With automatic threads: adopts the governor's current choice (torch::set_num_threads). Called
// by the long loops (training steps, evaluation and sweep batches, gradient chunks) between
// units of work; a no-op with a fixed thread count.
void apply_thread_policy();
// --device auto|cpu|cuda; throws UserError for cuda without a CUDA build/GPU.
torch::Device parse_device(const std::string& name);

// Mixed precision for a training forward, the way torch.autocast does it: while a BF16 scope is
// alive, convolutions and matrix products on `device` cast their float32 inputs and weights to
// bfloat16 (the weights' casts are cached within the scope), while batch norm, the loss and the
// parameters stay float32. The backward runs after the scope, as in PyTorch. The scope restores
// the previous state, and the outermost one empties the cast cache (the weights change at every
// step). FP32: does nothing.
class MixedPrecision {
 public:
  MixedPrecision(Precision precision, torch::Device device);
  ~MixedPrecision();
  MixedPrecision(const MixedPrecision&) = delete;
  MixedPrecision& operator=(const MixedPrecision&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  torch::ScalarType was_dtype_ = torch::kFloat;
};

}  // namespace unravel
