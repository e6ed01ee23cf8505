// Internal to the pickle interpreter: the builder of values (limits, dictionary keys, storages by
// key), PyTorch's meaning of the callables and persistent ids its pickles use (pickle_torch.cpp),
// and the decoding of protocol 0's text arguments (pickle_text.cpp).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "interop/pickle.h"

namespace unravel::interop::detail {

class Builder {
 public:
  Builder(PickleDocument& doc, const PickleLimits& limits, std::string name)
      : doc_(doc), limits_(limits), name_(std::move(name)) {}

  const PickleLimits& limits() const { return limits_; }
  // The opcode being run, for messages.
  void at(uint64_t offset, uint8_t opcode) {
    offset_ = offset;
    opcode_ = opcode;
  }
  // UserError "<name>: pickle opcode 0x52 ('R') at byte 187: <problem>".
  [[noreturn]] void fail(const std::string& problem) const;

  Value* make(Kind kind);                 // counts against max_values
  void count_items(uint64_t n);           // counts against max_items
  Value* make_object(Value* cls, Value* args);
  // dict[key] = value with Python's semantics for str and int keys (a key set again keeps its
  // place and takes the new value); other keys (bools too) are appended.
  void set_item(Value* dict, Value* key, Value* value);
  // One Storage value per key; a key seen again must name the same dtype and size.
  Value* storage(DType dtype, const std::string& key, const std::string& location, int64_t numel);

 private:
  PickleDocument& doc_;
  const PickleLimits& limits_;
  std::string name_;
  uint64_t offset_ = 0;
  uint8_t opcode_ = 0;
  uint64_t items_ = 0;
  struct Key {
    const Value* value;
    size_t hash;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct KeyEq {
    bool operator()(const Key& a, const Key& b) const;
  };
  std::unordered_map<const Value*, size_t> key_hashes_;  // each key value hashed once
  std::unordered_map<const Value*, std::unordered_map<Key, size_t, KeyHash, KeyEq>> dict_index_;
  std::unordered_map<std::string, Value*> storages_;
};

// REDUCE: callable(*args) for the callables PyTorch files use; an opaque Object otherwise.
Value* reduce(Builder& b, Value* callable, Value* args);
// NEWOBJ: cls.__new__(cls, *args): a dict for the dict classes, an opaque Object otherwise.
Value* new_object(Builder& b, Value* cls, Value* args);
// BINPERSID / PERSID.
Value* persistent_load(Builder& b, Value* pid);

// Strict UTF-8 (no surrogates, no overlong forms).
bool valid_utf8(std::string_view s);
// STRING's argument: a quoted Python bytes literal with backslash escapes; nullopt if malformed.
std::optional<std::string> unquote_string(std::string_view quoted);
// UNICODE's argument: raw-unicode-escape (latin-1 bytes, \uXXXX, \UXXXXXXXX) to UTF-8.
std::optional<std::string> raw_unicode_escape(std::string_view text);

}  // namespace unravel::interop::detail
