// Fingerprints: FNV-1a 64 over bytes, as 16 hex digits. The cache keys of repro's steps, the
// identity of checkpoints recorded in summaries and results, and the key of sweep progress
// files all use this one function. Not cryptographic: it detects change and corruption, not
// tampering. Torch-free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace unravel {

constexpr uint64_t kFnvOffset = 14695981039346656037ULL;

// Continues an FNV-1a 64 hash `h` over `size` bytes (start from kFnvOffset).
uint64_t fnv1a64(const void* data, size_t size, uint64_t h = kFnvOffset);
std::string hex64(uint64_t h);                   // 16 lower-case hex digits
std::string fnv1a_hex(std::string_view bytes);   // hex64(fnv1a64(bytes))
// The fingerprint of a whole file, read in chunks: "fnv1a64:<16 hex digits>". UserError naming
// the file when it cannot be read.
std::string file_fingerprint(const std::string& path);

}  // namespace unravel
