// One writer per run directory: an exclusive flock() on DIR/.lock that the kernel drops when the
// holder exits or is killed, with a one-line JSON record of who holds it for the error message
// of the next process. Torch-free.
#pragma once
#include <memory>
#include <string>

namespace unravel {

// Usage: `RunLock lock = RunLock::acquire(out_dir, "--out");` kept alive while the directory
// is written. Semantics:
// - acquire() opens (creating) DIR/.lock with O_CLOEXEC, takes flock(LOCK_EX | LOCK_NB) and,
//   once it holds the lock, replaces the file's content by one JSON line
//   {"pid":..,"host":..,"command":..,"started":..,"role":..} (command: /proc/self/cmdline,
//   at most 120 characters). The file is never removed (removing it would let two processes
//   lock two different files); releasing empties it.
// - Held by another process: UserError at once, one line: "--out runs/r20 is in use by pid 12345
//   (unravel train --model ... started 2026-12-01T10:00:00Z): wait for it to finish or use
//   another directory". `what` is the caller's flag or role name ("--out", "--run").
// - Re-entrant within a process: a second acquire() of the same directory (compared by
//   realpath) returns another handle on the same lock, released with the last handle; locks of
//   different directories (DIR and DIR/runs/x) are independent flocks.
// - A fork() without exec() shares the lock with the child (one open file description), so
//   the lock lasts until both are gone; exec() closes it (O_CLOEXEC).
// - Data-parallel runs: only the rank that writes the directory (rank 0) locks it.
// - DIR must exist. flock() over NFS is as reliable as the server's lock manager.
class RunLock {
 public:
  RunLock() = default;  // holds nothing
  RunLock(RunLock&&) noexcept = default;
  RunLock& operator=(RunLock&&) noexcept = default;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock() = default;  // releases this handle

  static RunLock acquire(const std::string& dir, const std::string& what);

  bool held() const { return state_ != nullptr; }
  std::string lock_path() const;  // DIR/.lock, empty when nothing is held
  void release() { state_.reset(); }

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace unravel
