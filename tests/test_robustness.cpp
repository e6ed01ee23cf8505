// Issue 12 ("robust under abuse") end to end, run as a user would: hostile checkpoints and
// summaries, outputs that are links or devices, one writer per run directory and per lesion
// sweep, stale summaries, empty plan flags, outputs checked before work, resume by directory.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/run_lock.h"
#include "testing.h"

namespace {

namespace fs = std::filesystem;
namespace ut = unravel::testing;
using json = nlohmann::json;
using ut::has;
using ut::TempDir;

// The tiny run every test starts from: preresnet8 (3 blocks) on 256 synthetic 8x8 images, one
// epoch (~1 s), trained into the test's own directory.
const std::string kData = "synthetic:train=256,test=128,size=8,channels=1";
const std::string kTrainFlags = "--model preresnet8 --data " + kData + " --batch-size 32 --lr 0.05 --threads 1";

std::string trained_run(const TempDir& tmp, const std::string& name = "run") {
  const std::string dir = tmp.file(name);
  const auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 1 --quiet --out " + dir);
  EXPECT_EQ(r.code, 0) << r.err;
  return dir;
}

void expect_one_line(const ut::CommandResult& r, const std::string& needle, const std::string& what) {
  EXPECT_EQ(r.code, 1) << what << "\n" << r.err;
  EXPECT_EQ(ut::count_lines(r.err), 1) << what << "\n" << r.err;
  EXPECT_LE(r.err.size(), 400u) << what << "\n" << r.err;
  EXPECT_TRUE(has(r.err, needle)) << what << ": no '" << needle << "' in\n" << r.err;
  EXPECT_FALSE(has(r.err, "internal error")) << what << "\n" << r.err;
}

std::vector<int> epochs_in(const std::string& dir) {
  std::vector<int> epochs;
  std::istringstream in(ut::slurp(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j["type"] == "epoch") epochs.push_back(j["epoch"].get<int>());
  }
  return epochs;
}

// Files named like write_file_atomic's temps (NAME.tmp.PID) under `dir`.
int temp_files_in(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    n += has(e.path().filename().string(), ".tmp.");
  return n;
}

// "12.34%", as the commands print an error fraction.
std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * fraction);
  return buf;
}

json epoch_record(const std::string& dir, int epoch) {
  std::istringstream in(ut::slurp(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j["type"] == "epoch" && j["epoch"] == epoch) return j;
  }
  return json();
}

}  // namespace

// Issue item 1: a checkpoint cut to 20 KB (or 5 KB, or by one byte), random bytes, or 64 bytes
// flipped never reach libtorch's reader: eval and a resume stop with one line naming
// checkpoint.pt, through the fingerprint summary.json records or, without it, our own reader.
TEST(Robustness, TruncatedRandomAndFlippedCheckpointsAreOneLine) {
  TempDir tmp("robust_ckpt");
  const std::string run = trained_run(tmp);
  const std::string ck = run + "/checkpoint.pt", good = ut::slurp(ck), summary = ut::slurp(run + "/summary.json");
  ASSERT_GT(good.size(), 40000u);
  std::string noise(20000, '\0');
  for (std::size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::string flipped = good;
  for (std::size_t i = good.size() / 2; i < good.size() / 2 + 64; ++i) flipped[i] = static_cast<char>(~flipped[i]);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"cut to 20 KB", good.substr(0, 20000)}, {"cut to 5 KB", good.substr(0, 5000)},
      {"one byte short", good.substr(0, good.size() - 1)}, {"20 KB of random bytes", noise},
      {"64 bytes flipped", flipped}};
  for (const bool with_summary : {true, false}) {
    for (const auto& [what, bytes] : bad) {
      const std::string label = what + (with_summary ? ", with summary.json" : ", without summary.json");
      if (with_summary) ut::write_file(run + "/summary.json", summary);
      else fs::remove(run + "/summary.json");
      ut::write_file(ck, bytes);
      expect_one_line(ut::run_unravel("eval --run " + run), "checkpoint.pt", "eval: " + label);
      expect_one_line(ut::run_unravel("train " + kTrainFlags + " --epochs 2 --out " + run), "checkpoint.pt",
                      "resume: " + label);
      EXPECT_EQ(ut::slurp(ck), bytes) << "the resume changed the checkpoint: " << label;
    }
  }
}

// Issue item 2: --json onto a symlink writes its target and leaves the link; onto a character
// device (/dev/null, a device node in a temp dir) writes through it; "-" is stdout.
TEST(Robustness, OutputsThatAreLinksOrDevicesStayWhatTheyAre) {
  TempDir tmp("robust_out");
  fs::create_directory(tmp / "sub");
  fs::create_symlink("sub/target.json", tmp / "link.json");
  auto r = ut::run_unravel("paths --blocks 6 --json " + tmp.file("link.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(tmp / "link.json")));
  EXPECT_EQ(ut::read_json(tmp.file("sub/target.json"))["n"], 6);
  EXPECT_EQ(temp_files_in(tmp.str()), 0) << "a temp file was left";

  r = ut::run_unravel("paths --blocks 6 --json -");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "\"n\": 6")) << r.out;

  std::vector<std::string> devices;
  if (::access("/dev/null", W_OK) == 0) devices.push_back("/dev/null");
  if (::mknod(tmp.file("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) devices.push_back(tmp.file("null"));
  if (devices.empty()) GTEST_SKIP() << "neither /dev/null writable nor mknod allowed";
  for (const std::string& dev : devices) {
    r = ut::run_unravel("paths --blocks 6 --json " + dev + " --csv " + dev);
    EXPECT_EQ(r.code, 0) << dev << "\n" << r.err;
    struct stat st {};
    ASSERT_EQ(::lstat(dev.c_str(), &st), 0) << dev;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << dev << " was replaced";
    EXPECT_EQ(st.st_rdev, makedev(1, 3)) << dev;
  }
}

// Issue item 3 (and the train lock): a second train on a directory in use exits 1 with one line
// naming the holder, and writes nothing there; once the holder is gone the same command works.
TEST(Robustness, SecondTrainOnADirectoryInUseIsOneLine) {
  TempDir tmp("robust_lock");
  const std::string dir = tmp.file("run");
  fs::create_directory(dir);
  {
    unravel::RunLock held = unravel::RunLock::acquire(dir, "--out");
    const auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 1 --quiet --out " + dir);
    expect_one_line(r, "is in use by pid " + std::to_string(::getpid()) + " (", "second train");
    EXPECT_TRUE(has(r.err, dir)) << r.err;
    EXPECT_FALSE(fs::exists(dir + "/config.json"));
    EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl"));
  }
  const auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 1 --quiet --out " + dir);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/checkpoint.pt"));
}

// The lesion sweep's progress file has one writer: a second `lesion` on the same --json exits 1
// with one line naming the first, touching neither the results nor the progress file.
TEST(Robustness, SecondLesionOnTheSameResultsIsOneLine) {
  TempDir tmp("robust_lesion_lock");
  const std::string run = trained_run(tmp), out = tmp.file("l.json");
  const std::string args = "lesion --run " + run + " --single --quiet --threads 1 --json " + out;
  {
    fs::create_directory(tmp / ".l.json.partial.lock");  // where the first sweep holds its lock
    unravel::RunLock first = unravel::RunLock::acquire(tmp.file(".l.json.partial.lock"), "lesion");
    const auto r = ut::run_unravel(args);
    expect_one_line(r, "is in use by pid " + std::to_string(::getpid()) + " (", "second lesion");
    EXPECT_TRUE(has(r.err, "--json " + out)) << r.err;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".partial"));
  }
  auto r = ut::run_unravel(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ut::read_json(out)["plans"].size(), 3u);
  EXPECT_FALSE(fs::exists(out + ".partial"));
  // --csv alone locks its own progress file; a sweep to another file is not held up
  const std::string csv = tmp.file("l.csv");
  {
    unravel::RunLock held = unravel::RunLock::acquire(tmp.file(".l.json.partial.lock"), "lesion");
    r = ut::run_unravel("lesion --run " + run + " --single --quiet --threads 1 --csv " + csv);
    EXPECT_EQ(r.code, 0) << r.err;
  }
  EXPECT_TRUE(fs::exists(tmp / ".l.csv.partial.lock"));
}

// Issue item 4: killed between the checkpoint rename and the summary rename, the rerun sees a
// summary that does not describe the checkpoint, evaluates it again and writes the right one;
// temp files of dead writers are removed.
TEST(Robustness, StaleSummaryIsRepairedAndOrphanedTempsRemoved) {
  TempDir tmp("robust_stale");
  const std::string run = trained_run(tmp);
  const std::string epoch1_summary = ut::slurp(run + "/summary.json");
  auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 2 --quiet --out " + run);
  ASSERT_EQ(r.code, 0) << r.err;
  const json right = ut::read_json(run + "/summary.json");
  ASSERT_EQ(right["epochs"], 2);
  ut::write_file(run + "/summary.json", epoch1_summary);  // the crash: epoch 2's summary never landed
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string orphan = run + "/checkpoint.pt.tmp." + std::to_string(dead);
  ut::write_file(orphan, "half a checkpoint");

  r = ut::run_unravel("eval --run " + run);
  expect_one_line(r, "summary.json", "eval of a run with a stale summary");
  r = ut::run_unravel("train " + kTrainFlags + " --epochs 2 --out " + run);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "does not describe")) << r.err;
  const json repaired = ut::read_json(run + "/summary.json");
  EXPECT_EQ(repaired["epochs"], 2);
  EXPECT_EQ(repaired["test_error"], right["test_error"]);
  EXPECT_EQ(repaired["test_loss"], right["test_loss"]);
  EXPECT_EQ(repaired["checkpoint"], right["checkpoint"]);
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(has(r.out, percent(right["test_error"].get<double>()))) << r.out;
}

// Issue item 7: a checkpoint without "epoch" on resume, a summary.json or a config option of the
// wrong type: one line naming the file, exit 1, never "internal error".
TEST(Robustness, CheckpointWithoutEpochAndWrongTypesAreOneLine) {
  if (!ut::python_has("torch")) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  TempDir tmp("robust_types");
  const std::string run = trained_run(tmp);
  const std::string ck = run + "/checkpoint.pt";
  auto py = ut::run_python("-c \"import torch, sys; d = torch.load(sys.argv[1]); d.pop('epoch'); "
                           "torch.save(d, sys.argv[1])\" " + ck);
  ASSERT_EQ(py.code, 0) << py.err;
  fs::remove(run + "/summary.json");
  auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 2 --out " + run);
  expect_one_line(r, "\"epoch\"", "resume of a checkpoint without epoch");
  EXPECT_TRUE(has(r.err, ck)) << r.err;

  const std::string other = trained_run(tmp, "other");
  for (const std::string bad : {"[]", "null", "{\"epochs\": \"two\"}", "{\"checkpoint\": {\"epoch\": []}}"}) {
    ut::write_file(other + "/summary.json", bad);
    expect_one_line(ut::run_unravel("eval --run " + other), "summary.json", "summary.json " + bad);
    expect_one_line(ut::run_unravel("train " + kTrainFlags + " --epochs 2 --out " + other), "summary.json",
                    "resume with summary.json " + bad);
  }
  for (const std::string bad : {"{\"train_seconds\": \"long\"}", "{\"best_val_epoch\": [1]}"}) {
    ut::write_file(other + "/summary.json", bad);
    expect_one_line(ut::run_unravel("train " + kTrainFlags + " --epochs 2 --out " + other), "summary.json",
                    "resume with summary.json " + bad);
  }
  json config = ut::read_json(run + "/config.json");
  config["options"]["lr"] = "fast";
  ut::write_file(run + "/config.json", config.dump());
  r = ut::run_unravel("train --out " + run);
  expect_one_line(r, "config.json", "resume by directory with a config option of the wrong type");
  EXPECT_TRUE(has(r.err, "\"lr\"")) << r.err;
}

// Issue item 8: an output that cannot be written fails before any work: ahead of loading the
// run (a missing run is not even noticed), and for an existing run before the sweep starts.
TEST(Robustness, LesionOutputIsCheckedBeforeWork) {
  TempDir tmp("robust_missing");
  const std::string missing = tmp.file("missing/dir/x.json");
  auto r = ut::run_unravel("lesion --run " + tmp.file("no_run") + " --single --json " + missing);
  expect_one_line(r, "--json " + missing + ": directory " + tmp.file("missing/dir") + " does not exist", "no run");
  rusage before{}, after{};
  const std::string run = trained_run(tmp);
  ::getrusage(RUSAGE_CHILDREN, &before);
  r = ut::run_unravel("lesion --run " + run + " --single --recalibrate-bn 100000 --csv " + missing);
  ::getrusage(RUSAGE_CHILDREN, &after);
  expect_one_line(r, "--csv " + missing, "existing run");
  EXPECT_FALSE(has(r.err, "[lesion]")) << r.err;
  const double cpu = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) + 1e-6 * (after.ru_utime.tv_usec - before.ru_utime.tv_usec);
  EXPECT_LT(cpu, ut::cpu_budget(2.0)) << "CPU seconds before the error";  // 100000 recalibration batches would take hours
}

// Issue item 5 on the command line: --plan "" and empty --delete/--swap/... are refused like an
// empty clause, with one line naming the flag, before the run is loaded; spaces after commas are
// allowed, another clause inside a list flag is not.
TEST(Robustness, EmptyPlanFlagsAreOneLine) {
  TempDir tmp("robust_plan");
  const std::string run = trained_run(tmp);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--plan ''", "--plan: empty plan text (use 'intact'"},
      {"--plan ' ; '", "empty plan: use 'intact'"},
      {"--delete ''", "--delete: empty value (give at least one item, e.g. 3,17)"},
      {"--swap ' '", "--swap: empty value (give at least one item, e.g. 4:5)"},
      {"--order ''", "--order: empty value"},
      {"--duplicate ''", "--duplicate: empty value"},
      {"--plan 'swap='", "plan clause 'swap=': empty value"},
      {"--plan 'scale='", "plan clause 'scale=': empty value"},
      {"--plan 'gate='", "plan clause 'gate=': empty value"},
      {"--plan 'intact gate='", "plan clause 'gate=': empty value"},
      {"--delete '1 swap=2:3'", "--delete '1 swap=2:3': give one comma-separated list"},
      {"--delete '1;2'", "--delete '1;2': give one comma-separated list"},
      {"--delete 1,,2", "item 2 of 3 is empty"}};
  for (const auto& [flags, needle] : bad) {
    expect_one_line(ut::run_unravel("eval --run " + run + " " + flags), needle, flags);
    if (has(needle, "--"))  // the flag's own checks come before the run is loaded
      expect_one_line(ut::run_unravel("eval --run /no/such/run " + flags), needle, flags + " before loading the run");
  }
  const auto r = ut::run_unravel("eval --run " + run + " --delete ' 1, 3 ' --json " + tmp.file("e.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ut::read_json(tmp.file("e.json"))["plan"], "delete=1,3");
}

// Resume by directory: `train --out DIR` alone continues the run with its config.json's options
// (to the same weights as an uninterrupted run); a flag given is still checked against the run;
// a new --epochs states what it does to the schedule on stderr and records it in config.json.
TEST(Robustness, ResumeByDirectoryAndEpochsRule) {
  TempDir tmp("robust_resume");
  const std::string whole = tmp.file("whole"), part = tmp.file("part");
  auto r = ut::run_unravel("train " + kTrainFlags + " --epochs 2 --quiet --out " + whole);
  ASSERT_EQ(r.code, 0) << r.err;
  r = ut::run_unravel("train " + kTrainFlags + " --epochs 2 --stop-after 1 --quiet --out " + part);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(epochs_in(part), std::vector<int>{1});

  r = ut::run_unravel("train --out " + part);
  ASSERT_EQ(r.code, 0) << r.err;
  // no --threads: the run's own count (1), so the continuation is bit for bit the uninterrupted run
  EXPECT_TRUE(has(r.err, "[train] " + part + ": the run's own options (config.json): preresnet8 on " + kData +
                             ", 2 epochs, 1 thread as trained (--threads to change)\n")) << r.err;
  EXPECT_EQ(ut::read_json(part + "/config.json")["threads"], 1);
  EXPECT_TRUE(has(r.err, "resuming " + part + " from epoch 1 of 2")) << r.err;
  EXPECT_EQ(epochs_in(part), (std::vector<int>{1, 2}));
  const json a = ut::read_json(whole + "/summary.json"), b = ut::read_json(part + "/summary.json");
  EXPECT_EQ(a["test_error"], b["test_error"]);
  EXPECT_EQ(a["test_loss"], b["test_loss"]);
  EXPECT_EQ(ut::slurp(whole + "/checkpoint.pt"), ut::slurp(part + "/checkpoint.pt")) << "weights differ";
  EXPECT_EQ(ut::read_json(part + "/config.json")["options"]["lr"], 0.05);

  r = ut::run_unravel("train --out " + part + " --lr 0.2");
  expect_one_line(r, "lr=0.05, not 0.2", "a flag against the run");
  r = ut::run_unravel("train --out " + part + " --model preresnet14");
  expect_one_line(r, "model=\"preresnet8\", not \"preresnet14\"", "another model");

  // 2 -> 4 epochs, lr 0.05, milestones 0.5, 0.75: the drops move from epochs 1 and 1.5 to 2 and
  // 3; epoch 2 ended at 0.05 x 0.01, epoch 3 starts at 0.05 x 0.1 (one milestone passed).
  r = ut::run_unravel("train --out " + part + " --epochs 4 --stop-after 1 --quiet --threads 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ut::read_json(part + "/config.json")["threads"], 2) << "a --threads given is this machine's choice";
  const std::string rule = "step schedule: lr x0.1 at fractions 0.5,0.75 of the run, now at epochs 2, 3 of 4 "
                           "(were 1, 1.5 of 2); epochs 1-2 keep the rates they were trained with; lr 0.0005 at "
                           "the end of epoch 2, 0.005 from epoch 3";
  EXPECT_TRUE(has(r.err, "[train] " + part + ": --epochs 2 -> 4: " + rule)) << r.err;
  EXPECT_NEAR(epoch_record(part, 3)["lr"].get<double>(), 0.005, 1e-15);
  const json history = ut::read_json(part + "/config.json")["source"]["epochs_history"];
  ASSERT_EQ(history.size(), 2u) << history;
  EXPECT_EQ(history[0]["epochs"], 2);
  EXPECT_EQ(history[1]["epochs"], 4);
  EXPECT_EQ(history[1]["from_epoch"], 2);
  EXPECT_EQ(history[1]["rule"], rule);
  // the rest of the run: no new rule, no new history entry
  r = ut::run_unravel("train --out " + part);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(has(r.err, "--epochs")) << r.err;
  EXPECT_EQ(epochs_in(part), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(ut::read_json(part + "/config.json")["source"]["epochs_history"].size(), 2u);
}
