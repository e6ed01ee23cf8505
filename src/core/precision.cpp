// The closed set of arithmetic precisions (see precision.h).
#include "core/precision.h"

#include <fmt/format.h>

#include "core/errors.h"

namespace unravel {

Precision parse_precision(const std::string& name, const std::string& option) {
  if (name == "fp32") return Precision::FP32;
  if (name == "bf16") return Precision::BF16;
  throw UserError(fmt::format("{} must be fp32 or bf16, got '{}'", option, name.substr(0, 40)));
}

const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "fp32"; }

}  // namespace unravel
