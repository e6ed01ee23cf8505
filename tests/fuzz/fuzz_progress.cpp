// Fuzz harness of the lesion sweep's progress file (lesion/lesion.h read_progress_file): the
// bytes as the file of a fixed sweep (3 plans, 96 images in batches of 16, 10 classes). Whatever
// the bytes, the reader must not throw, and every count it accepts must be possible.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "harness.h"
#include "lesion/lesion.h"

namespace {

constexpr const char* kHarness = "fuzz_progress";

[[noreturn]] void bug(const std::string& what, const std::string& detail) {
  unravel::fuzz::report_bug(kHarness, what, detail);
}

// The key the seed corpus was written for (tests/fuzz/make_corpus.py writes the same one).
const nlohmann::json& sweep_key() {
  static const nlohmann::json key = {{"weights", "0123456789abcdef"},
                                     {"plans", {"intact", "delete=1", "delete=2"}},
                                     {"images", 96},
                                     {"labels_sum", 432},
                                     {"engine", "prefix"},
                                     {"batch_size", 16},
                                     {"fold", true},
                                     {"channels_last", false},
                                     {"recalibrate_bn", 1},
                                     {"recalibrate_batch_size", 16},
                                     {"seed", 0}};
  return key;
}

void check(const unravel::Metrics& m, int64_t n, const std::string& what) {
  int64_t sum = 0;
  for (int64_t c : m.class_n) sum += c;
  const double e1 = m.top1_error(), e5 = m.top5_error();
  if (m.n != n || sum != n || m.class_n.size() != 10 || !(e1 >= 0 && e1 <= 1) || !(e5 >= 0 && e5 <= e1) ||
      !std::isfinite(m.loss()) || m.loss() < 0)
    bug("impossible counts accepted", what + ": " + m.counts().dump().substr(0, 200));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("unravel_fuzz_progress_" + std::to_string(::getpid()) + ".json"))
          .string();
  static const bool quiet = [] {  // one line per rejected file would flood the log
    std::cerr.setstate(std::ios::failbit);
    return std::atexit([] { std::remove(path.c_str()); }) == 0;
  }();
  (void)quiet;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  unravel::lesion::SweepCounts c;
  if (!unravel::lesion::read_progress_file(path, sweep_key(), /*num_classes=*/10, c)) {
    if (c.engine_done != 0 || !c.engine.empty() || !c.recalibrated.empty()) bug("rejected file left counts", path);
    return 0;
  }
  const auto& plans = sweep_key()["plans"];
  if (c.engine_done < 0 || c.engine_done > 96 || (c.engine_done % 16 != 0 && c.engine_done != 96) ||
      c.engine.size() != (c.engine_done > 0 ? plans.size() : 0))
    bug("impossible engine progress accepted", std::to_string(c.engine_done));
  for (const auto& m : c.engine) check(m, c.engine_done, "engine");
  for (const auto& [plan, m] : c.recalibrated) {
    if (std::find(plans.begin(), plans.end(), plan) == plans.end()) bug("unknown plan accepted", plan);
    check(m, 96, plan);
  }
  return 0;
}
