// Fuzz harness of the run directory's JSON files (core/run_dir.h): the bytes as config.json
// (RunDirectory::read_config, then a write / read round trip that must keep every field) and as
// summary.json (read_summary, checkpoint_state). Bad input must end in a one-line UserError.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness.h"
#include "core/errors.h"
#include "core/run_dir.h"

namespace {

constexpr const char* kHarness = "fuzz_config";

[[noreturn]] void bug(const std::string& what, const std::string& detail) {
  unravel::fuzz::report_bug(kHarness, what, detail);
}

void check_message(const unravel::UserError& e) { unravel::fuzz::check_one_line(kHarness, e); }

void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  unravel::fuzz::write_file_bytes(path, reinterpret_cast<const char*>(data), size);
}

// One run directory per process (the driver forks a fresh one after a crash), with a checkpoint.
const std::string& run_dir() {
  static const std::string dir = [] {
    const std::string d =
        (std::filesystem::temp_directory_path() / ("unravel_fuzz_config_" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(d);
    std::ofstream(d + "/checkpoint.pt") << "not a checkpoint";
    return d;
  }();
  // Registered once the string exists, so that it runs before the string is destroyed.
  static const bool cleanup = std::atexit([] { std::filesystem::remove_all(run_dir()); }) == 0;
  (void)cleanup;
  return dir;
}

void config(const unravel::RunDirectory& run, const uint8_t* data, size_t size) {
  write_bytes(run.config_path(), data, size);
  try {
    const unravel::RunConfig c = run.read_config();
    const nlohmann::json first = c;
    run.write_config(c);
    const nlohmann::json second = run.read_config();
    if (first != second) bug("config.json does not survive a write and a read", first.dump().substr(0, 200));
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
}

void summary(const unravel::RunDirectory& run, const uint8_t* data, size_t size) {
  write_bytes(run.summary_path(), data, size);
  try {
    volatile size_t sink = run.read_summary().size();
    const auto st = run.checkpoint_state();
    sink = sink + static_cast<size_t>(st.ref.epoch) + st.consistent + st.recorded;
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const unravel::RunDirectory run(run_dir());
  config(run, data, size);
  summary(run, data, size);
  return 0;
}
