// Small shared utilities: atomic file writes, JSON files, threads, progress lines on stderr.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace unravel {

// Write to PATH.tmp, fsync, rename: a reader never sees a half-written file.
void write_file_atomic(const std::string& path, const std::string& content);
void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent = 2);
// Throws UserError naming the path when it cannot be read or parsed.
nlohmann::json read_json_file(const std::string& path);
std::string read_text_file(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p; UserError on failure
bool path_exists(const std::string& path);

// The version strings recorded in run directories and results.
nlohmann::json build_info();  // {"unravel": ..., "git_commit": ..., "libtorch": ..., "compiler": ...}
std::string iso_time_now();

// Rate and ETA on stderr, at most one line per `interval_s` (and always the last one).
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, double interval_s = 2.0);
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");
  double elapsed_s() const;

 private:
  std::string label_, unit_;
  int64_t total_ = 0, done_ = 0;
  double interval_s_;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

// Makes glibc's malloc keep freed memory in the process: large blocks come from the heap instead
// of fresh mmap()s, and the heap is never trimmed. Without it every activation tensor of more
// than a few hundred KiB is mapped, page-faulted in (zero-filled by the kernel) and unmapped
// again; the prefix engine, which holds and frees many activations per batch, spent 40% of its
// time there (bench_lesion: 6.6 s -> 3.9 s per 500 images; see README "Speed"). Memory use stays
// at the peak. No-op with other C libraries, or when the user sets GLIBC_TUNABLES for malloc.
void keep_freed_memory();

}  // namespace unravel
