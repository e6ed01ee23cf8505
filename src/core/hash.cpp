// FNV-1a 64 (see hash.h).
#include "core/hash.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/errors.h"

namespace unravel {

uint64_t fnv1a64(const void* data, size_t size, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;  // FNV-1a 64 prime
  }
  return h;
}

std::string hex64(uint64_t h) { return fmt::format("{:016x}", h); }

std::string fnv1a_hex(std::string_view bytes) { return hex64(fnv1a64(bytes.data(), bytes.size())); }

std::string file_fingerprint(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  std::vector<unsigned char> buf(1 << 20);
  uint64_t h = kFnvOffset;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw UserError(fmt::format("cannot read {}: {}", path, std::strerror(err)));
    }
    if (n == 0) break;
    h = fnv1a64(buf.data(), static_cast<size_t>(n), h);
  }
  ::close(fd);
  return "fnv1a64:" + hex64(h);
}

}  // namespace unravel
