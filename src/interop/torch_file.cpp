// The three forms of PyTorch file on top of the zip reader and the pickle interpreter: telling
// them apart by content, locating data.pkl, and resolving every storage to bytes of the file
// (zip entries <prefix>/data/<key>, or the legacy format's length-prefixed blobs).
#include "interop/torch_file.h"

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "core/errors.h"

namespace unravel::interop {
namespace {

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c >= 32 && c < 127) ? c : '?';
  return s.size() > 60 ? out + "..." : out;
}

// Bytes of `numel` elements of `dtype`, or -1 beyond 2^62 (no file holds that many).
int64_t storage_bytes(const StorageInfo& s) {
  const int64_t size = dtype_info(s.dtype).element_size;
  return s.numel > (int64_t{1} << 62) / size ? -1 : s.numel * size;
}

void read_zip(TorchFile& f, std::shared_ptr<const std::string> bytes, const TorchFileLimits& limits,
              std::shared_ptr<ZipArchive>& zip, std::string& prefix, TorchFileFormat& format, PickleDocument& doc) {
  const std::string& name = f.name();
  zip = std::make_shared<ZipArchive>(ZipArchive::parse(std::move(bytes), name, limits.zip));
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip->entries()) {
    const size_t slash = e.name.find('/');
    if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl") != 0) continue;
    if (pkl) throw UserError(fmt::format("{}: zip archive holds two data.pkl ('{}' and '{}')", name, printable(pkl->name), printable(e.name)));
    pkl = &e;
  }
  if (!pkl) throw UserError(fmt::format("{}: zip archive has no <name>/data.pkl: not a PyTorch file", name));
  prefix = pkl->name.substr(0, pkl->name.size() - 9);
  if (zip->contains(prefix + "/byteorder")) {
    const std::string_view order = zip->data(prefix + "/byteorder");
    if (order != "little")
      throw UserError(fmt::format("{}: byte order '{}' (only little-endian files are supported)", name, printable(order)));
  }
  format = zip->contains(prefix + "/constants.pkl") ? TorchFileFormat::TorchScript : TorchFileFormat::Zip;
  for (const ZipEntry& e : zip->entries())
    if (e.name.rfind(prefix + "/code/", 0) == 0) format = TorchFileFormat::TorchScript;
  const std::string pkl_name = pkl->name;
  doc = std::move(unpickle(zip->data(pkl_name), fmt::format("{}: {}", name, printable(pkl_name)), limits.pickle).document);
  for (Value* v : doc.storages()) {
    StorageInfo& s = *v->storage;
    const std::string entry = prefix + "/data/" + s.key;
    if (!zip->contains(entry))
      throw UserError(fmt::format("{}: storage '{}' has no entry {} in the archive", name, printable(s.key), printable(entry)));
    const std::string_view data = zip->data(entry);
    const int64_t need = storage_bytes(s);
    if (need < 0 || static_cast<uint64_t>(need) > data.size())
      throw UserError(fmt::format("{}: storage '{}' of {} {} needs {} bytes but its entry holds {}", name, printable(s.key),
                                  s.numel, dtype_info(s.dtype).name, need < 0 ? "more than 2^62" : std::to_string(need), data.size()));
    s.bytes = data.substr(0, static_cast<size_t>(need));
  }
}

// The legacy format opens with a pickle of the magic number 0x1950a86a20f9469cfc6c (LONG1, or a
// text LONG at protocols 0 and 1). Returns the bytes it takes, or 0 when it is not there.
size_t legacy_magic_end(std::string_view b) {
  size_t at = 0;
  if (b.size() >= 2 && static_cast<uint8_t>(b[0]) == 0x80) at = 2;                     // PROTO n
  if (b.size() >= at + 9 && static_cast<uint8_t>(b[at]) == 0x95) at += 9;              // FRAME
  static const std::string_view kBinary("\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 13);
  static const std::string_view kText("L119547037146038801333356L\n.");
  for (std::string_view magic : {kBinary, kText})
    if (b.substr(at, magic.size()) == magic) return at + magic.size();
  return 0;
}

void read_legacy(TorchFile& f, std::string_view b, size_t at, const TorchFileLimits& limits, PickleDocument& doc) {
  const std::string& name = f.name();
  auto next = [&](const char* what) {
    const std::string_view rest = b.substr(at, std::min<uint64_t>(b.size() - at, limits.pickle.max_bytes));
    UnpickleResult r = unpickle(rest, fmt::format("{}: legacy {}", name, what), limits.pickle);
    at += r.consumed;
    return r;
  };
  UnpickleResult version = next("protocol version");
  if (version.document.root().kind != Kind::Int || version.document.root().integer != 1001)
    throw UserError(fmt::format("{}: legacy file of protocol version {} (expected 1001)", name, describe(version.document.root())));
  UnpickleResult sys_info = next("sys_info");
  const Value* little = sys_info.document.root().get("little_endian");
  if (little && !(little->kind == Kind::Bool && little->boolean))
    throw UserError(fmt::format("{}: a big-endian legacy file (only little-endian files are supported)", name));
  doc = std::move(next("object").document);
  UnpickleResult keys = next("storage keys");
  if (keys.document.root().kind != Kind::List)
    throw UserError(fmt::format("{}: legacy storage keys are {}, not a list", name, describe(keys.document.root())));
  std::unordered_map<std::string, Value*> by_key;
  for (Value* v : doc.storages()) by_key.emplace(v->storage->key, v);
  std::unordered_set<std::string> done;
  for (const Value* k : keys.document.root().items) {
    auto it = k->kind == Kind::String ? by_key.find(k->text) : by_key.end();
    if (it == by_key.end() || !done.insert(k->text).second)
      throw UserError(fmt::format("{}: legacy storage key {} is unknown or listed twice", name, describe(*k)));
    StorageInfo& s = *it->second->storage;
    if (b.size() - at < 8)
      throw UserError(fmt::format("{}: storage '{}' starts at byte {} but the file has {} bytes (truncated?)", name, printable(s.key), at, b.size()));
    uint64_t count = 0;
    for (int i = 7; i >= 0; --i) count = count << 8 | static_cast<uint8_t>(b[at + i]);
    at += 8;
    if (count != static_cast<uint64_t>(s.numel))
      throw UserError(fmt::format("{}: storage '{}' holds {} elements where the pickle says {}", name, printable(s.key), count, s.numel));
    const int64_t need = storage_bytes(s);
    if (need < 0 || static_cast<uint64_t>(need) > b.size() - at)
      throw UserError(fmt::format("{}: storage '{}' ends past byte {} but the file has {} bytes (truncated?)", name,
                                  printable(s.key), at + std::max<int64_t>(need, 0), b.size()));
    s.bytes = b.substr(at, static_cast<size_t>(need));
    at += static_cast<size_t>(need);
  }
  for (const auto& [key, v] : by_key)
    if (!done.count(key)) throw UserError(fmt::format("{}: storage '{}' is used but its data is missing", name, printable(key)));
}

}  // namespace

const char* format_name(TorchFileFormat format) {
  switch (format) {
    case TorchFileFormat::Zip: return "zip";
    case TorchFileFormat::TorchScript: return "torchscript";
    case TorchFileFormat::Legacy: return "legacy";
  }
  return "?";
}

std::shared_ptr<const void> TorchFile::owner() const {
  if (zip_) return zip_;
  return bytes_;
}

TorchFile read_torch_file(const std::string& path, const TorchFileLimits& limits) {
  return read_torch_file_bytes(std::make_shared<const std::string>(read_binary_file(path, limits.max_file_bytes)), path, limits);
}

TorchFile read_torch_file_bytes(std::shared_ptr<const std::string> bytes, std::string name_for_errors,
                                const TorchFileLimits& limits) {
  if (!bytes) throw std::logic_error("read_torch_file_bytes: null buffer");
  TorchFile f;
  f.name_ = std::move(name_for_errors);
  f.bytes_ = bytes;
  const std::string_view b(*bytes);
  if (b.size() > limits.max_file_bytes)
    throw UserError(fmt::format("{}: {} bytes is more than the limit of {}", f.name_, b.size(), limits.max_file_bytes));
  if (b.substr(0, 4) == "PK\x03\x04" || b.substr(0, 4) == "PK\x05\x06" || b.substr(0, 4) == "PK\x06\x06") {
    read_zip(f, bytes, limits, f.zip_, f.prefix_, f.format_, f.doc_);
  } else if (const size_t at = legacy_magic_end(b)) {
    f.format_ = TorchFileFormat::Legacy;
    read_legacy(f, b, at, limits, f.doc_);
  } else if (b.size() > 262 && b.substr(257, 5) == "ustar") {
    throw UserError(fmt::format("{}: a tar archive (PyTorch before 0.4?): this format is not supported", f.name_));
  } else {
    throw UserError(fmt::format("{}: not a PyTorch file (neither a zip archive nor a legacy torch.save pickle)", f.name_));
  }
  return f;
}

}  // namespace unravel::interop
