// Fuzz harness of the IDX reader (data/idx.cpp, MNIST and Fashion-MNIST): the bytes as an images
// and a labels file (raw bytes, which may themselves be gzip, and the bytes gzipped by zlib), then
// as train-images-idx3-ubyte.gz of a "mnist:DIR" data set whose other three files are valid.
// Bad input must end in a one-line UserError; what is read must be exactly the header's size.
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "harness.h"
#include "core/errors.h"
#include "data/dataset.h"
#include "data/formats.h"

namespace {

namespace fs = std::filesystem;

constexpr const char* kHarness = "fuzz_idx";

[[noreturn]] void bug(const std::string& what, const std::string& detail) {
  unravel::fuzz::report_bug(kHarness, what, detail);
}

void check_message(const unravel::UserError& e) { unravel::fuzz::check_one_line(kHarness, e); }

void write_bytes(const std::string& path, const std::string& bytes) {
  unravel::fuzz::write_file_bytes(path, bytes.data(), bytes.size());
}

void write_gzip(const std::string& path, const uint8_t* data, size_t size) {
  gzFile f = gzopen(path.c_str(), "wb1");
  if (!f) bug("cannot write", path);
  if (size > 0 && gzwrite(f, data, static_cast<unsigned>(size)) != static_cast<int>(size)) bug("gzwrite failed", path);
  gzclose(f);
}

// An IDX file of uint8 data: magic 0x08 0x<ndims>, big-endian dims, then the bytes.
std::string idx_bytes(const std::vector<uint32_t>& dims, uint8_t fill) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  uint64_t total = 1;
  for (uint32_t d : dims) {
    for (int i = 3; i >= 0; --i) s += static_cast<char>((d >> (8 * i)) & 0xFF);
    total *= d;
  }
  for (uint64_t i = 0; i < total; ++i) s += static_cast<char>((fill + i) % 10);
  return s;
}

// Per process (the driver forks a fresh one after a crash): a data set folder with valid
// labels and test files for 2 images of 4x4; the fuzzed training images go next to them.
const std::string& data_dir() {
  static const std::string dir = [] {
    const std::string d = (fs::temp_directory_path() / ("unravel_fuzz_idx_" + std::to_string(::getpid()))).string();
    fs::create_directories(d);
    write_bytes(d + "/train-labels-idx1-ubyte", idx_bytes({2}, 3));
    write_bytes(d + "/t10k-images-idx3-ubyte", idx_bytes({2, 4, 4}, 1));
    write_bytes(d + "/t10k-labels-idx1-ubyte", idx_bytes({2}, 7));
    return d;
  }();
  // Registered once the string exists, so that it runs before the string is destroyed.
  static const bool cleanup = std::atexit([] { fs::remove_all(data_dir()); }) == 0;
  (void)cleanup;
  return dir;
}

void read_one(const std::string& path, int ndims) {
  try {
    std::vector<int64_t> dims;
    const torch::Tensor t = unravel::data::read_idx_file(path, ndims, ndims == 3 ? "images" : "labels", dims);
    int64_t total = 1;
    for (int64_t d : dims) total *= d;
    if (static_cast<int>(dims.size()) != ndims || t.numel() != total || t.dim() != 1)
      bug("data does not match the header", path);
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = data_dir();
  const std::string raw = dir + "/raw", gz = dir + "/gzipped.gz";
  write_bytes(raw, std::string(reinterpret_cast<const char*>(data), size));
  write_gzip(gz, data, size);
  for (int ndims : {3, 1}) {
    read_one(raw, ndims);
    read_one(gz, ndims);
  }
  // The raw bytes named .gz as the training images of a whole data set.
  write_bytes(dir + "/train-images-idx3-ubyte.gz", std::string(reinterpret_cast<const char*>(data), size));
  try {
    const unravel::data::Dataset ds = unravel::data::load_dataset(unravel::data::parse_data_spec("mnist:" + dir));
    if (ds.train.images.dim() != 4 || ds.train.size() != 2 || ds.test.size() != 2) bug("odd data set", dir);
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
  return 0;
}
