// IDX files (MNIST, Fashion-MNIST): big-endian header, then uint8 data; raw or gzipped. Every
// size the header claims is checked against the file (and, gzipped, against the size the gzip
// trailer records and the largest possible inflation) before memory is allocated for it.
#include <zlib.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "core/errors.h"
#include "data/formats.h"

namespace fs = std::filesystem;

namespace unravel::data {

namespace {

// ---------------------------------------------------------------------------------------------
// IDX files (MNIST, Fashion-MNIST): big-endian header, then uint8 data.

constexpr int64_t kMaxIdxCount = 100000000;  // refuse headers claiming more examples
constexpr int64_t kMaxIdxDim = 4096;         // ... or larger images
constexpr int64_t kReadChunk = 1 << 20;
constexpr int64_t kMaxIdxBytes = int64_t{16} << 30;  // refuse data sets above 16 GiB
constexpr int64_t kMaxDeflateRatio = 1032;            // deflate's largest inflation factor

// The inflated size (mod 2^32) a gzip file records in its last 4 bytes (little endian), or -1
// when the file is too short to have one.
int64_t gzip_recorded_size(const std::string& path, int64_t file_bytes) {
  if (file_bytes < 18) return -1;  // 10-byte header + 8-byte trailer at least
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  unsigned char b[4];
  if (!f || std::fseek(f.get(), -4, SEEK_END) != 0 || std::fread(b, 1, 4, f.get()) != 4) return -1;
  return static_cast<int64_t>(uint32_t{b[0]} | (uint32_t{b[1]} << 8) | (uint32_t{b[2]} << 16) | (uint32_t{b[3]} << 24));
}

uint32_t big_endian_u32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// Reads a raw or gzipped file through zlib (which passes non-gzip files through unchanged).
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw UserError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
    gzbuffer(file_, 1 << 18);
  }
  ~ByteReader() { gzclose(file_); }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Reads up to n bytes into dst; fewer only when the data ends.
  int64_t read(void* dst, int64_t n) {
    int64_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(std::min<int64_t>(n - done, kReadChunk));
      const int got = gzread(file_, static_cast<char*>(dst) + done, want);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        if (code == Z_BUF_ERROR)
          throw UserError(fmt::format("{}: truncated: the compressed data ends early", path_));
        throw UserError(fmt::format("{}: corrupt or unreadable data ({})", path_, msg));
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }
  bool compressed() { return gzdirect(file_) == 0; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

}  // namespace

// Returns the data of an IDX file with `ndims` dimensions as a flat uint8 tensor and its dims.
torch::Tensor read_idx_file(const std::string& path, int ndims, const char* what, std::vector<int64_t>& dims) {
  if (ndims < 1 || ndims > 3) throw std::logic_error(fmt::format("read_idx_file: ndims {} is not 1..3", ndims));
  ByteReader in(path);
  unsigned char header[4 + 4 * 3];
  const int64_t header_bytes = 4 + 4 * ndims;
  if (in.read(header, header_bytes) < header_bytes)
    throw UserError(
        fmt::format("{}: truncated: shorter than the {}-byte IDX header", path, header_bytes));
  const uint32_t magic = big_endian_u32(header);
  const uint32_t expected = 0x0800u | static_cast<uint32_t>(ndims);  // uint8 data, ndims dims
  if (magic != expected)
    throw UserError(fmt::format("{}: bad magic number {} (expected {} for an IDX {} file)", path,
                                magic, expected, what));
  dims.assign(static_cast<size_t>(ndims), 0);
  for (int d = 0; d < ndims; ++d) dims[d] = big_endian_u32(header + 4 + 4 * d);
  std::string claim = fmt::format("{} {}", dims[0], what);
  if (ndims == 3) claim += fmt::format(" of {}x{}", dims[1], dims[2]);
  if (dims[0] < 1 || dims[0] > kMaxIdxCount)
    throw UserError(
        fmt::format("{}: header claims {}; the count must be 1..{}", path, claim, kMaxIdxCount));
  for (int d = 1; d < ndims; ++d)
    if (dims[d] < 1 || dims[d] > kMaxIdxDim)
      throw UserError(
          fmt::format("{}: header claims {}; each side must be 1..{}", path, claim, kMaxIdxDim));
  int64_t total = 1;  // <= 1e8 * 4096 * 4096: fits in int64
  for (int64_t d : dims) total *= d;

  // Every claim is checked before the data is allocated: a raw file's size is known; a gzipped
  // one records its inflated size (mod 2^32) in its last 4 bytes, and deflate cannot inflate
  // more than ~1032-fold, so a small file whose header lies is refused at once.
  std::error_code ec;
  const auto file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) throw UserError(fmt::format("{}: cannot read its size ({})", path, ec.message()));
  if (total > kMaxIdxBytes)
    throw UserError(fmt::format("{}: header claims {} ({} bytes), more than the limit of {} bytes", path, claim,
                                total, kMaxIdxBytes));
  if (!in.compressed() && file_bytes - header_bytes < total)
    throw UserError(
        fmt::format("{}: truncated: header declares {} ({} bytes) but the file holds {}", path,
                    claim, total, file_bytes - header_bytes));
  if (in.compressed()) {
    const int64_t inflated = header_bytes + total;
    if (inflated > kMaxDeflateRatio * file_bytes + 1024)
      throw UserError(fmt::format("{}: header claims {} ({} bytes) but {} compressed bytes cannot hold that "
                                  "much: truncated file or lying header", path, claim, total, file_bytes));
    const int64_t recorded = gzip_recorded_size(path, file_bytes);
    if (recorded >= 0 && recorded != (inflated & 0xFFFFFFFFLL))
      throw UserError(fmt::format("{}: header claims {} ({} bytes) but the gzip trailer records {} bytes in all: "
                                  "truncated file or lying header", path, claim, total, recorded));
  }
  torch::Tensor data = torch::empty({total}, torch::kUInt8);  // filled chunk by chunk
  uint8_t* dst = data.data_ptr<uint8_t>();
  for (int64_t have = 0; have < total;) {
    const int64_t want = std::min<int64_t>(kReadChunk, total - have);
    const int64_t got = in.read(dst + have, want);
    if (got < want)
      throw UserError(
          fmt::format("{}: truncated: header declares {} ({} bytes) but the data ends after {}",
                      path, claim, total, have + got));
    have += got;
  }
  unsigned char extra;
  if (in.read(&extra, 1) != 0)
    throw UserError(fmt::format("{}: has data beyond the {} its header declares", path, claim));
  return data;
}

namespace {

std::string find_idx_file(const std::string& dir, const std::string& name) {
  const fs::path raw = fs::path(dir) / name;
  const fs::path gz = fs::path(dir) / (name + ".gz");
  if (fs::is_regular_file(raw)) return raw.string();
  if (fs::is_regular_file(gz)) return gz.string();
  throw UserError(
      fmt::format("{}: missing file (neither it nor {}.gz exists)", raw.string(), name));
}

Split load_idx_split(const std::string& dir, const std::string& prefix) {
  const std::string image_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  std::vector<int64_t> image_dims, label_dims;
  torch::Tensor images = read_idx_file(image_path, 3, "images", image_dims);
  torch::Tensor labels = read_idx_file(label_path, 1, "labels", label_dims);
  if (label_dims[0] != image_dims[0])
    throw UserError(fmt::format("{}: holds {} labels but {} holds {} images", label_path,
                                label_dims[0], image_path, image_dims[0]));
  check_labels(labels, 10, label_path);
  Split s;
  s.images = images.view({image_dims[0], 1, image_dims[1], image_dims[2]});  // (N, 1, H, W)
  s.labels = labels.to(torch::kLong);                                        // (N)
  return s;
}

}  // namespace

Dataset load_idx_dataset(const DataSpec& spec) {
  Dataset ds;
  ds.spec = spec;
  ds.train = load_idx_split(spec.where, "train");
  ds.test = load_idx_split(spec.where, "t10k");
  ds.channels = 1;
  ds.height = ds.train.images.size(2);
  ds.width = ds.train.images.size(3);
  if (ds.test.images.size(2) != ds.height || ds.test.images.size(3) != ds.width)
    throw UserError(fmt::format("{}: test images are {}x{} but training images are {}x{}", spec.where,
                                ds.test.images.size(2), ds.test.images.size(3), ds.height,
                                ds.width));
  ds.num_classes = 10;
  if (spec.kind == "fashion-mnist")
    ds.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  else
    for (int i = 0; i < 10; ++i) ds.class_names.push_back(std::to_string(i));
  return ds;
}


}  // namespace unravel::data
