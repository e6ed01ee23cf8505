// The command-line contract, run as a user would: exit codes, one-line errors naming the bad
// input, --help everywhere, and a train -> eval -> resume round trip on synthetic data.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/exit_status.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Result {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string bin() {
  const char* b = std::getenv("UNRAVEL_BIN");
  return b ? b : "unravel";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result run(const std::string& args) {
  static int counter = 0;
  const std::string base = (fs::temp_directory_path() / ("unravel_cli_" + std::to_string(::getpid()) + "_" +
                                                         std::to_string(counter++))).string();
  const std::string cmd = bin() + " " + args + " >" + base + ".out 2>" + base + ".err";
  int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return r;
}

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

json read_json(const std::string& path) { return json::parse(slurp(path)); }

std::string tmp(const std::string& name) {
  auto p = fs::temp_directory_path() / ("unravel_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p.string();
}

// The epochs recorded in a run's metrics.jsonl, in order.
std::vector<int> epochs_in(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  std::vector<int> epochs;
  while (std::getline(in, line)) {
    auto j = json::parse(line);
    if (j["type"] == "epoch") epochs.push_back(j["epoch"].get<int>());
  }
  return epochs;
}

// One clear line on stderr naming `needle`, exit status 1, nothing on stdout.
void expect_user_error(const std::string& args, const std::string& needle) {
  Result r = run(args);
  EXPECT_EQ(r.code, 1) << args << "\n" << r.err;
  EXPECT_EQ(lines(r.err), 1) << args << "\n" << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
  EXPECT_EQ(r.err.find("frame #"), std::string::npos) << "stack dump for " << args;
}

}  // namespace

TEST(Cli, InfoOfPreResNet110) {
  const std::string f = tmp("info") + ".json";
  Result r = run("info --model preresnet110 --json " + f);
  ASSERT_EQ(r.code, 0) << r.err;
  json j = read_json(f);
  ASSERT_EQ(j["blocks"].size(), 54u);
  std::vector<int> down;
  for (const auto& b : j["blocks"])
    if (b["downsample"].get<bool>()) down.push_back(b["index"].get<int>());
  EXPECT_EQ(down, (std::vector<int>{19, 37}));
  EXPECT_EQ(j["blocks"][18]["stage"], 2);
  EXPECT_EQ(j["blocks"][18]["in_shape"], json({16, 28, 28}));
  EXPECT_EQ(j["blocks"][18]["out_shape"], json({32, 14, 14}));
  EXPECT_NE(r.out.find("54 blocks"), std::string::npos);
  fs::remove(f);
}

TEST(Cli, HelpForEveryCommand) {
  for (std::string c : {"", "info", "train", "eval", "lesion", "paths", "gradients", "report", "repro"}) {
    Result r = run(c + " --help");
    EXPECT_EQ(r.code, 0) << c;
    EXPECT_NE(r.out.find("--"), std::string::npos) << c;
  }
}

TEST(Cli, VersionNamesTheBuild) {
  Result r = run("--version");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("unravel ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("(git "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("libtorch "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c10d Gloo"), std::string::npos) << r.out;
}

TEST(Cli, BadInputGivesOneLineAndExitOne) {
  expect_user_error("train --model preresnet20 --data fashion-mnist:/no/such/dir --out " + tmp("x"), "/no/such/dir");
  expect_user_error("info --model resnet21", "resnet21");
  expect_user_error("info --model preresnet20 --input 1x28", "--input");
  expect_user_error("eval --run /no/such/run", "/no/such/run");
  expect_user_error("train --model preresnet20 --data nonsense --out " + tmp("y"), "nonsense");
  expect_user_error("train --model preresnet8 --data synthetic --epochs 0 --out " + tmp("z"), "--epochs");
  expect_user_error("train --model preresnet8 --data synthetic --lr -1 --out " + tmp("z"), "--lr");
  Result r = run("train --model preresnet8 --data synthetic --epochs x --out " + tmp("z"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--epochs"), std::string::npos) << r.err;
}

TEST(Cli, TrainEvalResume) {
  const std::string dir = tmp("run");
  const std::string common = "train --model preresnet8 --data synthetic:train=256,test=128,size=8,channels=1 "
                             "--batch-size 32 --lr 0.05 --threads 1 --out " + dir;
  Result r = run(common + " --epochs 2");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  EXPECT_NE(r.err.find("images/s"), std::string::npos) << "progress on stderr";

  r = run("eval --run " + dir + " --json " + dir + "/e.json");
  ASSERT_EQ(r.code, 0) << r.err;
  json e = read_json(dir + "/e.json");
  EXPECT_EQ(e["n"], 128);
  EXPECT_DOUBLE_EQ(e["top1_error"].get<double>(), read_json(dir + "/summary.json")["test_error"].get<double>());
  EXPECT_EQ(e["per_class_error"].size(), 10u);
  EXPECT_DOUBLE_EQ(e["top1_error"].get<double>(), 1.0 - e["correct"].get<double>() / 128.0);

  r = run("eval --run " + dir + " --delete 2 --json " + dir + "/d.json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_json(dir + "/d.json")["plan"], "delete=2");
  expect_user_error("eval --run " + dir + " --delete 9", "block 9 is out of range");
  expect_user_error("eval --run " + dir + " --swap 1:2", "same shape");

  r = run(common + " --epochs 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming"), std::string::npos) << r.err;
  EXPECT_EQ(epochs_in(dir), (std::vector<int>{1, 2, 3}));
  r = run(common + " --epochs 3 --model resnet8");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("model"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

// The experiment commands on a random network: --quiet leaves stderr empty, the JSON names the
// device, and --device cuda without a CUDA build is one line naming the flag.
TEST(Cli, LesionAndGradientsOnARandomNetwork) {
  const std::string net = "--model preresnet8 --seed 3 --data synthetic:train=64,test=40,size=12,classes=4";
  const std::string lj = tmp("lesion") + ".json", gj = tmp("grad") + ".json";
  Result l = run("lesion " + net + " --single --quiet --threads 1 --json " + lj);
  ASSERT_EQ(l.code, 0) << l.err;
  EXPECT_EQ(l.err, "");
  const json lesion = read_json(lj);
  EXPECT_EQ(lesion["device"], "cpu");
  EXPECT_EQ(lesion["plans"].size(), 3u);  // preresnet8: 3 blocks, each deleted alone
  EXPECT_EQ(lesion["baseline"]["n"], 40);

  Result g = run("gradients " + net + " --batch-size 16 --quiet --threads 1 --json " + gj);
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(g.err, "");
  const json grad = read_json(gj);
  EXPECT_EQ(grad["lengths"].size(), 4u);  // lengths 0..3
  EXPECT_LT(grad["residual"].get<double>(), 1e-4);
  fs::remove(lj);
  fs::remove(gj);

  Result cuda = run("lesion " + net + " --single --quiet --device cuda");
  if (cuda.code != 0) {
    EXPECT_EQ(cuda.code, 1);
    EXPECT_EQ(lines(cuda.err), 1) << cuda.err;
    EXPECT_NE(cuda.err.find("--device cuda"), std::string::npos) << cuda.err;
  }
}

// Data-parallel training with two local ranks: rank 0 writes the run, rank 1 its log; the
// checkpoint evaluates in one process to the test error the two ranks measured together (so the
// ranks held the same weights and batch-norm statistics); the run resumes with two ranks.
TEST(Cli, TrainWithTwoProcesses) {
  const std::string dir = tmp("dp");
  const std::string common = "train --model preresnet8 --data synthetic:train=1024,test=200,size=12,classes=4 "
                             "--batch-size 64 --lr 0.1 --threads 2 --nproc 2 --out " + dir;
  Result r = run(common + " --epochs 2");
  if (r.code != 0 && r.err.find("no c10d Gloo") != std::string::npos) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out), 1) << r.out;
  EXPECT_TRUE(fs::exists(dir + "/rank-1.log"));
  const std::string log1 = slurp(dir + "/rank-1.log");  // only rank 0 reports progress
  EXPECT_EQ(lines(log1), 1) << log1;
  EXPECT_EQ(log1.rfind("[train] rank 1 of 2: joining", 0), 0u) << log1;
  for (const auto& f : fs::directory_iterator(dir))
    EXPECT_EQ(f.path().filename().string().find(".c10d-store"), std::string::npos) << "store file left behind";
  EXPECT_EQ(read_json(dir + "/config.json")["world_size"], 2);
  const double measured = read_json(dir + "/summary.json")["test_error"].get<double>();
  EXPECT_LT(measured, 0.45);  // 4 learnable classes: chance is 0.75 (one process: 0.13, two: 0.205)

  r = run("eval --run " + dir + " --threads 1 --json " + dir + "/e.json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_DOUBLE_EQ(read_json(dir + "/e.json")["top1_error"].get<double>(), measured);

  r = run(common + " --epochs 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(epochs_in(dir), (std::vector<int>{1, 2, 3}));

  expect_user_error(common + " --epochs 3 --rank 1", "--nproc");
  expect_user_error("train --model preresnet8 --data synthetic --world-size 2 --out " + dir, "--store");
  expect_user_error("train --model preresnet8 --data synthetic --nproc 0 --out " + dir, "--nproc");
  fs::remove_all(dir);
}

// A lesion sweep shared by two local ranks (test images split, recalibrations dealt out) counts
// exactly what one process counts, plan by plan.
TEST(Cli, LesionWithTwoProcessesCountsTheSame) {
  const std::string dir = tmp("lesion_run");
  Result t = run("train --model preresnet14 --data synthetic:train=512,test=90,size=12,classes=4 --epochs 1 "
                 "--batch-size 64 --lr 0.1 --threads 1 --quiet --out " + dir);
  ASSERT_EQ(t.code, 0) << t.err;
  const std::string net = "--run " + dir + " --single --swap-random 1:1 --samples 2 --recalibrate-bn 2 --quiet";
  const std::string one = tmp("lesion1") + ".json", two = tmp("lesion2") + ".json";
  Result a = run("lesion " + net + " --threads 1 --json " + one);
  ASSERT_EQ(a.code, 0) << a.err;
  Result b = run("lesion " + net + " --threads 2 --nproc 2 --json " + two);
  if (b.code != 0 && b.err.find("no c10d Gloo") != std::string::npos) GTEST_SKIP() << b.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out.substr(0, a.out.rfind("plans on")), b.out.substr(0, b.out.rfind("plans on")));  // same table
  const json ja = read_json(one), jb = read_json(two);
  EXPECT_EQ(jb["world_size"], 2);
  EXPECT_EQ(ja["baseline"]["correct"], jb["baseline"]["correct"]);
  EXPECT_EQ(jb["baseline"]["n"], 90);
  ASSERT_EQ(ja["plans"].size(), jb["plans"].size());
  ASSERT_EQ(ja["plans"].size(), 8u);  // 6 single deletions + 2 swaps
  for (size_t p = 0; p < ja["plans"].size(); ++p) {
    EXPECT_EQ(ja["plans"][p]["plan"], jb["plans"][p]["plan"]);
    EXPECT_EQ(ja["plans"][p]["correct"], jb["plans"][p]["correct"]) << p;
    EXPECT_EQ(ja["plans"][p]["recalibrated"]["correct"], jb["plans"][p]["recalibrated"]["correct"]) << p;
  }
  fs::remove(one);
  fs::remove(two);
  fs::remove_all(dir);
}

// The exit rule of core/errors.h as main applies it (apps/unravel/main.cpp sorts exceptions into
// these two kinds; no command line reliably makes libtorch fail, so the mapping is checked here).
TEST(Cli, ExitStatusOfUserAndInternalErrors) {
  const unravel::ExitReport user = unravel::exit_report(unravel::Failure::User, "data.bin: truncated at 12 bytes");
  EXPECT_EQ(user.status, 1);
  EXPECT_EQ(user.line, "error: data.bin: truncated at 12 bytes");
  // libtorch-style message: the first line only, then cut to 200 characters with "...".
  const std::string long_line(500, 'x');
  const unravel::ExitReport bug =
      unravel::exit_report(unravel::Failure::Internal, long_line + "\nException raised from foo at bar.cpp:1\nframe #0");
  EXPECT_EQ(bug.status, 2);
  EXPECT_EQ(bug.line, "internal error: " + std::string(197, 'x') + "...");
  EXPECT_EQ(unravel::exit_report(unravel::Failure::Internal, "shape mismatch\r\nmore").line,
            "internal error: shape mismatch");
  // A cut never splits a UTF-8 character: 196 ASCII bytes, then two-byte characters.
  std::string utf8(196, 'a');
  for (int i = 0; i < 10; ++i) utf8 += "\xC3\xA9";  // é
  const std::string cut = unravel::exit_report(unravel::Failure::Internal, utf8).line;
  EXPECT_EQ(cut, "internal error: " + std::string(196, 'a') + "...");
  EXPECT_EQ(unravel::exit_report(unravel::Failure::Internal, "").line, "internal error: (no message)");
}
