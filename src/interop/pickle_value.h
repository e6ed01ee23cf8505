// The values a restricted pickle produces: a tree (a graph where the pickle shares references:
// shared values are shared, never copied) whose nodes a PickleDocument owns. Nothing is ever
// executed: classes and functions are (module, name) pairs, unknown objects keep their class,
// constructor arguments and BUILD state; PyTorch's storages and tensors are decoded.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unravel::interop {

enum class DType : uint8_t { Float32, Float64, Float16, BFloat16, Complex64, Complex128, Int64, Int32, Int16, Int8, UInt8, Bool };

struct DTypeInfo {
  DType dtype;
  int element_size;           // bytes
  const char* name;           // "float32", as torch prints it without "torch."
  const char* storage_class;  // "FloatStorage", as torch.save names it
};
const DTypeInfo& dtype_info(DType dtype);
// ("torch", "FloatStorage") -> Float32, ...; ("torch.storage", "UntypedStorage") -> UInt8 (raw
// bytes, what torch 2.x writes for an untyped storage); nullopt for anything else.
std::optional<DType> dtype_of_storage_class(std::string_view module, std::string_view name);

enum class Kind : uint8_t { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Set, Global, Object, Storage, Tensor };
const char* kind_name(Kind kind);  // "dict", "tensor", ...

struct Value;

struct StorageInfo {
  DType dtype = DType::UInt8;
  std::string key;          // names its bytes: <prefix>/data/<key> in a zip file
  std::string location;     // "cpu", "cuda:0": where it was saved from
  int64_t numel = 0;        // elements of dtype
  std::string_view bytes;   // numel * element size bytes, once the file has resolved it; else empty
};

struct TensorInfo {
  const Value* storage = nullptr;  // a Kind::Storage value
  int64_t storage_offset = 0;      // in elements
  std::vector<int64_t> sizes, strides;
  bool requires_grad = false;
};

struct Value {
  Kind kind = Kind::None;
  bool boolean = false;                            // Bool
  int64_t integer = 0;                             // Int
  double real = 0;                                 // Float
  std::string text;                                // String (UTF-8), Bytes; Global: module
  std::string name;                                // Global: name
  std::vector<Value*> items;                       // Tuple, List, Set; Object: see below
  std::vector<std::pair<Value*, Value*>> entries;  // Dict, in insertion order
  std::unique_ptr<StorageInfo> storage;            // Storage
  std::unique_ptr<TensorInfo> tensor;              // Tensor

  // Object: items = {class (any value, usually a Global), constructor args (a Tuple), BUILD
  // state or nullptr}.
  const Value* object_class() const { return items.at(0); }
  const Value* object_args() const { return items.at(1); }
  const Value* object_state() const { return items.at(2); }

  bool is_global(std::string_view module, std::string_view name) const;
  // The value under a String key of a Dict (the last one set), else nullptr.
  const Value* get(std::string_view key) const;
};

// Owns the values of one or more pickles; values keep their addresses (a deque never moves them).
class PickleDocument {
 public:
  PickleDocument() : values_(std::make_unique<std::deque<Value>>()) {}
  Value* make(Kind kind);
  size_t size() const { return values_->size(); }
  const Value& root() const { return *root_; }
  Value* mutable_root() { return root_; }
  void set_root(Value* v) { root_ = v; }
  // Every Storage value, in creation order (the file resolves their bytes).
  std::vector<Value*> storages();

 private:
  std::unique_ptr<std::deque<Value>> values_;
  Value* root_ = nullptr;
};

// A short printable description for messages: "dict of 3", "global torch.FloatStorage",
// "'conv1.weight'" (strings cut at 40 characters).
std::string describe(const Value& v);

}  // namespace unravel::interop
