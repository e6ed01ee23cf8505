// Fuzz harness of the whole PyTorch file reader: form detection, zip or legacy layout, data.pkl,
// storages, then the named tensors and every element of each (so that a tensor reaching outside
// its storage is a sanitizer report). CRC checks are off: mutations must reach the pickle.
#include <cstdint>
#include <memory>
#include <string>

#include "core/errors.h"
#include "interop/torch_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unravel::interop;
  TorchFileLimits limits;
  limits.max_file_bytes = 1 << 24;
  limits.zip.max_entries = 1 << 12;
  limits.zip.max_inflated_entry = 1 << 22;
  limits.zip.max_inflated_total = 1 << 24;
  limits.zip.verify_crc = false;
  limits.pickle.max_ops = 1 << 20;
  limits.pickle.max_stack = 1 << 14;
  limits.pickle.max_marks = 1 << 10;
  limits.pickle.max_memo = 1 << 14;
  limits.pickle.max_values = 1 << 16;
  limits.pickle.max_items = 1 << 18;
  limits.max_walk_visits = 1 << 16;
  auto bytes = std::make_shared<const std::string>(reinterpret_cast<const char*>(data), size);
  try {
    TorchFile file = read_torch_file_bytes(bytes, "fuzz", limits);
    volatile uint64_t sink = 0;
    uint64_t budget = uint64_t{1} << 24;  // bytes copied out per input
    for (const NamedTensor& t : state_dict_tensors(file, limits)) {
      const uint64_t n = static_cast<uint64_t>(t.tensor.numel()) * t.tensor.element_size();
      if (n > budget) continue;
      budget -= n;
      const std::string elements = t.tensor.contiguous_bytes();
      sink = sink + elements.size() + (elements.empty() ? 0 : static_cast<uint8_t>(elements.back()));
    }
  } catch (const unravel::UserError&) {
  }
  return 0;
}
