// A pickle interpreter (protocols 0-5) restricted to the opcodes PyTorch files use. It never
// executes anything: globals are (module, name) values, REDUCE of a few known callables is
// interpreted (OrderedDict, PyTorch's tensor rebuilders), everything else becomes an opaque object.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "interop/pickle_value.h"

namespace unravel::interop {

// Every limit hit is a one-line UserError naming the input and the limit.
struct PickleLimits {
  uint64_t max_bytes = uint64_t{1} << 31;       // input size
  uint64_t max_ops = 50'000'000;                // opcodes executed (~1 s)
  uint64_t max_stack = uint64_t{1} << 18;       // values on the stack, all MARK frames together
  uint64_t max_marks = uint64_t{1} << 16;       // MARKs open at once
  uint64_t max_memo = uint64_t{1} << 20;        // memo entries
  uint64_t max_values = uint64_t{1} << 21;      // values created (~150 bytes each)
  uint64_t max_items = uint64_t{1} << 24;       // items put into containers, all together
  uint64_t max_string = uint64_t{1} << 30;      // bytes of one string or bytes value
  uint64_t max_tensor_dims = 64;                // dimensions of one tensor
  int64_t max_tensor_elements = int64_t{1} << 40;  // elements of one tensor (strides may repeat them)
};

// What ran: the document's root is the unpickled value; `consumed` the bytes up to and
// including STOP (several pickles follow one another in PyTorch's legacy format).
struct UnpickleResult {
  PickleDocument document;
  uint64_t consumed = 0;
};

// Unpickles one pickle from the start of `bytes`. Persistent ids are PyTorch's: ('storage',
// <torch.XStorage global>, key, location, numel[, view]) -> a Storage value (one per key, checked
// to agree), ('module', cls, ...) -> cls; anything else is an error. UserError (one line, naming
// `name_for_errors`, the opcode and its byte offset) for bad or unsupported input.
UnpickleResult unpickle(std::string_view bytes, const std::string& name_for_errors, const PickleLimits& limits = {});

}  // namespace unravel::interop
