// Format sniffing, file reading and dispatch to the JPEG / PNG decoders (jpeg.cpp, png.cpp),
// and the header size check both decoders run before they allocate pixels.
#include "imaging/decode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "core/errors.h"
#include "imaging/codecs.h"

namespace unravel::imaging {

namespace detail {

void check_image_size(int64_t w, int64_t h, int64_t max_pixels, const std::string& name) {
  if (w <= 0 || h <= 0) {
    throw UserError(fmt::format("{}: image of {} x {} pixels is empty", name, w, h));
  }
  if (w > max_pixels / h) {  // w * h > max_pixels, without forming w * h (up to 2^64)
    throw UserError(fmt::format("{}: image of {} x {} pixels exceeds the limit of {} pixels", name,
                                w, h, max_pixels));
  }
}

}  // namespace detail

ImageFormat sniff_format(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    return ImageFormat::Jpeg;
  }
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) {
    return ImageFormat::Png;
  }
  return ImageFormat::Unknown;
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                   const DecodeOptions& options) {
  switch (sniff_format(data, size)) {
    case ImageFormat::Jpeg:
      return detail::decode_jpeg(data, size, name, options);
    case ImageFormat::Png:
      return detail::decode_png(data, size, name, options);
    case ImageFormat::Unknown:
      break;
  }
  throw UserError(fmt::format("{}: not a JPEG or PNG image", name));
}

namespace {

// Closes the descriptor on every way out.
struct FileCloser {
  int fd;
  ~FileCloser() { ::close(fd); }
};

std::vector<uint8_t> read_bounded(const std::string& path, int64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw UserError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  }
  FileCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    throw UserError(fmt::format("{}: not a regular file", path));
  }
  if (st.st_size > max_bytes) {
    throw UserError(fmt::format("{}: file of {} bytes exceeds the limit of {} bytes", path,
                                static_cast<int64_t>(st.st_size), max_bytes));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw UserError(fmt::format("{}: cannot read ({})", path, std::strerror(errno)));
    if (n == 0) break;  // the file shrank while we read it: decode what is there
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace

Image decode_image_file(const std::string& path, const DecodeOptions& options) {
  std::vector<uint8_t> bytes = read_bounded(path, options.max_file_bytes);
  return decode_image(bytes.data(), bytes.size(), path, options);
}

}  // namespace unravel::imaging
