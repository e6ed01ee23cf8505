// Fuzz harness of the CIFAR binary readers (data/cifar.cpp): the bytes as test_batch.bin of a
// "cifar10:DIR" data set and as test.bin of a "cifar100:DIR" one, whose training files are valid.
// Bad input must end in a one-line UserError; what loads must be whole records.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness.h"
#include "core/errors.h"
#include "data/dataset.h"

namespace {

namespace fs = std::filesystem;

constexpr const char* kHarness = "fuzz_cifar";

[[noreturn]] void bug(const std::string& what, const std::string& detail) {
  unravel::fuzz::report_bug(kHarness, what, detail);
}

void check_message(const unravel::UserError& e) { unravel::fuzz::check_one_line(kHarness, e); }

void write_bytes(const std::string& path, const std::string& bytes) {
  unravel::fuzz::write_file_bytes(path, bytes.data(), bytes.size());
}

// One record: `labels` label bytes, then 3x32x32 pixels.
std::string record(const std::string& labels, uint8_t seed) {
  std::string r = labels;
  for (int i = 0; i < 3 * 32 * 32; ++i) r += static_cast<char>((seed + 7 * i) & 0xFF);
  return r;
}

// Per process (the driver forks a fresh one after a crash): DIR/c10 and DIR/c100 with valid
// training files of one or two records.
const std::string& data_dir() {
  static const std::string dir = [] {
    const std::string d = (fs::temp_directory_path() / ("unravel_fuzz_cifar_" + std::to_string(::getpid()))).string();
    fs::create_directories(d + "/c10");
    fs::create_directories(d + "/c100");
    for (int i = 1; i <= 5; ++i) write_bytes(d + "/c10/data_batch_" + std::to_string(i) + ".bin", record({char(i)}, i));
    write_bytes(d + "/c100/train.bin", record({3, 57}, 1) + record({19, 99}, 2));
    return d;
  }();
  // Registered once the string exists, so that it runs before the string is destroyed.
  static const bool cleanup = std::atexit([] { fs::remove_all(data_dir()); }) == 0;
  (void)cleanup;
  return dir;
}

void load(const std::string& spec, int64_t train_size, int64_t record_bytes, size_t size) {
  try {
    const unravel::data::Dataset ds = unravel::data::load_dataset(unravel::data::parse_data_spec(spec));
    if (ds.train.size() != train_size || ds.test.size() * record_bytes != static_cast<int64_t>(size) ||
        ds.test.images.size(1) != 3 || ds.test.labels.max().item<int64_t>() >= ds.num_classes)
      bug("odd data set", spec);
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = data_dir();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  write_bytes(dir + "/c10/test_batch.bin", bytes);
  load("cifar10:" + dir + "/c10", 5, 1 + 3 * 32 * 32, size);
  write_bytes(dir + "/c100/test.bin", bytes);
  load("cifar100:" + dir + "/c100", 2, 2 + 3 * 32 * 32, size);
  return 0;
}
