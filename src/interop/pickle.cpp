// The pickle virtual machine: reads opcodes with every length checked against the bytes left,
// keeps the stack, MARK frames and memo within limits, and builds values through the Builder.
// Shared references (DUP, memo GET) share the value: nothing is ever deep-copied.
#include "interop/pickle.h"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <unordered_map>

#include "core/errors.h"
#include "interop/pickle_internal.h"

namespace unravel::interop {
namespace {

using detail::Builder;

class Machine {
 public:
  Machine(std::string_view in, Builder& b) : in_(in), b_(b) {}
  Value* run();
  uint64_t consumed() const { return pos_; }

 private:
  std::string_view take(uint64_t n);
  uint64_t take_uint(int bytes);  // little-endian
  std::string_view take_line();
  std::string take_string(uint64_t n, bool check_utf8);
  void push(Value* v);
  Value* pop();
  Value* top();
  std::vector<Value*> pop_mark();
  Value* make_int(int64_t v);
  int64_t parse_int(std::string_view text);
  Value* long_from_bytes(std::string_view le);
  void memo_put(uint64_t key, Value* v);
  Value* memo_get(uint64_t key);
  void make_sequence(Kind kind, std::vector<Value*> items);
  void build();
  bool step(uint8_t op);  // false on STOP
  bool scalar(uint8_t op);
  bool container(uint8_t op);

  std::string_view in_;
  Builder& b_;
  uint64_t pos_ = 0;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  Value* result_ = nullptr;
};

std::string_view Machine::take(uint64_t n) {
  if (n > in_.size() - pos_)
    b_.fail(fmt::format("needs {} bytes but {} are left (truncated?)", n, in_.size() - pos_));
  std::string_view out = in_.substr(pos_, n);
  pos_ += n;
  return out;
}

uint64_t Machine::take_uint(int bytes) {
  std::string_view s = take(bytes);
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(s[i]);
  return v;
}

std::string_view Machine::take_line() {
  const size_t nl = in_.find('\n', pos_);
  if (nl == std::string_view::npos) b_.fail("text argument has no end of line (truncated?)");
  std::string_view line = in_.substr(pos_, nl - pos_);
  pos_ = nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

std::string Machine::take_string(uint64_t n, bool check_utf8) {
  const std::string_view bytes = take(n);  // checks what is left before anything is allocated
  if (n > b_.limits().max_string) b_.fail(fmt::format("string of {} bytes (limit {})", n, b_.limits().max_string));
  std::string s(bytes);
  if (check_utf8 && !detail::valid_utf8(s)) b_.fail("string is not valid UTF-8");
  return s;
}

void Machine::push(Value* v) {
  if (stack_.size() >= b_.limits().max_stack) b_.fail(fmt::format("stack deeper than {} values (limit)", b_.limits().max_stack));
  stack_.push_back(v);
}

Value* Machine::pop() {
  if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) b_.fail("stack underflow");
  Value* v = stack_.back();
  stack_.pop_back();
  return v;
}

Value* Machine::top() {
  if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) b_.fail("stack underflow");
  return stack_.back();
}

std::vector<Value*> Machine::pop_mark() {
  if (marks_.empty()) b_.fail("no MARK to pop to");
  std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
  stack_.resize(marks_.back());
  marks_.pop_back();
  return items;
}

Value* Machine::make_int(int64_t v) {
  Value* x = b_.make(Kind::Int);
  x->integer = v;
  return x;
}

int64_t Machine::parse_int(std::string_view t) {
  if (!t.empty() && t.back() == 'L') t.remove_suffix(1);  // protocol 0 LONG
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec == std::errc::result_out_of_range) b_.fail("integer beyond 64 bits");
  if (ec != std::errc() || end != t.data() + t.size() || t.empty()) b_.fail("malformed integer");
  return v;
}

// LONG1 / LONG4: little-endian two's complement; beyond 64 bits is an error.
Value* Machine::long_from_bytes(std::string_view le) {
  const size_t n = le.size();
  if (n == 0) return make_int(0);
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(le[i]); };
  const bool negative = byte(n - 1) & 0x80;
  for (size_t i = 8; i < n; ++i)
    if (byte(i) != (negative ? 0xFF : 0x00)) b_.fail("integer beyond 64 bits");
  if (n > 8 && ((byte(7) & 0x80) != 0) != negative) b_.fail("integer beyond 64 bits");
  uint64_t v = negative ? ~uint64_t{0} : 0;
  for (size_t i = std::min<size_t>(n, 8); i-- > 0;) v = v << 8 | byte(i);
  if (n < 8 && negative) v |= ~uint64_t{0} << (8 * n);
  return make_int(static_cast<int64_t>(v));
}

void Machine::memo_put(uint64_t key, Value* v) {
  if (memo_.size() >= b_.limits().max_memo && !memo_.count(key))
    b_.fail(fmt::format("memo of more than {} entries (limit)", b_.limits().max_memo));
  memo_[key] = v;
}

Value* Machine::memo_get(uint64_t key) {
  auto it = memo_.find(key);
  if (it == memo_.end()) b_.fail(fmt::format("memo key {} was never set", key));
  return it->second;
}

void Machine::make_sequence(Kind kind, std::vector<Value*> items) {
  b_.count_items(items.size());
  Value* v = b_.make(kind);
  v->items = std::move(items);
  push(v);
}

// BUILD: state onto the object below it. Objects keep their state (dict states merge, as
// __dict__.update would); an OrderedDict's (its _metadata) and a tensor's are accepted and ignored.
void Machine::build() {
  Value* state = pop();
  Value* inst = top();
  if (inst->kind == Kind::Dict || inst->kind == Kind::Tensor) return;
  if (inst->kind != Kind::Object) b_.fail(fmt::format("BUILD on {}", describe(*inst)));
  Value*& slot = inst->items[2];
  if (slot && slot->kind == Kind::Dict && state->kind == Kind::Dict) {
    Value* merged = b_.make(Kind::Dict);
    for (const auto& [k, v] : slot->entries) b_.set_item(merged, k, v);
    for (const auto& [k, v] : state->entries) b_.set_item(merged, k, v);
    slot = merged;
  } else {
    slot = state;
  }
}

// Runs one opcode; false after STOP. Control, memo and objects here; values in scalar() and
// container().
bool Machine::step(uint8_t op) {
  switch (op) {
    case 0x80: {  // PROTO
      const uint64_t proto = take_uint(1);
      if (proto > 5) b_.fail(fmt::format("pickle protocol {} (this reader knows 0-5)", proto));
      return true;
    }
    case 0x95: take(8); return true;  // FRAME: a hint for buffering, nothing to check
    case '.': result_ = pop(); return false;  // STOP
    case '(':  // MARK
      if (marks_.size() >= b_.limits().max_marks) b_.fail(fmt::format("more than {} open MARKs (limit)", b_.limits().max_marks));
      marks_.push_back(stack_.size());
      return true;
    case '0':  // POP: an empty frame pops its MARK, as Python's does
      if (!marks_.empty() && stack_.size() == marks_.back()) pop_mark();
      else pop();
      return true;
    case '1': pop_mark(); return true;  // POP_MARK
    case '2': push(top()); return true;  // DUP: the same value, shared
    case 'c':
    case 0x93: {  // GLOBAL (two text lines), STACK_GLOBAL (two strings)
      Value* g = b_.make(Kind::Global);
      if (op == 'c') {
        g->text = std::string(take_line());
        g->name = std::string(take_line());
        if (!detail::valid_utf8(g->text) || !detail::valid_utf8(g->name)) b_.fail("global name is not valid UTF-8");
      } else {
        Value* name = pop();
        Value* module = pop();
        if (module->kind != Kind::String || name->kind != Kind::String) b_.fail("STACK_GLOBAL needs two strings");
        g->text = module->text;
        g->name = name->text;
      }
      push(g);
      return true;
    }
    case 'R': {  // REDUCE
      Value* args = pop();
      Value* callable = pop();
      push(detail::reduce(b_, callable, args));
      return true;
    }
    case 0x81:
    case 0x92: {  // NEWOBJ, NEWOBJ_EX (keyword arguments are dropped)
      if (op == 0x92) pop();
      Value* args = pop();
      Value* cls = pop();
      push(detail::new_object(b_, cls, args));
      return true;
    }
    case 'b': build(); return true;  // BUILD
    case 'P':
    case 'Q': {  // PERSID (text), BINPERSID
      Value* pid = nullptr;
      if (op == 'P') {
        pid = b_.make(Kind::String);
        pid->text = std::string(take_line());
      } else {
        pid = pop();
      }
      push(detail::persistent_load(b_, pid));
      return true;
    }
    case 'p': memo_put(static_cast<uint64_t>(parse_int(take_line())), top()); return true;  // PUT
    case 'q': memo_put(take_uint(1), top()); return true;  // BINPUT
    case 'r': memo_put(take_uint(4), top()); return true;  // LONG_BINPUT
    case 0x94: memo_put(memo_.size(), top()); return true;  // MEMOIZE
    case 'g': push(memo_get(static_cast<uint64_t>(parse_int(take_line())))); return true;  // GET
    case 'h': push(memo_get(take_uint(1))); return true;  // BINGET
    case 'j': push(memo_get(take_uint(4))); return true;  // LONG_BINGET
    default:
      if (!scalar(op) && !container(op)) b_.fail("unsupported opcode");
      return true;
  }
}

// None, booleans, integers, floats, strings and bytes; false for any other opcode.
bool Machine::scalar(uint8_t op) {
  switch (op) {
    case 'N': push(b_.make(Kind::None)); return true;
    case 0x88:
    case 0x89: {  // NEWTRUE, NEWFALSE
      Value* v = b_.make(Kind::Bool);
      v->boolean = op == 0x88;
      push(v);
      return true;
    }
    case 'I': {  // INT (text); "01" / "00" are protocol 0's booleans
      const std::string_view t = take_line();
      if (t == "01" || t == "00") {
        Value* v = b_.make(Kind::Bool);
        v->boolean = t == "01";
        push(v);
      } else {
        push(make_int(parse_int(t)));
      }
      return true;
    }
    case 'L': push(make_int(parse_int(take_line()))); return true;  // LONG (text)
    case 'J': push(make_int(static_cast<int32_t>(take_uint(4)))); return true;  // BININT
    case 'K': push(make_int(static_cast<int64_t>(take_uint(1)))); return true;  // BININT1
    case 'M': push(make_int(static_cast<int64_t>(take_uint(2)))); return true;  // BININT2
    case 0x8a: push(long_from_bytes(take(take_uint(1)))); return true;  // LONG1
    case 0x8b: {  // LONG4
      const int64_t n = static_cast<int32_t>(take_uint(4));
      if (n < 0) b_.fail("LONG4 with a negative length");
      push(long_from_bytes(take(static_cast<uint64_t>(n))));
      return true;
    }
    case 'F':
    case 'G': {  // FLOAT (text), BINFLOAT (8 bytes, big-endian)
      Value* v = b_.make(Kind::Float);
      if (op == 'G') {
        uint64_t bits = 0;
        for (char c : take(8)) bits = bits << 8 | static_cast<uint8_t>(c);
        std::memcpy(&v->real, &bits, 8);
      } else {
        const std::string_view t = take_line();
        auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v->real);
        if (ec != std::errc() || end != t.data() + t.size()) b_.fail("malformed float");
      }
      push(v);
      return true;
    }
    case 'S': {  // STRING (quoted text)
      std::optional<std::string> s = detail::unquote_string(take_line());
      if (!s || !detail::valid_utf8(*s)) b_.fail("malformed or non-UTF-8 STRING argument");
      Value* v = b_.make(Kind::String);
      v->text = std::move(*s);
      push(v);
      return true;
    }
    case 'V': {  // UNICODE (raw-unicode-escape text)
      std::optional<std::string> s = detail::raw_unicode_escape(take_line());
      if (!s) b_.fail("malformed \\u escape in UNICODE");
      Value* v = b_.make(Kind::String);
      v->text = std::move(*s);
      push(v);
      return true;
    }
    case 'T':
    case 'U':
    case 'X':
    case 0x8c:
    case 0x8d: {  // BINSTRING, SHORT_BINSTRING, BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      const uint64_t n = op == 'T' ? static_cast<uint64_t>(static_cast<int32_t>(take_uint(4)))
                         : (op == 'U' || op == 0x8c) ? take_uint(1) : op == 'X' ? take_uint(4) : take_uint(8);
      Value* v = b_.make(Kind::String);
      v->text = take_string(n, /*check_utf8=*/true);
      push(v);
      return true;
    }
    case 'B':
    case 'C':
    case 0x8e:
    case 0x96: {  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
      const uint64_t n = op == 'B' ? take_uint(4) : op == 'C' ? take_uint(1) : take_uint(8);
      Value* v = b_.make(Kind::Bytes);
      v->text = take_string(n, /*check_utf8=*/false);
      push(v);
      return true;
    }
    default: return false;
  }
}

// Tuples, lists, sets and dicts; false for any other opcode.
bool Machine::container(uint8_t op) {
  switch (op) {
    case ')': make_sequence(Kind::Tuple, {}); return true;  // EMPTY_TUPLE
    case 't': make_sequence(Kind::Tuple, pop_mark()); return true;  // TUPLE
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
      std::vector<Value*> items(op - 0x84);
      for (size_t i = items.size(); i-- > 0;) items[i] = pop();
      make_sequence(Kind::Tuple, std::move(items));
      return true;
    }
    case ']': make_sequence(Kind::List, {}); return true;  // EMPTY_LIST
    case 'l': make_sequence(Kind::List, pop_mark()); return true;  // LIST
    case 0x8f: make_sequence(Kind::Set, {}); return true;  // EMPTY_SET
    case 0x91: make_sequence(Kind::Set, pop_mark()); return true;  // FROZENSET
    case 'a':
    case 'e':
    case 0x90: {  // APPEND, APPENDS, ADDITEMS
      std::vector<Value*> items = op == 'a' ? std::vector<Value*>{pop()} : pop_mark();
      Value* target = top();
      const Kind want = op == 0x90 ? Kind::Set : Kind::List;
      if (target->kind != want) b_.fail(fmt::format("adds items to {}, not a {}", describe(*target), kind_name(want)));
      b_.count_items(items.size());
      target->items.insert(target->items.end(), items.begin(), items.end());
      return true;
    }
    case '}': push(b_.make(Kind::Dict)); return true;  // EMPTY_DICT
    case 'd':
    case 's':
    case 'u': {  // DICT, SETITEM, SETITEMS; objects take items as a dict subclass would
      std::vector<Value*> kv;
      if (op == 's') {
        Value* value = pop();
        kv = {pop(), value};
      } else {
        kv = pop_mark();
      }
      if (kv.size() % 2) b_.fail("dict items come in an odd number");
      Value* target = op == 'd' ? b_.make(Kind::Dict) : top();
      if (target->kind != Kind::Dict && target->kind != Kind::Object)
        b_.fail(fmt::format("sets items on {}, not a dict", describe(*target)));
      for (size_t i = 0; i < kv.size(); i += 2) b_.set_item(target, kv[i], kv[i + 1]);
      if (op == 'd') push(target);
      return true;
    }
    default: return false;
  }
}

Value* Machine::run() {
  for (uint64_t ops = 0;; ++ops) {
    if (pos_ >= in_.size()) {
      b_.at(pos_, 0);
      b_.fail("the pickle ends without STOP (truncated?)");
    }
    if (ops >= b_.limits().max_ops) b_.fail(fmt::format("more than {} opcodes (limit)", b_.limits().max_ops));
    const auto op = static_cast<uint8_t>(in_[pos_]);
    b_.at(pos_, op);
    ++pos_;
    if (!step(op)) return result_;
  }
}

}  // namespace

UnpickleResult unpickle(std::string_view bytes, const std::string& name_for_errors, const PickleLimits& limits) {
  if (bytes.size() > limits.max_bytes)
    throw UserError(fmt::format("{}: pickle of {} bytes (limit {})", name_for_errors, bytes.size(), limits.max_bytes));
  UnpickleResult r;
  detail::Builder b(r.document, limits, name_for_errors);
  Machine m(bytes, b);
  r.document.set_root(m.run());
  r.consumed = m.consumed();
  return r;
}

}  // namespace unravel::interop
