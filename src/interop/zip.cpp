// Zip archive reader: end-of-central-directory search (ZIP64 aware), central directory walk with
// every offset and size checked against the buffer, local headers cross-checked, CRC-32 verified
// on every read, deflate inflated into a buffer of exactly the declared size.
#include "interop/zip.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/errors.h"

namespace unravel::interop {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64Sig = 0x06064b50, kLocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22, kLocatorSize = 20, kEocd64Size = 56, kCentralSize = 46, kLocalSize = 30;
constexpr uint32_t kFull32 = 0xFFFFFFFFu;

uint16_t u16(std::string_view b, uint64_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(b[at]) | static_cast<uint8_t>(b[at + 1]) << 8);
}
uint32_t u32(std::string_view b, uint64_t at) { return u16(b, at) | static_cast<uint32_t>(u16(b, at + 2)) << 16; }
uint64_t u64(std::string_view b, uint64_t at) { return u32(b, at) | static_cast<uint64_t>(u32(b, at + 4)) << 32; }

// [at, at + len) lies inside a buffer of `size` bytes (no overflow).
bool fits(uint64_t at, uint64_t len, uint64_t size) { return at <= size && len <= size - at; }

// A printable, bounded copy of an entry name for error messages.
std::string printable(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 120)) out += (c >= 32 && c < 127) ? c : '?';
  if (name.size() > 120) out += "...";
  return out;
}

uint32_t crc_of(std::string_view data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(data.data());
  for (size_t left = data.size(); left > 0;) {
    const auto n = static_cast<uInt>(std::min<size_t>(left, size_t{1} << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  return static_cast<uint32_t>(crc);
}

// Values a zip64 extra field (id 1) overrides: those whose 32-bit field is all ones, in order.
struct Zip64Fields {
  uint64_t size, compressed_size, offset;
};

// Returns false when the extra field is malformed or lacks a value it must carry.
bool apply_zip64(std::string_view extra, Zip64Fields& f, bool want_size, bool want_csize, bool want_offset) {
  for (uint64_t at = 0; at + 4 <= extra.size();) {
    const uint16_t id = u16(extra, at), len = u16(extra, at + 2);
    if (!fits(at + 4, len, extra.size())) return false;
    if (id == 1) {
      uint64_t p = at + 4;
      const uint64_t end = p + len;
      auto take = [&](uint64_t& v) {
        if (p + 8 > end) return false;
        v = u64(extra, p);
        p += 8;
        return true;
      };
      if (want_size && !take(f.size)) return false;
      if (want_csize && !take(f.compressed_size)) return false;
      if (want_offset && !take(f.offset)) return false;
      return true;
    }
    at += 4 + uint64_t{len};
  }
  return !(want_size || want_csize || want_offset);
}

}  // namespace

std::string read_binary_file(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError(fmt::format("cannot read {}: not a regular file", path));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw UserError(fmt::format("{}: {} bytes is more than the limit of {} bytes", path, st.st_size, max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(fd);
      throw UserError(fmt::format("cannot read {}: {}", path, err ? std::strerror(err) : "file shrank while reading"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

ZipArchive::ZipArchive(std::shared_ptr<const std::string> owner, std::string_view bytes, std::string name,
                       const ZipLimits& limits)
    : owner_(std::move(owner)), bytes_(bytes), name_(std::move(name)), limits_(limits) {}

ZipArchive ZipArchive::open(const std::string& path, const ZipLimits& limits) {
  return parse(std::make_shared<const std::string>(read_binary_file(path)), path, limits);
}

ZipArchive ZipArchive::parse(std::shared_ptr<const std::string> bytes, std::string name_for_errors,
                             const ZipLimits& limits) {
  if (!bytes) throw std::logic_error("ZipArchive::parse: null buffer");
  const std::string_view view(*bytes);
  ZipArchive z(std::move(bytes), view, std::move(name_for_errors), limits);
  z.parse_directory();
  return z;
}

ZipArchive ZipArchive::parse_view(std::string_view bytes, std::string name_for_errors, const ZipLimits& limits) {
  ZipArchive z(nullptr, bytes, std::move(name_for_errors), limits);
  z.parse_directory();
  return z;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

namespace {

struct Directory {
  uint64_t entries = 0, size = 0, offset = 0;
};

// Finds the end-of-central-directory record in the last 64 KiB + 22 bytes and, when present,
// the ZIP64 record its locator points to.
Directory find_directory(std::string_view b, const std::string& name) {
  const uint64_t n = b.size();
  if (n < kEocdSize) throw UserError(fmt::format("{}: not a zip archive (no end-of-central-directory record; {} bytes)", name, n));
  const uint64_t lowest = n - kEocdSize > 0xFFFF ? n - kEocdSize - 0xFFFF : 0;
  uint64_t at = n - kEocdSize + 1;
  bool found = false;
  while (at-- > lowest) {
    if (u32(b, at) == kEocdSig && at + kEocdSize + u16(b, at + 20) <= n) {
      found = true;
      break;
    }
  }
  if (!found) throw UserError(fmt::format("{}: not a zip archive (no end-of-central-directory record; truncated?)", name));
  if (u16(b, at + 4) != 0 || u16(b, at + 6) != 0)
    throw UserError(fmt::format("{}: multi-disk zip archives are not supported", name));
  if (u16(b, at + 8) != u16(b, at + 10))
    throw UserError(fmt::format("{}: zip end record counts {} entries here but {} in all (multi-disk?)", name, u16(b, at + 8), u16(b, at + 10)));
  Directory d{u16(b, at + 10), u32(b, at + 12), u32(b, at + 16)};
  if (at >= kLocatorSize && u32(b, at - kLocatorSize) == kLocatorSig) {
    const uint64_t loc = at - kLocatorSize, rec = u64(b, loc + 8);
    if (rec > loc || loc - rec < kEocd64Size || u32(b, rec) != kEocd64Sig)
      throw UserError(fmt::format("{}: zip64 end-of-central-directory locator points to byte {}, where no such record is", name, rec));
    if (u32(b, rec + 16) != 0 || u32(b, rec + 20) != 0)
      throw UserError(fmt::format("{}: multi-disk zip archives are not supported", name));
    d = {u64(b, rec + 32), u64(b, rec + 40), u64(b, rec + 48)};
    if (!fits(d.offset, d.size, rec))
      throw UserError(fmt::format("{}: zip central directory ({} bytes at byte {}) lies outside the file's {} bytes (truncated?)",
                                  name, d.size, d.offset, rec));
  } else if (!fits(d.offset, d.size, at)) {
    throw UserError(fmt::format("{}: zip central directory ({} bytes at byte {}) lies outside the file's {} bytes (truncated?)",
                                name, d.size, d.offset, at));
  }
  return d;
}

}  // namespace

void ZipArchive::parse_directory() {
  const std::string_view b = bytes_;
  const Directory dir = find_directory(b, name_);
  if (dir.entries > limits_.max_entries || dir.entries > dir.size / kCentralSize)
    throw UserError(fmt::format("{}: zip directory claims {} entries in {} bytes (limit {})", name_, dir.entries,
                                dir.size, limits_.max_entries));
  entries_.reserve(dir.entries);
  const uint64_t end = dir.offset + dir.size;
  uint64_t at = dir.offset;
  for (uint64_t i = 0; i < dir.entries; ++i) {
    if (!fits(at, kCentralSize, end) || u32(b, at) != kCentralSig)
      throw UserError(fmt::format("{}: zip central directory record {} at byte {} is malformed", name_, i, at));
    const uint16_t name_len = u16(b, at + 28), extra_len = u16(b, at + 30), comment_len = u16(b, at + 32);
    if (!fits(at + kCentralSize, uint64_t{name_len} + extra_len + comment_len, end))
      throw UserError(fmt::format("{}: zip central directory record {} runs past the directory", name_, i));
    ZipEntry e;
    e.name = std::string(b.substr(at + kCentralSize, name_len));
    if (e.name.empty() || e.name.find('\0') != std::string::npos)
      throw UserError(fmt::format("{}: zip entry {} has an empty name or one with a NUL byte", name_, i));
    e.method = u16(b, at + 10);
    e.crc32 = u32(b, at + 16);
    Zip64Fields f{u32(b, at + 24), u32(b, at + 20), u32(b, at + 42)};
    if (!apply_zip64(b.substr(at + kCentralSize + name_len, extra_len), f, f.size == kFull32,
                     f.compressed_size == kFull32, f.offset == kFull32))
      throw UserError(fmt::format("{}: zip entry '{}' has a malformed zip64 extra field", name_, printable(e.name)));
    e.size = f.size;
    e.compressed_size = f.compressed_size;
    e.header_offset = f.offset;
    const uint16_t flags = u16(b, at + 8);
    if (flags & 1) e.method = 0xFFFF;  // encrypted: data() refuses it
    if (!index_.emplace(e.name, entries_.size()).second)
      throw UserError(fmt::format("{}: zip entry '{}' appears twice", name_, printable(e.name)));
    entries_.push_back(std::move(e));
    at += kCentralSize + uint64_t{name_len} + extra_len + comment_len;
  }
  for (ZipEntry& e : entries_) {
    // The local header must agree with the central one; its data must end before the directory.
    const uint64_t h = e.header_offset;
    if (!fits(h, kLocalSize, b.size()) || u32(b, h) != kLocalSig)
      throw UserError(fmt::format("{}: zip entry '{}': no local header at byte {} (of {})", name_, printable(e.name), h, b.size()));
    const uint16_t name_len = u16(b, h + 26), extra_len = u16(b, h + 28);
    if (!fits(h + kLocalSize, uint64_t{name_len} + extra_len, b.size()) || b.substr(h + kLocalSize, name_len) != e.name)
      throw UserError(fmt::format("{}: zip entry '{}': its local header names another file", name_, printable(e.name)));
    const uint16_t lflags = u16(b, h + 6), lmethod = u16(b, h + 8);
    Zip64Fields f{u32(b, h + 22), u32(b, h + 18), 0};
    const bool z64 = f.size == kFull32 || f.compressed_size == kFull32;
    if (z64 && !apply_zip64(b.substr(h + kLocalSize + name_len, extra_len), f, f.size == kFull32,
                            f.compressed_size == kFull32, false))
      throw UserError(fmt::format("{}: zip entry '{}' has a malformed zip64 extra field in its local header", name_, printable(e.name)));
    const bool deferred = (lflags & 8) && f.size == 0 && f.compressed_size == 0 && u32(b, h + 14) == 0;
    if ((e.method != 0xFFFF && lmethod != e.method) ||
        (!deferred && (f.size != e.size || f.compressed_size != e.compressed_size || u32(b, h + 14) != e.crc32)))
      throw UserError(fmt::format("{}: zip entry '{}': local header disagrees with the central directory (method, sizes or CRC)",
                                  name_, printable(e.name)));
    e.data_offset = h + kLocalSize + name_len + extra_len;
    if (!fits(e.data_offset, e.compressed_size, b.size()))
      throw UserError(fmt::format("{}: zip entry '{}' ends at byte {} but the file has {} bytes (truncated?)", name_,
                                  printable(e.name), e.data_offset + std::min(e.compressed_size, UINT64_MAX - e.data_offset),
                                  b.size()));
    if (e.data_offset + e.compressed_size > dir.offset)
      throw UserError(fmt::format("{}: zip entry '{}' overlaps the central directory", name_, printable(e.name)));
    if (e.method == 0 && e.size != e.compressed_size)
      throw UserError(fmt::format("{}: stored zip entry '{}' declares {} bytes but holds {}", name_, printable(e.name),
                                  e.size, e.compressed_size));
  }
  verified_.assign(entries_.size(), false);
}

std::string_view ZipArchive::data(std::string_view name) {
  auto it = index_.find(std::string(name));
  if (it == index_.end()) throw UserError(fmt::format("{}: zip archive has no entry '{}'", name_, printable(name)));
  const size_t i = it->second;
  const ZipEntry& e = entries_[i];
  std::string_view out;
  if (e.method == 0) {
    out = bytes_.substr(e.data_offset, e.size);
  } else if (e.method == 8) {
    auto cached = inflated_.find(i);
    out = cached != inflated_.end() ? std::string_view(*cached->second) : inflate_entry(e);
  } else {
    throw UserError(fmt::format("{}: zip entry '{}' uses compression method {} (only stored and deflate are supported{})",
                                name_, printable(e.name), e.method == 0xFFFF ? 99 : e.method,
                                e.method == 0xFFFF ? "; it is encrypted" : ""));
  }
  if (!verified_[i] && limits_.verify_crc) {
    if (crc_of(out) != e.crc32)
      throw UserError(fmt::format("{}: zip entry '{}' fails its CRC-32 check (corrupt file)", name_, printable(e.name)));
    verified_[i] = true;
  }
  return out;
}

std::string_view ZipArchive::inflate_entry(const ZipEntry& e) {
  const std::string what = fmt::format("{}: zip entry '{}'", name_, printable(e.name));
  // Deflate expands at most ~1032:1, so a larger declared size is a lie: refuse it before allocating.
  if (e.size > limits_.max_inflated_entry || e.size / 1032 > e.compressed_size + 64)
    throw UserError(fmt::format("{} declares {} inflated bytes from {} compressed (limit {})", what, e.size,
                                e.compressed_size, limits_.max_inflated_entry));
  if (e.size > limits_.max_inflated_total - std::min(inflated_total_, limits_.max_inflated_total))
    throw UserError(fmt::format("{}: more than {} bytes inflated in all", what, limits_.max_inflated_total));
  auto out = std::make_unique<std::string>(static_cast<size_t>(e.size), '\0');
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw UserError(what + ": zlib cannot start inflating");
  const auto* in = reinterpret_cast<const Bytef*>(bytes_.data() + e.data_offset);
  uint64_t in_left = e.compressed_size, out_done = 0;
  unsigned char scratch = 0;
  bool overflow = false;
  int rc = Z_OK;
  for (;;) {
    const uInt in_chunk = static_cast<uInt>(std::min<uint64_t>(in_left, uint64_t{1} << 30));
    const bool full = out_done == e.size;  // output full: any further byte is one too many
    const uInt out_chunk = full ? 1 : static_cast<uInt>(std::min<uint64_t>(e.size - out_done, uint64_t{1} << 30));
    zs.next_in = const_cast<Bytef*>(in);
    zs.avail_in = in_chunk;
    zs.next_out = full ? &scratch : reinterpret_cast<Bytef*>(out->data() + out_done);
    zs.avail_out = out_chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    const uInt used_in = in_chunk - zs.avail_in, made = out_chunk - zs.avail_out;
    in += used_in;
    in_left -= used_in;
    overflow = full && made > 0;
    if (!overflow) out_done += made;
    if (overflow || rc != Z_OK || (used_in == 0 && made == 0)) break;
  }
  const std::string zmsg = zs.msg ? zs.msg : "invalid";
  inflateEnd(&zs);
  if (overflow)
    throw UserError(fmt::format("{} inflates to more than its declared {} bytes (corrupt file)", what, e.size));
  if (rc == Z_STREAM_END && out_done != e.size)
    throw UserError(fmt::format("{} inflates to {} bytes, not the declared {} (corrupt file)", what, out_done, e.size));
  if (rc != Z_STREAM_END)
    throw UserError(fmt::format("{}: deflate data is {} (corrupt file)", what, in_left == 0 ? "cut short" : zmsg));
  inflated_total_ += e.size;
  std::string_view view(*out);
  inflated_.emplace(static_cast<size_t>(&e - entries_.data()), std::move(out));
  return view;
}

}  // namespace unravel::interop
