// RunLock: flock() on DIR/.lock kept open for the lock's lifetime, the holder's record written
// after the lock is taken, a per-process registry for re-entrant acquires, and the one-line
// message naming the holder when the lock is taken elsewhere.
#include "core/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/util.h"

namespace unravel {

namespace {

constexpr std::size_t kMaxCommandChars = 120, kMaxRecordBytes = 4096;

// Recursive: a State's deleter takes it, and may run inside acquire() if acquire() throws.
std::recursive_mutex& registry_mutex() {
  static std::recursive_mutex m;
  return m;
}
// realpath of DIR -> the lock this process holds on it
std::map<std::string, std::weak_ptr<void>>& registry() {
  static std::map<std::string, std::weak_ptr<void>> r;
  return r;
}

std::string command_line() {
  std::string cmd;
  const int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) cmd.assign(buf, static_cast<std::size_t>(n));
    ::close(fd);
  }
  for (char& c : cmd)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';  // the arguments' NUL separators
  while (!cmd.empty() && cmd.back() == ' ') cmd.pop_back();
  if (cmd.size() > kMaxCommandChars) cmd = cmd.substr(0, kMaxCommandChars - 3) + "...";
  return cmd.empty() ? "?" : cmd;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string record_line(const std::string& what) {
  const nlohmann::json j = {{"pid", static_cast<long>(::getpid())}, {"host", host_name()},
                            {"command", command_line()}, {"started", iso_time_now()}, {"role", what}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string field(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "?";
  return elide_middle(it->get<std::string>(), kMaxCommandChars + 10);
}

// "is in use by pid 12345 (unravel train ... started 2026-...Z)" from the holder's record.
std::string holder_of(int fd) {
  std::string text(kMaxRecordBytes, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size(), 0);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  const auto j = nlohmann::json::parse(text.substr(0, text.find('\n')), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer())
    return "is in use by another process (it has not written its record yet)";
  std::string where;
  if (field(j, "host") != host_name()) where = " on host " + field(j, "host");
  return fmt::format("is in use by pid {}{} ({} started {})", j["pid"].get<long long>(), where,
                     field(j, "command"), field(j, "started"));
}

}  // namespace

struct RunLock::State {
  int fd = -1;
  pid_t owner = -1;  // a forked child inherits the State but is not the holder
  std::string path, key;
  ~State() {
    if (fd < 0) return;
    if (owner == ::getpid() && ::ftruncate(fd, 0) != 0) {
      // the lock goes with close() all the same; a stale record only misleads a message
    }
    ::close(fd);  // drops the flock
  }
};

std::string RunLock::lock_path() const { return state_ ? state_->path : std::string(); }

RunLock RunLock::acquire(const std::string& dir, const std::string& what) {
  const std::string label = what.empty() ? dir : what + " " + dir;
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr)
    throw UserError(fmt::format("{}: cannot lock the directory: {}", label, std::strerror(errno)));
  const std::string line = record_line(what);
  std::lock_guard<std::recursive_mutex> guard(registry_mutex());
  RunLock lock;
  auto held = std::static_pointer_cast<State>(registry()[real].lock());
  if (held && held->owner == ::getpid()) {  // this process holds it already
    lock.state_ = std::move(held);
    return lock;
  }
  const std::string path = std::string(real) + "/.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw UserError(fmt::format("{}: cannot open {}: {}", label, path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError(fmt::format("{}: {} is not a regular file", label, path));
  }
  int rc;
  while ((rc = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (rc != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? holder_of(fd) : "";
    ::close(fd);
    if (err != EWOULDBLOCK) throw UserError(fmt::format("{}: cannot lock {}: {}", label, path, std::strerror(err)));
    throw UserError(fmt::format("{} {}: wait for it to finish or use another directory", label, holder));
  }
  // The State's deleter runs under the registry's mutex, so that a concurrent acquire never
  // finds the entry expired while the old descriptor still holds the flock.
  std::shared_ptr<State> state(new State, [](State* s) {
    std::lock_guard<std::recursive_mutex> g(registry_mutex());
    auto it = registry().find(s->key);
    if (it != registry().end() && it->second.expired()) registry().erase(it);
    delete s;
  });
  state->fd = fd;
  state->owner = ::getpid();
  state->path = path;
  state->key = real;
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
    // the lock holds without its record; another process then says "has not written its record"
  }
  registry()[real] = state;
  lock.state_ = std::move(state);
  return lock;
}

}  // namespace unravel
