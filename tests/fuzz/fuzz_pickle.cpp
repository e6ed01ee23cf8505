// Fuzz harness of the pickle interpreter on raw bytes (with small limits, so that a hostile
// input costs little), then of the flattening walk over whatever value tree came out.
#include <cstdint>
#include <string_view>

#include "core/errors.h"
#include "interop/pickle.h"
#include "interop/torch_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unravel::interop;
  TorchFileLimits limits;
  limits.pickle.max_ops = 1 << 20;
  limits.pickle.max_stack = 1 << 14;
  limits.pickle.max_marks = 1 << 10;
  limits.pickle.max_memo = 1 << 14;
  limits.pickle.max_values = 1 << 16;
  limits.pickle.max_items = 1 << 18;
  limits.max_walk_visits = 1 << 16;
  try {
    UnpickleResult r = unpickle(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", limits.pickle);
    volatile size_t sink = r.consumed + describe(r.document.root()).size();
    for (const NamedTensor& t : named_tensors(r.document.root(), "fuzz", limits))
      sink = sink + t.name.size() + static_cast<size_t>(t.tensor.numel() & 0xFF) + t.tensor.is_contiguous();
    sink = sink + describe(find_state_dict(r.document.root())).size();
  } catch (const unravel::UserError&) {
  }
  return 0;
}
