// Fuzz harness of the zip reader alone: parse the bytes as an archive and read every entry
// (stored and deflated, CRC-checked). Bad input must end in a UserError, never in anything else.
#include <cstdint>
#include <string_view>

#include "core/errors.h"
#include "interop/zip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace unravel::interop;
  ZipLimits limits;
  limits.max_entries = 1 << 12;
  limits.max_inflated_entry = 1 << 22;
  limits.max_inflated_total = 1 << 24;
  try {
    ZipArchive zip = ZipArchive::parse_view(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", limits);
    volatile uint64_t sink = 0;
    for (const ZipEntry& e : zip.entries()) {
      try {
        const std::string_view bytes = zip.data(e.name);
        sink = sink + bytes.size() + (bytes.empty() ? 0 : static_cast<uint8_t>(bytes.front()) + static_cast<uint8_t>(bytes.back()));
        sink = sink + zip.contains(e.name);
      } catch (const unravel::UserError&) {
      }
    }
  } catch (const unravel::UserError&) {
  }
  return 0;
}
