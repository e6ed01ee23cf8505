// Small shared utilities: atomic file writes (temp file + fsync + rename), JSON and text files
// with one-line UserErrors naming the file, build/version info, UTC timestamps and a rate/ETA
// progress line on stderr. Torch-free: the libtorch version is added to build_info() by callers.
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

// Writes all of `content` to fd; returns 0 or the errno of the failure.
int write_all(int fd, const std::string& content) {
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError("cannot write " + path + ": " + errno_text(errno));
  int err = write_all(fd, content);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && std::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw UserError("cannot write " + path + ": " + errno_text(err));
  }
}

void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent) {
  write_file_atomic(path, j.dump(indent) + "\n");
}

std::string read_text_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError("cannot read " + path + ": " + errno_text(errno));
  std::string out;
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
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    throw UserError(path + ": invalid JSON: " + what.substr(0, what.find('\n')));
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
