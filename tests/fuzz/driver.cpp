// A small coverage-guided mutation fuzzer for harnesses with libFuzzer's interface
// (LLVMFuzzerTestOneInput), built with gcc, -fsanitize=address,undefined and
// -fsanitize-coverage=trace-pc (-DUNRAVEL_FUZZ=ON, scripts/fuzz.sh). The work runs in a forked
// child, restarted after each crash or hang; crashing inputs land in OUT/crash-<hash>, hangs in
// OUT/timeout-<hash>, inputs that reach new code in OUT/corpus/.
//
//   fuzz_NAME [--seconds N] [--runs N] [--out DIR] [--max-len N] [--timeout S] [--seed N] CORPUS_DIR|FILE...
//
// Only files given (no directory, no --seconds): each runs once (replays a crash under the sanitizers).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Sanitizer settings compiled in (ASAN_OPTIONS / UBSAN_OPTIONS from the environment add to them):
// an allocation above 1 GiB or a process above 3 GiB is a reported failure, not a slow swap.
extern "C" const char* __asan_default_options() {
  return "max_allocation_size_mb=1024:allocator_may_return_null=0:hard_rss_limit_mb=3072:handle_abort=1:"
         "detect_leaks=1:malloc_context_size=20";
}
extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:abort_on_error=1:print_stacktrace=1"; }
extern "C" void __sanitizer_set_death_callback(void (*callback)(void));

namespace {

// ---- coverage: AFL-style edge counters over hashed program counters ---------------------------
constexpr size_t kMapSize = size_t{1} << 16;
uint8_t g_map[kMapSize];
uintptr_t g_prev_pc = 0;

}  // namespace

extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_pc() {
  const uintptr_t cur = (reinterpret_cast<uintptr_t>(__builtin_return_address(0)) * 0x9E3779B97F4A7C15ull) >> 48;
  ++g_map[(cur ^ g_prev_pc) & (kMapSize - 1)];
  g_prev_pc = cur >> 1;
}

namespace {

// Shared with the parent across crashes.
struct Shared {
  std::atomic<uint64_t> execs{0};
  std::atomic<uint64_t> new_inputs{0};
  std::atomic<uint64_t> corpus{0};
  std::atomic<char> status{0};  // 'C' crash, 'T' timeout, written by the child before it dies
  std::atomic<bool> seeding{false};  // the child is running the corpus it loaded
};

struct Options {
  double seconds = -1;
  uint64_t runs = 0;          // 0: no limit
  std::string out = "fuzz-out";
  size_t max_len = 1 << 16;
  int timeout_s = 5;
  uint64_t seed = 0;          // 0: from the clock
  std::vector<std::string> inputs;
};

Shared* g_shared = nullptr;
const uint8_t* g_cur = nullptr;  // the input being run (for the crash handlers)
size_t g_cur_size = 0;
const char* g_out_dir = nullptr;  // where findings go; none when replaying given files
volatile sig_atomic_t g_running = 0;
volatile uint64_t g_alarm_seen = 0;
volatile int g_alarm_stall = 0;
int g_timeout_s = 5;

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Async-signal-safe: writes the current input to OUT/<kind>-<hash>.
void write_artifact(const char* kind) {
  if (!g_out_dir) return;  // replaying files: the input is one of them
  char path[4096];
  size_t n = 0;
  for (const char* s : {g_out_dir, "/", kind, "-"})
    for (; *s && n < sizeof path - 20; ++s) path[n++] = *s;
  const uint64_t h = fnv1a(g_cur, g_cur_size);
  for (int i = 15; i >= 0; --i) path[n++] = "0123456789abcdef"[(h >> (4 * i)) & 15];
  path[n] = 0;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    for (size_t done = 0; done < g_cur_size;) {
      const ssize_t w = ::write(fd, g_cur + done, g_cur_size - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    ::close(fd);
  }
  const char* msg = "\n==fuzz== input written to ";
  (void)!::write(2, msg, strlen(msg));
  (void)!::write(2, path, n);
  (void)!::write(2, "\n", 1);
}

void on_death() {
  if (!g_running) return;
  g_running = 0;
  if (g_shared) g_shared->status = 'C';
  write_artifact("crash");
}

void on_signal(int sig) {
  on_death();
  signal(sig, SIG_DFL);
  raise(sig);
}

// Once a second: an input that has run for timeout_s seconds is a hang.
void on_alarm(int) {
  if (!g_running || !g_shared) return;
  const uint64_t now = g_shared->execs.load(std::memory_order_relaxed);
  if (now != g_alarm_seen) {
    g_alarm_seen = now;
    g_alarm_stall = 0;
    return;
  }
  if (++g_alarm_stall < g_timeout_s) return;
  g_running = 0;
  g_shared->status = 'T';
  write_artifact("timeout");
  _exit(70);
}

void install_handlers() {
  __sanitizer_set_death_callback(on_death);
#if defined(__SANITIZE_ADDRESS__)
  const int sigs[] = {SIGILL};  // ASan reports SEGV, BUS, FPE and (handle_abort=1) ABRT itself
#else
  const int sigs[] = {SIGSEGV, SIGABRT, SIGFPE, SIGBUS, SIGILL};
#endif
  for (int s : sigs) signal(s, on_signal);
  signal(SIGALRM, on_alarm);
  itimerval tv{{1, 0}, {1, 0}};
  setitimer(ITIMER_REAL, &tv, nullptr);
}

// Runs one input from an exact-size heap copy, so that ASan sees a read one byte past its end.
void run_one(const std::vector<uint8_t>& input) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[std::max<size_t>(input.size(), 1)]);
  if (!input.empty()) std::memcpy(copy.get(), input.data(), input.size());
  g_cur = copy.get();
  g_cur_size = input.size();
  g_running = 1;
  LLVMFuzzerTestOneInput(input.empty() ? nullptr : copy.get(), input.size());
  g_running = 0;
  if (g_shared) g_shared->execs.fetch_add(1, std::memory_order_relaxed);
}

bool read_file(const std::string& path, std::vector<uint8_t>& out, size_t max_len) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) > max_len) return false;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  out.resize(static_cast<size_t>(st.st_size));
  const size_t got = out.empty() ? 0 : std::fread(out.data(), 1, out.size(), f);
  std::fclose(f);
  return got == out.size();
}

std::vector<std::string> list_files(const std::string& path) {
  std::vector<std::string> out;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return out;
  if (!S_ISDIR(st.st_mode)) return {path};
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') out.push_back(path + "/" + e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- mutations -------------------------------------------------------------------------------
class Mutator {
 public:
  Mutator(uint64_t seed, size_t max_len) : rng_(seed), max_len_(max_len) {}
  size_t below(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  // 1 to 8 stacked mutations of `in`; `other` (another corpus entry) feeds splices.
  std::vector<uint8_t> mutate(std::vector<uint8_t> in, const std::vector<uint8_t>& other) {
    const size_t rounds = 1 + below(8);
    for (size_t r = 0; r < rounds; ++r) once(in, other);
    if (in.size() > max_len_) in.resize(max_len_);
    return in;
  }

 private:
  void put_int(std::vector<uint8_t>& b, uint64_t v, size_t width, bool big_endian) {
    if (b.size() < width) return;
    const size_t at = below(b.size() - width + 1);
    for (size_t i = 0; i < width; ++i) b[at + (big_endian ? width - 1 - i : i)] = static_cast<uint8_t>(v >> (8 * i));
  }

  void once(std::vector<uint8_t>& b, const std::vector<uint8_t>& other) {
    static const uint64_t kInteresting[] = {0, 1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 100, 127, 128, 255, 256, 512, 1000,
                                            1024, 4096, 32767, 32768, 65535, 65536, 0x7FFFFFFF, 0x80000000,
                                            0xFFFFFFFF, 0x100000000, uint64_t{1} << 40, 0x7FFFFFFFFFFFFFFF,
                                            0x8000000000000000, ~uint64_t{0}, ~uint64_t{0} - 1};
    const size_t n = b.size();
    switch (below(12)) {
      case 0: if (n) b[below(n)] ^= static_cast<uint8_t>(1u << below(8)); break;       // flip a bit
      case 1: if (n) b[below(n)] = static_cast<uint8_t>(below(256)); break;             // random byte
      case 2: {                                                                          // interesting int
        const size_t widths[] = {1, 2, 4, 8};
        put_int(b, kInteresting[below(std::size(kInteresting))], widths[below(4)], below(2));
        break;
      }
      case 3: {                                                                          // small add / sub
        if (!n) break;
        const size_t at = below(n);
        b[at] = static_cast<uint8_t>(b[at] + (below(2) ? 1 : -1) * static_cast<int>(1 + below(35)));
        break;
      }
      case 4: {                                                                          // erase a chunk
        if (!n) break;
        const size_t at = below(n), len = 1 + below(std::min<size_t>(n - at, below(2) ? 16 : n));
        b.erase(b.begin() + at, b.begin() + at + len);
        break;
      }
      case 5: {                                                                          // insert bytes
        const size_t at = below(n + 1), len = 1 + below(below(2) ? 8 : 128);
        const uint8_t fill = static_cast<uint8_t>(below(256));
        std::vector<uint8_t> ins(len, fill);
        if (below(2)) for (auto& c : ins) c = static_cast<uint8_t>(below(256));
        b.insert(b.begin() + at, ins.begin(), ins.end());
        break;
      }
      case 6: {                                                                          // duplicate a chunk
        if (!n) break;
        const size_t from = below(n), len = 1 + below(std::min<size_t>(n - from, 256)), to = below(n + 1);
        std::vector<uint8_t> chunk(b.begin() + from, b.begin() + from + len);
        b.insert(b.begin() + to, chunk.begin(), chunk.end());
        break;
      }
      case 7: {                                                                          // copy a chunk over
        if (n < 2) break;
        const size_t from = below(n), to = below(n), len = 1 + below(std::min(n - from, n - to));
        std::memmove(b.data() + to, b.data() + from, len);
        break;
      }
      case 8: {                                                                          // splice
        if (other.empty()) break;
        const size_t cut = below(n + 1), from = below(other.size());
        b.resize(cut);
        b.insert(b.end(), other.begin() + from, other.end());
        break;
      }
      case 9: {                                                                          // insert from another
        if (other.empty()) break;
        const size_t from = below(other.size()), len = 1 + below(std::min<size_t>(other.size() - from, 512));
        b.insert(b.begin() + below(n + 1), other.begin() + from, other.begin() + from + len);
        break;
      }
      case 10: if (n) b.resize(below(n)); break;                                        // truncate
      default: {                                                                         // many bit flips
        for (size_t k = 0, m = 1 + below(16); k < m && n; ++k) b[below(n)] ^= static_cast<uint8_t>(1u << below(8));
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  size_t max_len_;
};

// ---- the fuzzing loop (in the child) -------------------------------------------------------------
uint8_t bucket(uint8_t count) {
  if (count <= 3) return count == 3 ? 4 : count;
  if (count < 8) return 8;
  if (count < 16) return 16;
  if (count < 32) return 32;
  return count < 128 ? 64 : 128;
}

// Runs the input and folds its coverage into `seen`; true when it reached something new.
bool run_traced(const std::vector<uint8_t>& input, std::vector<uint8_t>& seen) {
  std::memset(g_map, 0, kMapSize);
  g_prev_pc = 0;
  run_one(input);
  bool fresh = false;
  const auto* words = reinterpret_cast<const uint64_t*>(g_map);
  for (size_t w = 0; w < kMapSize / 8; ++w) {
    if (!words[w]) continue;
    for (size_t i = w * 8; i < w * 8 + 8; ++i) {
      const uint8_t b = bucket(g_map[i]);
      if (b & ~seen[i]) {
        seen[i] |= b;
        fresh = true;
      }
    }
  }
  return fresh;
}

void fuzz_child(const Options& o, std::chrono::steady_clock::time_point deadline) {
  install_handlers();
  std::vector<std::vector<uint8_t>> corpus;
  std::set<uint64_t> hashes;
  auto add = [&](std::vector<uint8_t> in) {
    if (!hashes.insert(fnv1a(in.data(), in.size())).second) return false;
    corpus.push_back(std::move(in));
    return true;
  };
  for (const std::string& dir : o.inputs)
    for (const std::string& f : list_files(dir)) {
      std::vector<uint8_t> b;
      if (read_file(f, b, o.max_len)) add(std::move(b));
    }
  for (const std::string& f : list_files(o.out + "/corpus")) {
    std::vector<uint8_t> b;
    if (read_file(f, b, o.max_len)) add(std::move(b));
  }
  if (corpus.empty()) add({});
  std::vector<uint8_t> seen(kMapSize, 0);
  g_shared->seeding = true;
  for (const auto& in : corpus) run_traced(in, seen);
  g_shared->seeding = false;
  g_shared->corpus = corpus.size();
  Mutator m(o.seed ? o.seed : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^ getpid(),
            o.max_len);
  for (uint64_t i = 0;; ++i) {
    if ((i & 63) == 0 && std::chrono::steady_clock::now() >= deadline) break;
    if (o.runs && g_shared->execs >= o.runs) break;
    const auto& base = corpus[m.below(corpus.size())];
    std::vector<uint8_t> in = m.mutate(base, corpus[m.below(corpus.size())]);
    if (run_traced(in, seen) && add(in)) {
      const uint64_t h = fnv1a(in.data(), in.size());
      char name[64];
      std::snprintf(name, sizeof name, "/corpus/%016llx", static_cast<unsigned long long>(h));
      if (FILE* f = std::fopen((o.out + name).c_str(), "wb")) {
        std::fwrite(in.data(), 1, in.size(), f);
        std::fclose(f);
      }
      g_shared->new_inputs++;
      g_shared->corpus = corpus.size();
    }
  }
}

bool parse_options(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--seconds" && (v = value())) o.seconds = std::atof(v);
    else if (a == "--runs" && (v = value())) o.runs = std::strtoull(v, nullptr, 10);
    else if (a == "--out" && (v = value())) o.out = v;
    else if (a == "--max-len" && (v = value())) o.max_len = std::strtoull(v, nullptr, 10);
    else if (a == "--timeout" && (v = value())) o.timeout_s = std::max(1, std::atoi(v));
    else if (a == "--seed" && (v = value())) o.seed = std::strtoull(v, nullptr, 10);
    else if (!a.empty() && a[0] != '-') o.inputs.push_back(a);
    else return false;
  }
  return !o.inputs.empty();
}

// Every input given is a file and no time was asked for: run each once.
int replay(const Options& o) {
  install_handlers();
  for (const std::string& f : o.inputs) {
    std::vector<uint8_t> b;
    if (!read_file(f, b, SIZE_MAX)) {
      std::fprintf(stderr, "cannot read %s\n", f.c_str());
      return 1;
    }
    std::fprintf(stderr, "running %s (%zu bytes)\n", f.c_str(), b.size());
    run_one(b);
  }
  std::fprintf(stderr, "%zu inputs ran without a failure\n", o.inputs.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_options(argc, argv, o)) {
    std::fprintf(stderr, "usage: %s [--seconds N] [--runs N] [--out DIR] [--max-len N] [--timeout S] [--seed N] CORPUS_DIR|FILE...\n", argv[0]);
    return 2;
  }
  g_timeout_s = o.timeout_s;
  const bool all_files = std::all_of(o.inputs.begin(), o.inputs.end(), [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  });
  if (all_files && o.seconds < 0 && o.runs == 0) return replay(o);
  if (o.seconds < 0) o.seconds = 60;
  ::mkdir(o.out.c_str(), 0755);
  ::mkdir((o.out + "/corpus").c_str(), 0755);
  g_out_dir = o.out.c_str();
  void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  g_shared = new (mem) Shared();
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(o.seconds));
  uint64_t crashes = 0, timeouts = 0, other = 0;
  while (std::chrono::steady_clock::now() < deadline && !(o.runs && g_shared->execs >= o.runs)) {
    g_shared->status = 0;
    const pid_t pid = fork();
    if (pid == 0) {
      fuzz_child(o, deadline);
      std::exit(0);  // at exit LeakSanitizer checks the child
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
    const char s = g_shared->status;
    (s == 'C' ? crashes : s == 'T' ? timeouts : other)++;
    if (g_shared->seeding) {
      std::fprintf(stderr, "==fuzz== an input of the corpus itself fails: fix that first\n");
      break;
    }
    if (crashes + timeouts + other >= 100) break;  // the same bug again and again: stop
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t execs = g_shared->execs;
  std::printf("%s: %llu executions in %.0f s (%.0f/s), %llu crashes, %llu timeouts, %llu other failures (leaks?), "
              "corpus %llu (%llu new), output in %s\n",
              argv[0], static_cast<unsigned long long>(execs), secs, execs / std::max(secs, 1e-9),
              static_cast<unsigned long long>(crashes), static_cast<unsigned long long>(timeouts),
              static_cast<unsigned long long>(other), static_cast<unsigned long long>(g_shared->corpus.load()),
              static_cast<unsigned long long>(g_shared->new_inputs.load()), o.out.c_str());
  return crashes + timeouts + other ? 1 : 0;
}
