// A bounded reader of zip archives held in memory (what torch.save, torch.jit.save and
// torch::pickle_save write): ZIP64, stored and deflated entries, every offset, size and CRC-32
// checked against the bytes present. Errors are one-line UserErrors naming the file and entry.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace unravel::interop {

struct ZipLimits {
  uint64_t max_entries = uint64_t{1} << 20;          // entries in the central directory
  uint64_t max_inflated_entry = uint64_t{4} << 30;   // declared size of one deflated entry (bytes)
  uint64_t max_inflated_total = uint64_t{8} << 30;   // all deflated entries read, together (bytes)
  bool verify_crc = true;  // false only for fuzzing, where a mutated byte would never pass the CRC
};

struct ZipEntry {
  std::string name;              // as stored: "archive/data/0"
  uint16_t method = 0;           // 0 stored, 8 deflate (others are refused by data())
  uint32_t crc32 = 0;            // from the central directory
  uint64_t compressed_size = 0;  // bytes of data in the file
  uint64_t size = 0;             // bytes once inflated
  uint64_t header_offset = 0;    // local header
  uint64_t data_offset = 0;      // first byte of its data (after the local header)
};

// Reads a regular file whole; UserError naming the path when it cannot, or when it holds more
// than max_bytes.
std::string read_binary_file(const std::string& path, uint64_t max_bytes = uint64_t{64} << 30);

class ZipArchive {
 public:
  // Reads the whole file; UserError naming the path when it cannot be read or parsed.
  static ZipArchive open(const std::string& path, const ZipLimits& limits = {});
  // Parses an archive whose bytes the archive keeps alive.
  static ZipArchive parse(std::shared_ptr<const std::string> bytes, std::string name_for_errors,
                          const ZipLimits& limits = {});
  // Parses bytes that the caller keeps alive (and unchanged) as long as the archive lives.
  static ZipArchive parse_view(std::string_view bytes, std::string name_for_errors,
                               const ZipLimits& limits = {});

  const std::vector<ZipEntry>& entries() const { return entries_; }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const ZipEntry* find(std::string_view name) const;  // nullptr when absent
  // The entry's bytes, CRC-checked: a view into the archive's buffer for a stored entry, an
  // inflated copy kept by the archive for a deflated one. Valid while the archive lives.
  // UserError when absent, corrupt or of an unsupported method.
  std::string_view data(std::string_view name);
  const std::string& name_for_errors() const { return name_; }
  std::string_view bytes() const { return bytes_; }

 private:
  ZipArchive(std::shared_ptr<const std::string> owner, std::string_view bytes, std::string name,
             const ZipLimits& limits);
  void parse_directory();
  std::string_view inflate_entry(const ZipEntry& e);

  std::shared_ptr<const std::string> owner_;  // may be null (parse_view)
  std::string_view bytes_;
  std::string name_;
  ZipLimits limits_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;                 // name -> entries_ index
  std::unordered_map<size_t, std::unique_ptr<std::string>> inflated_;  // entries_ index -> bytes
  std::vector<bool> verified_;                                    // CRC checked already
  uint64_t inflated_total_ = 0;
};

}  // namespace unravel::interop
