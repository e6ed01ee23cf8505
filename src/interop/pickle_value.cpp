// The pickle value model: dtype tables (PyTorch storage classes), value construction in a
// document, lookups and short descriptions for error messages.
#include "interop/pickle_value.h"

#include <fmt/format.h>

#include <stdexcept>

namespace unravel::interop {
namespace {

constexpr DTypeInfo kDTypes[] = {
    {DType::Float32, 4, "float32", "FloatStorage"},       {DType::Float64, 8, "float64", "DoubleStorage"},
    {DType::Float16, 2, "float16", "HalfStorage"},        {DType::BFloat16, 2, "bfloat16", "BFloat16Storage"},
    {DType::Complex64, 8, "complex64", "ComplexFloatStorage"},
    {DType::Complex128, 16, "complex128", "ComplexDoubleStorage"},
    {DType::Int64, 8, "int64", "LongStorage"},            {DType::Int32, 4, "int32", "IntStorage"},
    {DType::Int16, 2, "int16", "ShortStorage"},           {DType::Int8, 1, "int8", "CharStorage"},
    {DType::UInt8, 1, "uint8", "ByteStorage"},            {DType::Bool, 1, "bool", "BoolStorage"},
};

}  // namespace

const DTypeInfo& dtype_info(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d;
  throw std::logic_error("dtype_info: unknown dtype");
}

std::optional<DType> dtype_of_storage_class(std::string_view module, std::string_view name) {
  // torch.save normalises CUDA storages to the CPU class; old files may still name torch.cuda.
  if (module != "torch" && module != "torch.storage" && module != "torch.cuda") return std::nullopt;
  if (name == "UntypedStorage" || name == "_UntypedStorage") return DType::UInt8;
  for (const auto& d : kDTypes)
    if (name == d.storage_class) return d.dtype;
  return std::nullopt;
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Set: return "set";
    case Kind::Global: return "global";
    case Kind::Object: return "object";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

bool Value::is_global(std::string_view module, std::string_view global_name) const {
  return kind == Kind::Global && text == module && name == global_name;
}

const Value* Value::get(std::string_view key) const {
  if (kind != Kind::Dict) return nullptr;
  const Value* found = nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::String && k->text == key) found = v;
  return found;
}

Value* PickleDocument::make(Kind kind) {
  Value& v = values_->emplace_back();
  v.kind = kind;
  return &v;
}

std::vector<Value*> PickleDocument::storages() {
  std::vector<Value*> out;
  for (Value& v : *values_)
    if (v.kind == Kind::Storage) out.push_back(&v);
  return out;
}

namespace {

std::string short_text(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 40)) out += (c >= 32 && c < 127) ? c : '?';
  return s.size() > 40 ? out + "..." : out;
}

}  // namespace

std::string describe(const Value& v) {
  switch (v.kind) {
    case Kind::None: return "None";
    case Kind::Bool: return v.boolean ? "True" : "False";
    case Kind::Int: return std::to_string(v.integer);
    case Kind::Float: return fmt::format("{}", v.real);
    case Kind::String: return "'" + short_text(v.text) + "'";
    case Kind::Bytes: return fmt::format("bytes of {}", v.text.size());
    case Kind::Tuple:
    case Kind::List:
    case Kind::Set: return fmt::format("{} of {}", kind_name(v.kind), v.items.size());
    case Kind::Dict: return fmt::format("dict of {}", v.entries.size());
    case Kind::Global: return "global " + short_text(v.text + "." + v.name);
    case Kind::Object: {
      const Value* cls = v.object_class();
      return "object of " + (cls->kind == Kind::Global ? short_text(cls->text + "." + cls->name) : std::string(kind_name(cls->kind)));
    }
    case Kind::Storage: return fmt::format("storage '{}' of {} {}", short_text(v.storage->key), v.storage->numel,
                                           dtype_info(v.storage->dtype).name);
    case Kind::Tensor: return fmt::format("{} tensor of {} dims", dtype_info(v.tensor->storage->storage->dtype).name,
                                          v.tensor->sizes.size());
  }
  return "?";
}

}  // namespace unravel::interop
