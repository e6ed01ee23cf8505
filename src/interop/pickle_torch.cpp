// PyTorch's side of the pickle interpreter: the value builder (limits, dict keys, storages by
// key), the callables REDUCE interprets (OrderedDict, tensor and parameter rebuilders, TorchScript's
// list builders) and the persistent ids of storages. Tensors are checked against their storage.
#include <fmt/format.h>

#include "core/errors.h"
#include "interop/pickle_internal.h"

namespace unravel::interop::detail {

void Builder::fail(const std::string& problem) const {
  const char c = static_cast<char>(opcode_);
  throw UserError(fmt::format("{}: pickle opcode 0x{:02x}{} at byte {}: {}", name_, opcode_,
                              (c >= 33 && c < 127) ? fmt::format(" ('{}')", c) : std::string(), offset_, problem));
}

Value* Builder::make(Kind kind) {
  if (doc_.size() >= limits_.max_values) fail(fmt::format("more than {} values (limit)", limits_.max_values));
  return doc_.make(kind);
}

void Builder::count_items(uint64_t n) {
  items_ += n;
  if (items_ > limits_.max_items) fail(fmt::format("more than {} items in containers (limit)", limits_.max_items));
}

Value* Builder::make_object(Value* cls, Value* args) {
  Value* o = make(Kind::Object);
  o->items = {cls, args, nullptr};
  return o;
}

size_t Builder::KeyHash::operator()(const Key& k) const { return k.hash; }

bool Builder::KeyEq::operator()(const Key& a, const Key& b) const {
  if (a.value == b.value) return true;
  if (a.hash != b.hash || a.value->kind != b.value->kind) return false;
  return a.value->kind == Kind::String ? a.value->text == b.value->text : a.value->integer == b.value->integer;
}

void Builder::set_item(Value* dict, Value* key, Value* value) {
  count_items(1);
  if (key->kind == Kind::String || key->kind == Kind::Int) {
    // A string is hashed once however often it is used as a key (a memoized 1 MB key set a
    // million times costs one hash, not a million).
    auto cached = key_hashes_.find(key);
    if (cached == key_hashes_.end()) {
      const size_t h = key->kind == Kind::String ? std::hash<std::string>()(key->text) * 31 + 1
                                                 : std::hash<int64_t>()(key->integer) * 31 + 2;
      cached = key_hashes_.emplace(key, h).first;
    }
    auto [it, fresh] = dict_index_[dict].emplace(Key{key, cached->second}, dict->entries.size());
    if (!fresh) {  // Python's semantics: the key keeps its place and takes the new value
      dict->entries[it->second].second = value;
      return;
    }
  }
  dict->entries.emplace_back(key, value);
}

Value* Builder::storage(DType dtype, const std::string& key, const std::string& location, int64_t numel) {
  auto it = storages_.find(key);
  if (it != storages_.end()) {
    const StorageInfo& s = *it->second->storage;
    if (s.dtype != dtype || s.numel != numel)
      fail(fmt::format("storage '{}' is named again as {} {} after {} {}", key.substr(0, 40), numel,
                       dtype_info(dtype).name, s.numel, dtype_info(s.dtype).name));
    return it->second;
  }
  Value* v = make(Kind::Storage);
  v->storage = std::make_unique<StorageInfo>();
  v->storage->dtype = dtype;
  v->storage->key = key;
  v->storage->location = location;
  v->storage->numel = numel;
  storages_.emplace(key, v);
  return v;
}

namespace {

int64_t int_arg(Builder& b, const Value* v, const char* what) {
  if (v->kind == Kind::Int) return v->integer;
  if (v->kind == Kind::Bool) return v->boolean;
  b.fail(fmt::format("{} should be an int, not {}", what, describe(*v)));
}

std::vector<int64_t> int_list(Builder& b, const Value* v, const char* what) {
  if (v->kind != Kind::Tuple && v->kind != Kind::List) b.fail(fmt::format("{} should be a tuple, not {}", what, describe(*v)));
  if (v->items.size() > b.limits().max_tensor_dims)
    b.fail(fmt::format("{} has {} dimensions (limit {})", what, v->items.size(), b.limits().max_tensor_dims));
  std::vector<int64_t> out;
  for (const Value* x : v->items) {
    out.push_back(int_arg(b, x, what));
    if (out.back() < 0) b.fail(fmt::format("{} holds the negative value {}", what, out.back()));
  }
  return out;
}

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
// and _rebuild_tensor(storage, offset, size, stride). Every reachable element must lie inside
// the storage.
Value* rebuild_tensor(Builder& b, const Value* args, bool v2) {
  const auto& a = args->items;
  if (a.size() < (v2 ? 6u : 4u) || a.size() > (v2 ? 7u : 4u))
    b.fail(fmt::format("tensor rebuild takes {} arguments, got {}", v2 ? "6 or 7" : "4", a.size()));
  if (a[0]->kind != Kind::Storage) b.fail("tensor rebuild expects a storage, got " + describe(*a[0]));
  auto t = std::make_unique<TensorInfo>();
  t->storage = a[0];
  t->storage_offset = int_arg(b, a[1], "storage offset");
  t->sizes = int_list(b, a[2], "tensor size");
  t->strides = int_list(b, a[3], "tensor stride");
  if (v2) t->requires_grad = int_arg(b, a[4], "requires_grad") != 0;
  const int64_t storage_numel = a[0]->storage->numel;
  if (t->sizes.size() != t->strides.size())
    b.fail(fmt::format("tensor size has {} dimensions but its stride {}", t->sizes.size(), t->strides.size()));
  if (t->storage_offset < 0 || t->storage_offset > storage_numel)
    b.fail(fmt::format("storage offset {} lies outside its storage of {} elements", t->storage_offset, storage_numel));
  __int128 numel = 1;
  for (int64_t size : t->sizes) {
    numel *= size;  // each size is bounded too, so that an empty tensor has no absurd dimension
    if (numel > b.limits().max_tensor_elements || size > b.limits().max_tensor_elements)
      b.fail(fmt::format("tensor has more than {} elements (limit)", b.limits().max_tensor_elements));
  }
  __int128 last = t->storage_offset;  // each term < 2^126 and last stays below 2^63: no overflow
  for (size_t d = 0; d < t->sizes.size() && numel > 0; ++d) {
    last += static_cast<__int128>(t->sizes[d] - 1) * t->strides[d];
    if (last >= storage_numel)
      b.fail(fmt::format("tensor of {} elements reaches past the end of its storage of {} elements (size or stride too large)",
                         static_cast<int64_t>(numel), storage_numel));
  }
  Value* v = b.make(Kind::Tensor);
  v->tensor = std::move(t);
  return v;
}

// torch._utils._rebuild_parameter(tensor, requires_grad, hooks) and _with_state(..., state).
Value* rebuild_parameter(Builder& b, const Value* args) {
  const auto& a = args->items;
  if (a.size() < 3 || a.size() > 4) b.fail(fmt::format("parameter rebuild takes 3 or 4 arguments, got {}", a.size()));
  if (a[0]->kind != Kind::Tensor) b.fail("parameter rebuild expects a tensor, got " + describe(*a[0]));
  a[0]->tensor->requires_grad = int_arg(b, a[1], "requires_grad") != 0;
  return a[0];
}

// OrderedDict(), dict(), defaultdict(factory): an empty dict, or one filled from a list of pairs.
Value* make_dict(Builder& b, const Value* args, bool first_is_factory) {
  Value* d = b.make(Kind::Dict);
  const size_t from = first_is_factory ? 1 : 0;
  if (args->items.size() > from) {
    const Value* pairs = args->items[from];
    if (pairs->kind != Kind::List && pairs->kind != Kind::Tuple) b.fail("dict() expects a list of pairs, got " + describe(*pairs));
    for (Value* p : pairs->items) {
      if ((p->kind != Kind::Tuple && p->kind != Kind::List) || p->items.size() != 2)
        b.fail("dict() expects pairs, got " + describe(*p));
      b.set_item(d, p->items[0], p->items[1]);
    }
  }
  return d;
}

bool in_module(const Value* g, std::initializer_list<const char*> modules, std::string_view name) {
  if (g->kind != Kind::Global || g->name != name) return false;
  for (const char* m : modules)
    if (g->text == m) return true;
  return false;
}

}  // namespace

Value* reduce(Builder& b, Value* callable, Value* args) {
  if (args->kind != Kind::Tuple) b.fail("REDUCE arguments should be a tuple, not " + describe(*args));
  const auto& a = args->items;
  const Value* f = callable;
  if (f->is_global("torch._utils", "_rebuild_tensor_v2")) return rebuild_tensor(b, args, /*v2=*/true);
  if (f->is_global("torch._utils", "_rebuild_tensor")) return rebuild_tensor(b, args, /*v2=*/false);
  if (f->is_global("torch._utils", "_rebuild_parameter") || f->is_global("torch._utils", "_rebuild_parameter_with_state"))
    return rebuild_parameter(b, args);
  if (f->is_global("torch._tensor", "_rebuild_from_type_v2") || f->is_global("torch._tensor", "_rebuild_from_type")) {
    // (func, subclass, args, state): a tensor subclass; the tensor is what func(*args) builds.
    if (a.size() != 4) b.fail(fmt::format("_rebuild_from_type takes 4 arguments, got {}", a.size()));
    if (a[0]->kind == Kind::Global && a[0]->text == "torch._utils") return reduce(b, a[0], a[2]);
    return b.make_object(callable, args);
  }
  if (in_module(f, {"collections"}, "OrderedDict") || in_module(f, {"builtins", "__builtin__"}, "dict"))
    return make_dict(b, args, /*first_is_factory=*/false);
  if (in_module(f, {"collections"}, "defaultdict")) return make_dict(b, args, /*first_is_factory=*/true);
  if (f->kind == Kind::Global && f->text == "torch.jit._pickle") {
    // restore_type_tag(value, type_string); build_intlist(list), build_tensorlist(list), ...
    if ((f->name == "restore_type_tag" && a.size() == 2) || (f->name.rfind("build_", 0) == 0 && f->name != "build_tensor_from_id" && a.size() == 1))
      return a[0];
  }
  if (f->is_global("torch", "Size") && a.size() == 1 && a[0]->kind == Kind::Tuple) return a[0];
  if ((in_module(f, {"copyreg", "copy_reg"}, "_reconstructor")) && !a.empty())
    return b.make_object(a[0], args);  // (cls, base, state): an instance of cls
  return b.make_object(callable, args);
}

Value* new_object(Builder& b, Value* cls, Value* args) {
  if (args->kind != Kind::Tuple) b.fail("NEWOBJ arguments should be a tuple, not " + describe(*args));
  if (in_module(cls, {"collections"}, "OrderedDict") || in_module(cls, {"builtins", "__builtin__"}, "dict") ||
      in_module(cls, {"collections"}, "defaultdict"))
    return b.make(Kind::Dict);
  return b.make_object(cls, args);
}

Value* persistent_load(Builder& b, Value* pid) {
  if ((pid->kind != Kind::Tuple && pid->kind != Kind::List) || pid->items.empty() || pid->items[0]->kind != Kind::String)
    b.fail("unknown persistent id " + describe(*pid));
  const auto& a = pid->items;
  if (a[0]->text == "module" && a.size() >= 2) return a[1];  // legacy files: (module, class, file, source)
  if (a[0]->text != "storage") b.fail("unknown persistent id " + describe(*a[0]));
  if (a.size() != 5 && a.size() != 6)
    b.fail(fmt::format("a storage's persistent id has 5 or 6 fields, not {}", a.size()));
  const Value* cls = a[1];
  std::optional<DType> dtype = cls->kind == Kind::Global ? dtype_of_storage_class(cls->text, cls->name) : std::nullopt;
  if (!dtype) b.fail("unknown storage class " + describe(*cls));
  if (a[2]->kind != Kind::String || a[2]->text.empty() || a[2]->text.size() > 256)
    b.fail("a storage key should be a short non-empty string, not " + describe(*a[2]));
  if (a[3]->kind != Kind::String) b.fail("a storage location should be a string, not " + describe(*a[3]));
  const int64_t numel = int_arg(b, a[4], "storage size");
  if (numel < 0) b.fail(fmt::format("storage '{}' has a negative size {}", a[2]->text.substr(0, 40), numel));
  if (a.size() == 6 && a[5]->kind != Kind::None)
    b.fail("storage views (files from PyTorch before 0.4) are not supported");
  return b.storage(*dtype, a[2]->text, a[3]->text, numel);
}

}  // namespace unravel::interop::detail
