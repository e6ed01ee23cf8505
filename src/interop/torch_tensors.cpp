// From a PyTorch value tree to named tensors: the bounded walk that flattens dicts, lists and
// module objects into dotted names in file order, the state-dict lookup, and TensorRef's
// element access.
#include <fmt/format.h>

#include <cstring>
#include <stdexcept>
#include <unordered_set>

#include "core/errors.h"
#include "interop/torch_file.h"

namespace unravel::interop {

int64_t TensorRef::numel() const {
  for (int64_t s : sizes)
    if (s == 0) return 0;
  int64_t n = 1;
  for (int64_t s : sizes)  // bounded when the tensor was read (max_tensor_elements)
    if (__builtin_mul_overflow(n, s, &n)) throw std::logic_error("TensorRef::numel: more elements than int64 holds");
  return n;
}

bool TensorRef::is_contiguous() const {
  if (numel() == 0) return true;  // then any stride goes, and the sizes after a 0 are unbounded
  int64_t expected = 1;
  for (size_t d = sizes.size(); d-- > 0;) {
    if (sizes[d] != 1 && strides[d] != expected) return false;
    expected *= sizes[d];  // a product of sizes: at most numel()
  }
  return true;
}

std::string TensorRef::contiguous_bytes(uint64_t max_bytes) const {
  const int64_t n = numel();
  const int size = element_size();
  if (static_cast<uint64_t>(n) > max_bytes / static_cast<uint64_t>(size))
    throw UserError(fmt::format("tensor in storage '{}': {} elements of {} bytes is more than {} bytes", storage_key, n, size, max_bytes));
  std::string out(static_cast<size_t>(n) * size, '\0');
  if (n == 0) return out;
  int64_t last = storage_offset;  // the storage must hold every element (checked when read)
  for (size_t d = 0; d < sizes.size(); ++d) last += (sizes[d] - 1) * strides[d];
  if (static_cast<uint64_t>(last) >= storage.size() / size)
    throw std::logic_error("TensorRef::contiguous_bytes: storage '" + storage_key + "' has no bytes for this tensor");
  const size_t dims = sizes.size();
  std::vector<int64_t> index(dims, 0);
  int64_t at = storage_offset;  // element index into the storage, checked in range when read
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out.data() + i * size, storage.data() + at * size, static_cast<size_t>(size));
    for (size_t d = dims; d-- > 0;) {  // odometer over the row-major index
      if (++index[d] < sizes[d]) {
        at += strides[d];
        break;
      }
      at -= (sizes[d] - 1) * strides[d];
      index[d] = 0;
    }
  }
  return out;
}

TensorRef tensor_ref(const Value& v, std::shared_ptr<const void> owner) {
  if (v.kind != Kind::Tensor) throw std::logic_error("tensor_ref: not a tensor value");
  const TensorInfo& t = *v.tensor;
  const StorageInfo& s = *t.storage->storage;
  return TensorRef{s.dtype, s.key, s.bytes, t.storage_offset, t.sizes, t.strides, t.requires_grad, std::move(owner)};
}

namespace {

struct Walk {
  const std::string& name;
  const TorchFileLimits& limits;
  std::shared_ptr<const void> owner;
  uint64_t visits = 0;
  std::vector<NamedTensor> out;
};

std::string join(const Walk& w, const std::string& prefix, const std::string& key) {
  if (prefix.size() + key.size() >= w.limits.max_name_length)
    throw UserError(fmt::format("{}: a tensor name longer than {} characters (limit)", w.name, w.limits.max_name_length));
  return prefix.empty() ? key : prefix + "." + key;
}

void walk(Walk& w, const Value& v, const std::string& prefix, int depth);

void walk_entries(Walk& w, const std::vector<std::pair<Value*, Value*>>& entries, const std::string& prefix, int depth,
                  bool module_state) {
  for (const auto& [k, x] : entries) {
    if (k->kind == Kind::String) {
      // nn.Module's __dict__: its _parameters, _buffers and _modules are its state_dict.
      const bool transparent = module_state && (k->text == "_parameters" || k->text == "_buffers" || k->text == "_modules");
      walk(w, *x, transparent ? prefix : join(w, prefix, k->text), depth + 1);
    } else if (k->kind == Kind::Int) {
      walk(w, *x, join(w, prefix, std::to_string(k->integer)), depth + 1);
    }
  }
}

void walk(Walk& w, const Value& v, const std::string& prefix, int depth) {
  if (++w.visits > w.limits.max_walk_visits)
    throw UserError(fmt::format("{}: more than {} values to visit (shared references?)", w.name, w.limits.max_walk_visits));
  if (depth > w.limits.max_walk_depth)
    throw UserError(fmt::format("{}: values nested deeper than {} (limit)", w.name, w.limits.max_walk_depth));
  switch (v.kind) {
    case Kind::Tensor:
      if (w.out.size() >= w.limits.max_tensors)
        throw UserError(fmt::format("{}: more than {} tensors (shared references?)", w.name, w.limits.max_tensors));
      w.out.push_back({prefix, tensor_ref(v, w.owner)});
      return;
    case Kind::Dict: walk_entries(w, v.entries, prefix, depth, /*module_state=*/false); return;
    case Kind::List:
    case Kind::Tuple:
      for (size_t i = 0; i < v.items.size(); ++i) walk(w, *v.items[i], join(w, prefix, std::to_string(i)), depth + 1);
      return;
    case Kind::Object: {
      walk_entries(w, v.entries, prefix, depth, /*module_state=*/false);  // a dict subclass's items
      const Value* state = v.object_state();
      if (!state) return;
      if (state->kind == Kind::Dict) {
        walk_entries(w, state->entries, prefix, depth, /*module_state=*/true);
      } else if (state->kind == Kind::Tuple && state->items.size() == 2) {  // (dict state, slot state)
        for (const Value* part : state->items)
          if (part->kind == Kind::Dict) walk_entries(w, part->entries, prefix, depth, /*module_state=*/true);
      } else {
        walk(w, *state, prefix, depth + 1);
      }
      return;
    }
    default: return;  // scalars, strings, sets, globals, bare storages
  }
}

}  // namespace

std::vector<NamedTensor> named_tensors(const Value& root, const std::string& name_for_errors, const TorchFileLimits& limits,
                                       std::shared_ptr<const void> owner) {
  Walk w{name_for_errors, limits, std::move(owner), 0, {}};
  walk(w, root, "", 0);
  return std::move(w.out);
}

const Value& find_state_dict(const Value& root) {
  for (const char* key : {"state_dict", "model_state_dict", "model"}) {
    const Value* v = root.get(key);
    if (v && (v->kind == Kind::Dict || v->kind == Kind::Object)) return *v;
  }
  return root;
}

std::vector<NamedTensor> state_dict_tensors(const TorchFile& file, const TorchFileLimits& limits) {
  std::vector<NamedTensor> out = named_tensors(find_state_dict(file.root()), file.name(), limits, file.owner());
  if (out.empty())
    throw UserError(fmt::format("{}: holds no tensors ({} at its root)", file.name(), describe(file.root())));
  const std::string dp = "module.";
  bool all_dp = true;
  for (const auto& t : out) all_dp = all_dp && t.name.rfind(dp, 0) == 0;
  std::unordered_set<std::string> seen;
  for (auto& t : out) {
    if (all_dp) t.name.erase(0, dp.size());
    if (!seen.insert(t.name).second)
      throw UserError(fmt::format("{}: tensor name '{}' appears twice", file.name(), t.name.substr(0, 80)));
  }
  return out;
}

}  // namespace unravel::interop
