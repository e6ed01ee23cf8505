// Small shared utilities: atomic file writes, JSON files, threads, progress lines on stderr.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace unravel {

// Writes CONTENT to PATH so that a reader never sees a half-written file: PATH.tmp.PID in the
// target's directory, fsync, rename. A symlink is followed and its target replaced (the link
// stays); an existing device or FIFO is written through; a directory or socket is refused
// (output.h has the policy, "-" for standard output and the checks run before long work).
void write_file_atomic(const std::string& path, const std::string& content);
void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent = 2);

// Default size limit of read_text_file / read_json_file: config, summary, metrics and progress
// files are far smaller. Callers that read large files (checkpoints) pass their own limit.
constexpr std::size_t kMaxSmallFileBytes = std::size_t{64} << 20;  // 64 MiB
// Size limit for checkpoint files read whole (weights of the largest supported models, with room).
constexpr std::size_t kMaxCheckpointBytes = std::size_t{4} << 30;  // 4 GiB
// JSON nesting deeper than this is refused by read_json_file (before it is built in memory).
constexpr int kMaxJsonDepth = 256;

// The whole file. Throws UserError naming the path when it cannot be read, or when it holds
// more than max_bytes (checked on the size before reading, and again while reading).
std::string read_text_file(const std::string& path, std::size_t max_bytes = kMaxSmallFileBytes);
// read_text_file, then parse; a parse error names the file and the byte offset only.
nlohmann::json read_json_file(const std::string& path, std::size_t max_bytes = kMaxSmallFileBytes);
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

// S itself when it has at most max_chars bytes, else its head and tail around "…(N chars)…",
// cut on UTF-8 character boundaries: quoting user input in a one-line error stays short.
std::string elide_middle(std::string_view s, std::size_t max_chars = 60);

// Makes glibc's malloc keep freed memory in the process: large blocks come from the heap instead
// of fresh mmap()s, and the heap is never trimmed. Without it every activation tensor of more
// than a few hundred KiB is mapped, page-faulted in (zero-filled by the kernel) and unmapped
// again; the prefix engine, which holds and frees many activations per batch, spent 40% of its
// time there (bench_lesion: 6.6 s -> 3.9 s per 500 images; see README "Speed"). Memory use stays
// at the peak. No-op with other C libraries, or when the user sets GLIBC_TUNABLES for malloc.
void keep_freed_memory();

}  // namespace unravel
