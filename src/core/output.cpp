// Output files: the write policy of output.h (stdout, devices and FIFOs written through, symlinks
// followed to their target, atomic temp + fsync + rename for regular files), the check run before
// long work, and the removal of orphaned temp files.
#include "core/output.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include <fmt/format.h>

#include "core/errors.h"
#include "core/util.h"

namespace unravel {

namespace {

constexpr int kMaxLinkHops = 40;  // as the kernel's ELOOP limit

std::string errno_text(int err) { return std::strerror(err); }

std::string label_of(const std::string& path, const std::string& flag_name) {
  if (path.empty()) return flag_name.empty() ? "cannot write" : flag_name;
  return flag_name.empty() ? "cannot write " + path : flag_name + " " + path;
}

[[noreturn]] void fail(const std::string& label, const std::string& problem) {
  throw UserError(label + ": " + problem);
}

std::string dir_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// The final target of PATH after following symlinks; `exists` false when it is missing.
struct Target {
  std::string path;
  bool exists = false;
  struct stat st {};
};

Target resolve(const std::string& path, const std::string& label) {
  Target t;
  t.path = path;
  for (int hops = 0;; ++hops) {
    if (::lstat(t.path.c_str(), &t.st) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) fail(label, errno_text(errno));
      t.exists = false;
      return t;
    }
    t.exists = true;
    if (!S_ISLNK(t.st.st_mode)) return t;
    if (hops >= kMaxLinkHops) fail(label, "too many levels of symbolic links");
    std::string link(4096, '\0');
    const ssize_t n = ::readlink(t.path.c_str(), link.data(), link.size());
    if (n < 0) fail(label, "cannot read the symbolic link " + t.path + ": " + errno_text(errno));
    link.resize(static_cast<std::size_t>(n));
    t.path = !link.empty() && link[0] == '/' ? link : dir_of(t.path) + "/" + link;
  }
}

// Refuses what cannot be written at all; true for a target written through (device, FIFO).
bool written_through(const Target& t, const std::string& label) {
  if (!t.exists) return false;
  if (S_ISDIR(t.st.st_mode)) fail(label, "is a directory");
  if (S_ISSOCK(t.st.st_mode)) fail(label, "is a socket");
  return S_ISCHR(t.st.st_mode) || S_ISBLK(t.st.st_mode) || S_ISFIFO(t.st.st_mode);
}

// Writes all of `content` to fd; returns 0 or the errno of the failure.
int write_all(int fd, const std::string& content) {
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

// write_all with SIGPIPE held back: a FIFO whose reader left gives EPIPE instead of killing us.
int write_all_no_sigpipe(int fd, const std::string& content) {
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  const int err = write_all(fd, content);
  if (err == EPIPE && !was_pending) {
    const struct timespec no_wait {};
    while (sigtimedwait(&pipe_set, nullptr, &no_wait) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return err;
}

void write_through(const std::string& target, const std::string& content, const std::string& label) {
  const int fd = ::open(target.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) fail(label, errno_text(errno));
  int err = write_all_no_sigpipe(fd, content);
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err != 0) fail(label, errno_text(err));
}

// Fails unless DIR exists and is a directory.
void check_directory(const std::string& dir, const std::string& label) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) fail(label, "directory " + dir + " does not exist");
    if (errno == ENOTDIR) fail(label, "a parent of " + dir + " is not a directory");
    fail(label, "directory " + dir + ": " + errno_text(errno));
  }
  if (!S_ISDIR(st.st_mode)) fail(label, dir + " is not a directory");
}

// mode < 0: a new file (0644 less the umask); else the permission bits of the file replaced.
void write_replacing(const std::string& target, const std::string& content, int mode,
                     const std::string& label) {
  const std::string tmp = temp_path_for(target);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    const int err = errno;
    check_directory(dir_of(target), label);
    fail(label, errno_text(err));
  }
  int err = 0;
  if (mode >= 0 && ::fchmod(fd, static_cast<mode_t>(mode)) != 0) err = errno;
  if (err == 0) err = write_all(fd, content);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && std::rename(tmp.c_str(), target.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail(label, errno_text(err));
  }
}

void write_following(const std::string& path, const std::string& content, const std::string& label) {
  if (path.empty()) fail(label, "empty file name");
  const Target t = resolve(path, label);
  if (written_through(t, label)) return write_through(t.path, content, label);
  if (!t.exists && t.path.back() == '/') fail(label, "names a directory (a file name is needed)");
  write_replacing(t.path, content, t.exists ? static_cast<int>(t.st.st_mode & 07777) : -1, label);
}

// Proves that a file can be created in the directory of `target` (as write_replacing will).
void probe_directory(const std::string& target, const std::string& label) {
  const std::string dir = dir_of(target);
  check_directory(dir, label);
  if (::access(dir.c_str(), W_OK) != 0)
    fail(label, fmt::format("cannot create files in {} ({})", dir, errno_text(errno)));
  const std::string tmp = temp_path_for(target);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return;  // this process is writing it right now
    fail(label, fmt::format("cannot create files in {} ({})", dir, errno_text(errno)));
  }
  ::close(fd);
  ::unlink(tmp.c_str());
}

}  // namespace

std::string temp_path_for(const std::string& target) {
  return target + ".tmp." + std::to_string(::getpid());
}

void write_output_file(const std::string& path, const std::string& content, const std::string& flag_name) {
  const std::string label = label_of(path, flag_name);
  if (path == "-") {
    std::cout.write(content.data(), static_cast<std::streamsize>(content.size()));
    std::cout.flush();
    if (!std::cout) {
      std::cout.clear();
      fail(label, "cannot write standard output");
    }
    return;
  }
  write_following(path, content, label);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  write_following(path, content, label_of(path, ""));
}

void write_json_atomic(const std::string& path, const nlohmann::json& j, int indent) {
  write_file_atomic(path, j.dump(indent) + "\n");
}

void check_output_path(const std::string& path, const std::string& flag_name) {
  if (path == "-") return;
  const std::string label = label_of(path, flag_name);
  if (path.empty()) fail(label, "empty file name");
  const Target t = resolve(path, label);
  if (written_through(t, label)) {
    if (::access(t.path.c_str(), W_OK) != 0) fail(label, "not writable (" + errno_text(errno) + ")");
    return;
  }
  if (!t.exists && t.path.back() == '/') fail(label, "names a directory (a file name is needed)");
  probe_directory(t.path, label);
}

std::size_t remove_stale_temp_files(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  const long self = static_cast<long>(::getpid());
  std::size_t removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const std::size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at == 0) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const long pid = std::stol(digits);
    if (pid <= 0) continue;
    const std::string full = dir + "/" + name;
    struct stat st {};
    if (::lstat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const bool dead = pid == self || (::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH);
    if (dead && ::unlink(full.c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

bool is_regular_output(const std::string& path) {
  if (path.empty() || path == "-") return false;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT;  // not there yet: a new regular file
  return S_ISREG(st.st_mode);
}

}  // namespace unravel
