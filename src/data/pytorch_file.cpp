// interop::TensorRef -> torch::Tensor.
#include "data/pytorch_file.h"

#include <fmt/format.h>

#include <cstring>

#include "core/errors.h"

namespace unravel {

namespace {

torch::ScalarType scalar_type(interop::DType d, const std::string& where) {
  using interop::DType;
  switch (d) {
    case DType::Float32: return torch::kFloat32;
    case DType::Float64: return torch::kFloat64;
    case DType::Float16: return torch::kFloat16;
    case DType::BFloat16: return torch::kBFloat16;
    case DType::Int64: return torch::kInt64;
    case DType::Int32: return torch::kInt32;
    case DType::Int16: return torch::kInt16;
    case DType::Int8: return torch::kInt8;
    case DType::UInt8: return torch::kUInt8;
    case DType::Bool: return torch::kBool;
    default: break;
  }
  throw UserError(fmt::format("{}: tensors of dtype {} are not supported", where, interop::dtype_info(d).name));
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& sizes) {
  if (sizes.empty()) return "scalar";
  return fmt::format("{}", fmt::join(sizes, "x"));
}

torch::Tensor to_torch(const interop::TensorRef& t, const std::string& where) {
  const torch::ScalarType type = scalar_type(t.dtype, where);
  torch::Tensor out = torch::empty(t.sizes, torch::TensorOptions().dtype(type));
  if (out.numel() == 0) return out;
  const std::string bytes = t.contiguous_bytes();
  if (static_cast<int64_t>(bytes.size()) != out.numel() * static_cast<int64_t>(out.element_size()))
    throw std::logic_error("to_torch: byte count does not match the shape");
  std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
  return out;
}

}  // namespace unravel
