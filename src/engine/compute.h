// What every command that computes does first: threads (core/threads.h), the allocator policy
// (core/util.h keep_freed_memory) and the device.
#pragma once
#include <torch/torch.h>

#include <string>

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

}  // namespace unravel
