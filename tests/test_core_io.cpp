// Output files (write policy for FIFOs, devices, symlinks, directories and "-"; checks before
// work; stale temp files), the run-directory lock across processes, and read size limits.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/output.h"
#include "core/run_lock.h"
#include "core/util.h"

using namespace unravel;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A fresh temporary directory, removed (read-only parts made writable first) at the end.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "unravel_io_XXXXXX").string();
    if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(path_, ec))
      if (e.is_directory(ec)) ::chmod(e.path().c_str(), 0755);
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

void put(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
}

bool is_link(const std::string& p) { return fs::is_symlink(fs::symlink_status(p)); }

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A child process that sleeps; killed (SIGKILL) and reaped by the destructor.
struct Child {
  pid_t pid = -1;
  explicit Child(const std::function<void()>& body) {
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      body();
      ::_exit(0);
    }
  }
  int kill_and_wait() {
    int status = 0;
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    pid = -1;
    return status;
  }
  ~Child() { kill_and_wait(); }
};

}  // namespace

// ---- writing -------------------------------------------------------------------------------

TEST(Output, RegularFileIsReplacedAtomicallyKeepingItsMode) {
  TempDir d;
  const std::string f = d / "r.json";
  write_output_file(f, "one", "--json");
  EXPECT_EQ(read_text_file(f), "one");
  ASSERT_EQ(::chmod(f.c_str(), 0600), 0);
  write_file_atomic(f, "two");
  EXPECT_EQ(read_text_file(f), "two");
  EXPECT_EQ(fs::status(f).permissions(), fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(names_in(d.str()), std::vector<std::string>{"r.json"});  // no temp file left
  EXPECT_EQ(temp_path_for("/a/b.json"), "/a/b.json.tmp." + std::to_string(::getpid()));
}

TEST(Output, WritesThroughAFifo) {
  TempDir d;
  const std::string fifo = d / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // the reader is there first
  ASSERT_GE(rd, 0);
  std::string content(300000, '\0');  // more than a pipe holds: the writer waits for the reader
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
  auto writer = std::async(std::launch::async, [&] { write_output_file(fifo, content, "--csv"); });
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buf[65536];
  while (got.size() < content.size() && std::chrono::steady_clock::now() < deadline) {
    pollfd p{rd, POLLIN, 0};
    ::poll(&p, 1, 100);
    const ssize_t n = ::read(rd, buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
  }
  ASSERT_EQ(writer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_NO_THROW(writer.get());
  ::close(rd);
  EXPECT_EQ(got, content);
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(fifo)));  // still a FIFO, no temp file beside it
  EXPECT_EQ(names_in(d.str()), std::vector<std::string>{"pipe"});
}

TEST(Output, AReaderLeavingEarlyIsAnErrorNotSigpipe) {
  TempDir d;
  const std::string fifo = d / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(rd, 0);
  auto writer = std::async(std::launch::async, [&] {
    return error_of([&] { write_output_file(fifo, std::string(4 << 20, 'x'), "--json"); });
  });
  char buf[1024];
  pollfd p{rd, POLLIN, 0};
  for (int i = 0; i < 100 && ::read(rd, buf, sizeof buf) <= 0; ++i) ::poll(&p, 1, 100);  // it writes
  ::close(rd);  // and the reader leaves
  ASSERT_EQ(writer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(writer.get(), "--json " + fifo + ": Broken pipe");
}

TEST(Output, WritesThroughACharacterDevice) {
  TempDir d;
  const std::string dev = d / "null";
  if (::mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0)
    GTEST_SKIP() << "mknod of a character device is not permitted here: " << std::strerror(errno);
  const int probe = ::open(dev.c_str(), O_WRONLY);
  if (probe < 0) GTEST_SKIP() << "device nodes cannot be opened here (nodev mount?): " << std::strerror(errno);
  ::close(probe);
  EXPECT_NO_THROW(check_output_path(dev, "--json"));
  write_output_file(dev, "{}\n", "--json");
  write_file_atomic(dev, "{}\n");
  struct stat st {};
  ASSERT_EQ(::lstat(dev.c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));  // not replaced by a regular file
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(names_in(d.str()), std::vector<std::string>{"null"});
}

TEST(Output, SymlinksStayLinksAndTheirTargetGetsTheContent) {
  TempDir d;
  fs::create_directory(d / "sub");
  put(d / "sub/t.json", "old");
  fs::create_symlink("sub/t.json", d / "l.json");  // relative, from the link's directory
  fs::create_symlink(d / "l.json", d / "l2.json");  // a chain
  write_output_file(d / "l2.json", "new", "--json");
  EXPECT_TRUE(is_link(d / "l.json"));
  EXPECT_TRUE(is_link(d / "l2.json"));
  EXPECT_EQ(fs::read_symlink(d / "l.json"), "sub/t.json");
  EXPECT_EQ(read_text_file(d / "sub/t.json"), "new");
  // a dangling link into an existing directory creates its target
  fs::create_symlink("sub/made.csv", d / "dangling.csv");
  EXPECT_NO_THROW(check_output_path(d / "dangling.csv", "--csv"));
  write_output_file(d / "dangling.csv", "a,b\n", "--csv");
  EXPECT_TRUE(is_link(d / "dangling.csv"));
  EXPECT_EQ(read_text_file(d / "sub/made.csv"), "a,b\n");
  // ...but not into a missing one, and a loop is an error
  fs::create_symlink("nowhere/x.csv", d / "bad.csv");
  const std::string want = "--csv " + (d / "bad.csv") + ": directory " + (d / "nowhere") + " does not exist";
  EXPECT_EQ(error_of([&] { check_output_path(d / "bad.csv", "--csv"); }), want);
  EXPECT_EQ(error_of([&] { write_output_file(d / "bad.csv", "x", "--csv"); }), want);
  fs::create_symlink("loop2", d / "loop1");
  fs::create_symlink("loop1", d / "loop2");
  EXPECT_TRUE(has(error_of([&] { write_output_file(d / "loop1", "x", "--json"); }), "too many levels"));
  EXPECT_EQ(names_in(d.str() + "/sub"), (std::vector<std::string>{"made.csv", "t.json"}));
}

TEST(Output, DirectoriesAreRefused) {
  TempDir d;
  fs::create_symlink(d.str(), d / "to_dir");
  for (const std::string& p : std::vector<std::string>{d.str(), d / "to_dir"}) {
    EXPECT_EQ(error_of([&] { write_output_file(p, "x", "--json"); }), "--json " + p + ": is a directory");
    EXPECT_EQ(error_of([&] { check_output_path(p, "--json"); }), "--json " + p + ": is a directory");
  }
  EXPECT_EQ(error_of([&] { write_file_atomic(d.str(), "x"); }), "cannot write " + d.str() + ": is a directory");
  EXPECT_TRUE(has(error_of([&] { write_output_file(d / "new/", "x", "--json"); }), "names a directory"));
  EXPECT_EQ(error_of([&] { write_output_file("", "x", "--json"); }), "--json: empty file name");
}

TEST(Output, DashIsStandardOutput) {
  testing::internal::CaptureStdout();
  write_output_file("-", "{\"a\": 1}\n", "--json");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "{\"a\": 1}\n");
  EXPECT_NO_THROW(check_output_path("-", "--json"));
}

// ---- checks before work ----------------------------------------------------------------------

TEST(OutputCheck, MissingGoodAndUnwritableDirectories) {
  TempDir d;
  EXPECT_EQ(error_of([&] { check_output_path(d / "missing/dir/x.json", "--json"); }),
            "--json " + (d / "missing/dir/x.json") + ": directory " + (d / "missing/dir") + " does not exist");
  put(d / "file", "");
  EXPECT_EQ(error_of([&] { check_output_path(d / "file/x.json", "--json"); }),
            "--json " + (d / "file/x.json") + ": " + (d / "file") + " is not a directory");
  EXPECT_EQ(error_of([&] { write_output_file(d / "file/x.json", "x", "--json"); }),
            "--json " + (d / "file/x.json") + ": " + (d / "file") + " is not a directory");
  EXPECT_EQ(error_of([&] { write_output_file(d / "missing/x.json", "x", "--json"); }),
            "--json " + (d / "missing/x.json") + ": directory " + (d / "missing") + " does not exist");
  EXPECT_NO_THROW(check_output_path(d / "x.json", "--json"));
  put(d / "exists.json", "keep");
  EXPECT_NO_THROW(check_output_path(d / "exists.json", "--json"));
  EXPECT_EQ(read_text_file(d / "exists.json"), "keep");  // checked, not written
  EXPECT_EQ(names_in(d.str()), (std::vector<std::string>{"exists.json", "file"}));  // the probe is gone
  // Relative names are in the current directory.
  EXPECT_NO_THROW(check_output_path("unravel_check_probe.json", "--json"));
  EXPECT_FALSE(path_exists("unravel_check_probe.json"));
  // /proc accepts no new files, whatever access() says to root.
  EXPECT_TRUE(has(error_of([&] { check_output_path("/proc/unravel_x.json", "--json"); }),
                  "--json /proc/unravel_x.json: cannot create files in /proc ("));
}

TEST(OutputCheck, ReadOnlyDirectoryAnswersWhatAWriteWouldDo) {
  TempDir d;
  fs::create_directory(d / "ro");
  ASSERT_EQ(::chmod((d / "ro").c_str(), 0555), 0);
  const std::string target = d / "ro/x.json";
  // What actually happens (root may write into a 0555 directory):
  const int fd = ::open((d / "ro/try").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  const bool writable = fd >= 0;
  if (writable) {
    ::close(fd);
    ::unlink((d / "ro/try").c_str());
  }
  const std::string e = error_of([&] { check_output_path(target, "--json"); });
  const std::string w = error_of([&] { write_output_file(target, "x", "--json"); });
  if (writable) {
    std::cout << "[ note ] running as root: a 0555 directory is writable, and the check says so\n";
    EXPECT_EQ(e, "(no error)");
    EXPECT_EQ(w, "(no error)");
  } else {
    EXPECT_EQ(e, "--json " + target + ": cannot create files in " + (d / "ro") + " (Permission denied)");
    EXPECT_NE(w, "(no error)");
  }
}

// ---- stale temp files ----------------------------------------------------------------------

TEST(StaleTemps, DeadAndOwnPidsAreRemovedLiveOnesAndOthersKept) {
  TempDir d;
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  Child live([] { ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr)); });
  const std::string sd = std::to_string(dead), sl = std::to_string(live.pid), me = std::to_string(::getpid());
  for (const std::string& n : std::vector<std::string>{"a.json.tmp." + sd, "b.csv.tmp." + sl, "c.tmp." + me, "other.txt",
                               "x.tmp.abc", ".tmp." + sd, "y.tmp." + sd + "z", "z.tmp.0", "w.tmp.-" + sd})
    put(d / n, "t");
  fs::create_directory(d / ("dir.tmp." + sd));
  fs::create_symlink("other.txt", d / ("link.tmp." + sd));
  EXPECT_EQ(remove_stale_temp_files(d.str()), 2u);
  std::vector<std::string> want = {".tmp." + sd, "b.csv.tmp." + sl, "dir.tmp." + sd, "link.tmp." + sd,
                                   "other.txt", "w.tmp.-" + sd, "x.tmp.abc", "y.tmp." + sd + "z", "z.tmp.0"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names_in(d.str()), want);
  EXPECT_EQ(live.kill_and_wait() & 0x7f, SIGKILL);  // it was alive all along
  EXPECT_EQ(remove_stale_temp_files(d.str()), 1u);  // now its file is stale too
  EXPECT_EQ(remove_stale_temp_files(d / "missing"), 0u);
}

// ---- run lock ------------------------------------------------------------------------------

namespace {

// A child that takes the lock on `dir`, reports 'L' (or 'E' and the error) on a pipe and sleeps.
struct LockHolder {
  int fds[2] = {-1, -1};
  std::unique_ptr<Child> child;
  char answer = '?';
  explicit LockHolder(const std::string& dir) {
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    child = std::make_unique<Child>([&] {
      try {
        RunLock lock = RunLock::acquire(dir, "--out");
        (void)!::write(fds[1], "L", 1);
        ::pause();
      } catch (const UserError& e) {
        (void)!::write(fds[1], "E", 1);
      }
    });
    ::close(fds[1]);
    if (::read(fds[0], &answer, 1) != 1) answer = '?';
    ::close(fds[0]);
  }
};

}  // namespace

TEST(RunLock, OneHolderAtATimeAndSigkillFreesIt) {
  TempDir d;
  LockHolder holder(d.str());
  ASSERT_EQ(holder.answer, 'L');
  const std::string e = error_of([&] { RunLock::acquire(d.str(), "--out"); });
  EXPECT_TRUE(has(e, "--out " + d.str() + " is in use by pid " + std::to_string(holder.child->pid) + " (")) << e;
  EXPECT_TRUE(has(e, "test_core_io")) << e;  // the holder's command line
  EXPECT_TRUE(has(e, "): wait for it to finish or use another directory")) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
  const auto rec = nlohmann::json::parse(read_text_file(d / ".lock"));
  EXPECT_EQ(rec["pid"], holder.child->pid);
  EXPECT_EQ(rec["role"], "--out");
  EXPECT_EQ(rec["started"].get<std::string>().size(), 20u);  // 2026-12-01T10:00:00Z
  EXPECT_LE(rec["command"].get<std::string>().size(), 120u);
  // SIGKILL: no destructor runs, the kernel drops the flock
  EXPECT_EQ(holder.child->kill_and_wait() & 0x7f, SIGKILL);
  {
    RunLock mine = RunLock::acquire(d.str(), "--out");
    EXPECT_TRUE(mine.held());
    EXPECT_EQ(nlohmann::json::parse(read_text_file(d / ".lock"))["pid"], ::getpid());  // overwritten
    LockHolder other(d.str());
    EXPECT_EQ(other.answer, 'E');  // we hold it now
  }
  LockHolder after(d.str());  // released when `mine` went away
  EXPECT_EQ(after.answer, 'L');
}

TEST(RunLock, ReentrantInAProcessAndIndependentPerDirectory) {
  TempDir d;
  fs::create_directories(d / "runs/x");
  RunLock outer = RunLock::acquire(d.str(), "--out");
  RunLock again = RunLock::acquire(d.str() + "/./", "--out");  // same directory, another spelling
  RunLock inner = RunLock::acquire(d / "runs/x", "--out");
  EXPECT_EQ(outer.lock_path(), again.lock_path());
  EXPECT_NE(outer.lock_path(), inner.lock_path());
  outer.release();
  EXPECT_EQ(LockHolder(d.str()).answer, 'E');  // `again` still holds it
  again.release();
  EXPECT_FALSE(again.held());
  EXPECT_EQ(read_text_file(d / ".lock"), "");  // released: the record is emptied
  EXPECT_EQ(LockHolder(d.str()).answer, 'L');
  EXPECT_EQ(LockHolder(d / "runs/x").answer, 'E');  // inner is independent and still held
  EXPECT_TRUE(has(error_of([&] { RunLock::acquire(d / "missing", "--run"); }),
                  "--run " + (d / "missing") + ": cannot lock the directory: No such file or directory"));
}

// ---- read limits ---------------------------------------------------------------------------

TEST(ReadLimits, SizeIsCheckedBeforeReading) {
  TempDir d;
  put(d / "f.txt", std::string(1000, 'a'));
  EXPECT_EQ(read_text_file(d / "f.txt", 1000).size(), 1000u);
  EXPECT_EQ(error_of([&] { read_text_file(d / "f.txt", 999); }),
            (d / "f.txt") + ": file is 1000 bytes, more than the limit of 999 bytes");
  // a sparse 100 GiB file: refused at once (reading it would take minutes)
  const int fd = ::open((d / "huge.json").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  const bool sparse = ::ftruncate(fd, off_t{100} << 30) == 0;
  ::close(fd);
  if (sparse) {  // the work is bounded, not the wall time (a busy machine or a sanitizer stretches that)
    timespec c0{}, c1{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    EXPECT_EQ(error_of([&] { read_json_file(d / "huge.json"); }),
              (d / "huge.json") + ": file is 107374182400 bytes, more than the limit of 67108864 bytes");
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    EXPECT_LT((c1.tv_sec - c0.tv_sec) + 1e-9 * (c1.tv_nsec - c0.tv_nsec), 1.0) << "CPU seconds";
  }
  // not a regular file: counted while reading
  EXPECT_EQ(error_of([&] { read_text_file("/dev/zero", 1 << 20); }),
            "/dev/zero: file holds more than the limit of 1048576 bytes");
}

TEST(ReadLimits, JsonErrorsAreShortAndQuoteNothing) {
  TempDir d;
  put(d / "bad.json", "{\"a\": 1, \"secret\": tru3_SECRET_VALUE_" + std::string(5000, 'S') + "}");
  std::string e = error_of([&] { read_json_file(d / "bad.json"); });
  EXPECT_TRUE(has(e, (d / "bad.json") + ": invalid JSON at byte ")) << e;
  EXPECT_FALSE(has(e, "SECRET")) << e;
  EXPECT_FALSE(has(e, "tru3")) << e;
  EXPECT_LT(e.size(), 200 + (d / "bad.json").size());
  put(d / "deep.json", std::string(1 << 20, '['));
  e = error_of([&] { read_json_file(d / "deep.json"); });
  EXPECT_EQ(e, (d / "deep.json") + ": invalid JSON: nested more than 256 levels deep");
  // A number beyond double's range (a fuzzing finding: it escaped as json's out_of_range).
  put(d / "big.json", "{\"epochs\": 22E22222222222}");
  EXPECT_EQ(error_of([&] { read_json_file(d / "big.json"); }),
            (d / "big.json") + ": invalid JSON: a number beyond the range of a double");
  put(d / "ok.json", "[[1, {\"a\": [2]}]]");
  EXPECT_EQ(read_json_file(d / "ok.json")[0][1]["a"][0], 2);
}
