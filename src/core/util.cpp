// Small shared utilities: JSON and text files read with a size limit and one-line UserErrors
// naming the file, build/version info, UTC timestamps, eliding long quotes and a rate/ETA
// progress line on stderr (atomic writes are in output.cpp). Torch-free: the libtorch version is added to build_info() by callers.
#include "core/util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <fmt/format.h>

#include "core/errors.h"

#ifndef UNRAVEL_VERSION
#define UNRAVEL_VERSION "unknown"
#endif
namespace unravel {
const char* git_commit();  // generated at build time (cmake/git_commit.cmake)
}

namespace unravel {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// size < 0: not known (the file grew while read, or is not a regular file)
[[noreturn]] void too_large(const std::string& path, std::size_t max_bytes, long long size) {
  if (size < 0) throw UserError(fmt::format("{}: file holds more than the limit of {} bytes", path, max_bytes));
  throw UserError(fmt::format("{}: file is {} bytes, more than the limit of {} bytes", path, size, max_bytes));
}

}  // namespace

std::string read_text_file(const std::string& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError("cannot read " + path + ": " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    too_large(path, max_bytes, static_cast<long long>(st.st_size));
  }
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw UserError("cannot read " + path + ": " + errno_text(err));
    }
    if (n == 0) break;
    if (static_cast<std::size_t>(n) > max_bytes - out.size()) {  // grew, or not a regular file
      ::close(fd);
      too_large(path, max_bytes, /*size=*/-1);
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

nlohmann::json read_json_file(const std::string& path, std::size_t max_bytes) {
  const std::string text = read_text_file(path, max_bytes);
  // Deep nesting is refused as it is met, before a deep document is built in memory.
  auto depth_limit = [&path](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxJsonDepth)
      throw UserError(fmt::format("{}: invalid JSON: nested more than {} levels deep", path, kMaxJsonDepth));
    return true;
  };
  try {
    return nlohmann::json::parse(text, depth_limit);
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's text is "[json.exception.parse_error.101] parse error at line L, column C:
    // REASON; last read: '...'": keep REASON, never the quoted input.
    std::string what = e.what();
    std::size_t colon = what.find(": ", what.find("column"));
    std::string reason = colon == std::string::npos ? "" : what.substr(colon + 2);
    reason = reason.substr(0, reason.find("; last read"));
    reason = elide_middle(reason.substr(0, reason.find('\n')), 100);
    throw UserError(fmt::format("{}: invalid JSON at byte {}{}", path, e.byte,
                                reason.empty() ? "" : " (" + reason + ")"));
  } catch (const nlohmann::json::out_of_range&) {
    // A number beyond double's range ("1e99999"): found by fuzzing (tests/fuzz/regressions/config).
    throw UserError(fmt::format("{}: invalid JSON: a number beyond the range of a double", path));
  }
}

void make_dirs(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw UserError("cannot create directory " + path + ": " + ec.message());
  if (!fs::is_directory(path, ec))
    throw UserError("cannot create directory " + path + ": exists and is not a directory");
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

nlohmann::json build_info() {
  return {{"unravel", UNRAVEL_VERSION},
          {"git_commit", git_commit()},
          {"compiler", __VERSION__},
          {"cxx_standard", static_cast<long>(__cplusplus)}};
}

std::string iso_time_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
    return buf;
  }
  long s = std::lround(seconds);
  if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  }
  return buf;
}

std::string elide_middle(std::string_view s, std::size_t max_chars) {
  if (s.size() <= max_chars) return std::string(s);
  auto continuation = [&](std::size_t i) { return (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80; };
  std::size_t head = max_chars * 2 / 3, tail = s.size() - max_chars / 5;
  while (head > 0 && continuation(head)) --head;          // do not split a UTF-8 character
  while (tail < s.size() && continuation(tail)) ++tail;
  return fmt::format("{}…({} chars)…{}", s.substr(0, head), s.size(), s.substr(tail));
}

// ---- Progress ------------------------------------------------------------------------------

Progress::Progress(std::string label, int64_t total, std::string unit, double interval_s)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      interval_s_(interval_s),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

namespace {

// "[train] 1234/5000 images  612.3 images/s  ETA 6.0s  extra" (no "/total" and no ETA when the
// total is unknown; "done in ..." instead of the ETA on the final line).
std::string progress_line(const std::string& label, const std::string& unit, int64_t done,
                          int64_t total, double elapsed, bool final, const std::string& extra) {
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  std::string line = "[" + label + "] " + std::to_string(done);
  if (total > 0) line += "/" + std::to_string(total);
  char buf[64];
  std::snprintf(buf, sizeof buf, " %s  %.1f %s/s", unit.c_str(), rate, unit.c_str());
  line += buf;
  if (final) {
    line += "  done in " + format_duration(elapsed);
  } else if (total > 0 && rate > 0) {
    const double left = static_cast<double>(std::max<int64_t>(total - done, 0)) / rate;
    line += "  ETA " + format_duration(left);
  }
  if (!extra.empty()) line += "  " + extra;
  return line;
}

}  // namespace

void Progress::update(int64_t done, const std::string& extra) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_s_) return;
  last_ = now;
  std::cerr << progress_line(label_, unit_, done_, total_, elapsed_s(), false, extra) << "\n"
            << std::flush;
}

void Progress::finish(const std::string& extra) {
  last_ = std::chrono::steady_clock::now();
  std::cerr << progress_line(label_, unit_, done_, total_, elapsed_s(), true, extra) << "\n"
            << std::flush;
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return;  // the user's choice wins
  mallopt(M_MMAP_MAX, 0);              // no mmap()ed chunks: large tensors reuse heap memory
  mallopt(M_TRIM_THRESHOLD, INT_MAX);  // never give the heap top back to the kernel
#endif
}

}  // namespace unravel
