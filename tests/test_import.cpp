// `unravel import` / `export` against PyTorch itself: torchvision's resnet18 and resnet50 with
// seeded random weights and random batch-norm statistics, saved by Debian's python3-torchvision
// in every form (OrderedDict, nested with "module." prefixes, TorchScript scripted and traced,
// the legacy format), imported and evaluated on the same tensors: the correct count equals
// torchvision's, the loss agrees within 1e-3 relative, and so does every single deletion
// (torchvision's block replaced by relu(shortcut(x))). Exports load strictly into torchvision
// and into python/unravel_models.py with the same logits. Small inputs (32x32), full
// architectures. The fixtures are written once per program (tests/data/torchvision_fixtures.py).
#include <gtest/gtest.h>

#include <map>

#include "testing.h"

namespace unravel {
namespace {

using namespace unravel::testing;
using nlohmann::json;

// One fixture directory per architecture, shared by the test processes of this build.
fs::path fixtures(const std::string& arch) {
  const std::string script = test_script("torchvision_fixtures.py");
  // resnet50: the three forms the contract names; resnet18: every form
  const std::string forms = arch == "resnet50" ? "sd,nested,script" : "sd,nested,legacy,script,traced";
  return cached_fixture("import-" + arch, slurp(script) + forms, [&](const fs::path& dir) {
    const CommandResult r = run_python(script + " " + arch + " " + dir.string() + " --size 32 --images 48 --forms " + forms);
    ASSERT_EQ(r.code, 0) << r.err;
  });
}

struct Case {
  std::string arch, form;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.arch << "/" << c.form; }

class ImportAgainstTorchvision : public ::testing::TestWithParam<Case> {};

TEST_P(ImportAgainstTorchvision, EvalAndEverySingleDeletionMatch) {
  const Case c = GetParam();
  const fs::path fx = fixtures(c.arch);
  ASSERT_TRUE(fs::exists(fx / (c.form + ".pt"))) << "fixture missing";
  const json expected = read_json((fx / "expected.json").string());
  TempDir t("imp");
  const std::string run = (t / "run").string(), data = "tensors:" + (fx / "tensors.pt").string();
  CommandResult r = run_unravel("import --weights " + (fx / (c.form + ".pt")).string() + " --arch " + c.arch +
                                " --input 3x32x32 --out " + run);
  ASSERT_EQ(r.code, 0) << r.err;

  // eval: correct count exactly, loss within 1e-3 relative, logits elementwise
  r = run_unravel("eval --run " + run + " --data " + data + " --json " + (t / "e.json").string() + " --logits " +
                  (t / "logits.pt").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const json e = read_json((t / "e.json").string());
  const json& intact = expected["plans"]["intact"];
  EXPECT_EQ(e["correct"].get<int>(), intact["correct"].get<int>());
  EXPECT_NEAR(e["loss"].get<double>(), intact["loss"].get<double>(), 1e-3 * intact["loss"].get<double>());
  r = run_python("-c \"import torch, json, sys; a = torch.load(sys.argv[1])['logits']; b = "
                 "torch.tensor(json.load(open(sys.argv[2]))['logits']); print(float((a - b).abs().max()), "
                 "float(b.abs().max()))\" " + (t / "logits.pt").string() + " " + (fx / "expected.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  double diff = 1, scale = 0;
  std::istringstream(r.out) >> diff >> scale;
  std::printf("%s %s: largest logit difference %.3g (logits up to %.3g)\n", c.arch.c_str(), c.form.c_str(), diff,
              scale);
  EXPECT_LT(diff, 1e-4 * std::max(1.0, scale));

  // lesion --single: every block deleted alone, as torchvision computes it
  r = run_unravel("lesion --run " + run + " --data " + data + " --single --quiet --json " + (t / "l.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const json l = read_json((t / "l.json").string());
  int deletions = 0;
  for (const json& p : l["plans"]) {
    if (p["kind"] != "delete") continue;
    ++deletions;
    const std::string key = "delete=" + std::to_string(p["blocks"][0].get<int>());
    const json& want = expected["plans"][key];
    EXPECT_EQ(p["correct"].get<int>(), want["correct"].get<int>()) << key;
    EXPECT_NEAR(p["loss"].get<double>(), want["loss"].get<double>(), 1e-3 * want["loss"].get<double>()) << key;
  }
  EXPECT_EQ(deletions, expected["blocks"].get<int>());
}

INSTANTIATE_TEST_SUITE_P(Forms, ImportAgainstTorchvision,
                         ::testing::Values(Case{"resnet18", "sd"}, Case{"resnet18", "nested"},
                                           Case{"resnet18", "script"}, Case{"resnet18", "traced"},
                                           Case{"resnet18", "legacy"}, Case{"resnet50", "sd"},
                                           Case{"resnet50", "nested"}, Case{"resnet50", "script"}),
                         [](const auto& info) { return info.param.arch + "_" + info.param.form; });

// Blocks are numbered in torchvision's order and resnet50's projections sit at blocks 1, 4, 8, 14.
TEST(Import, BlockTableFollowsTorchvision) {
  TempDir t("imp");
  ASSERT_EQ(run_unravel("import --weights " + (fixtures("resnet50") / "sd.pt").string() +
                        " --arch resnet50 --input 3x32x32 --out " + (t / "run").string()).code, 0);
  const CommandResult r = run_unravel("info --run " + (t / "run").string() + " --json " + (t / "i.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const json info = read_json((t / "i.json").string());
  ASSERT_EQ(info["blocks"].size(), 16u);
  std::vector<int> down;
  for (const json& b : info["blocks"])
    if (b["downsample"].get<bool>()) down.push_back(b["index"].get<int>());
  EXPECT_EQ(down, (std::vector<int>{1, 4, 8, 14}));
  EXPECT_EQ(info["num_parameters"].get<int64_t>(), 23528522);  // torchvision's resnet50(num_classes=10)
}

TEST(Export, ImportedResnet18LoadsStrictlyIntoTorchvision) {
  const fs::path fx = fixtures("resnet18");
  TempDir t("exp");
  const std::string run = (t / "run").string();
  ASSERT_EQ(run_unravel("import --weights " + (fx / "nested.pt").string() + " --arch resnet18 --input 3x32x32 --out " +
                        run).code, 0);
  ASSERT_EQ(run_unravel("export --run " + run + " --out " + (t / "w.pt").string()).code, 0);
  ASSERT_EQ(run_unravel("eval --run " + run + " --data tensors:" + (fx / "tensors.pt").string() + " --logits " +
                        (t / "u.pt").string()).code, 0);
  const CommandResult r = run_python(test_script("compare_logits.py") + " " + (t / "w.pt").string() + " " +
                                     (fx / "tensors.pt").string() + " " + (t / "u.pt").string());
  ASSERT_EQ(r.code, 0) << r.err;  // load_state_dict(strict=True) raised otherwise
  const json c = json::parse(r.out);
  EXPECT_LT(c["max_abs_diff"].get<double>(), 1e-4 * std::max(1.0, c["max_logit"].get<double>()));
  EXPECT_EQ(c["argmax_agree"].get<int>(), c["n"].get<int>());
}

// unravel's own families round-trip through python/unravel_models.py: a preresnet with
// projection shortcuts and stochastic-depth scales, and a resnet with option-A shortcuts.
TEST(Export, UnravelFamiliesLoadStrictlyIntoThePythonModule) {
  for (const std::string flags : {"--model preresnet14 --shortcut B --stochastic-depth 0.5", "--model resnet8"}) {
    SCOPED_TRACE(flags);
    TempDir t("fam");
    const std::string run = (t / "run").string();
    ASSERT_EQ(run_unravel("train " + flags + " --data synthetic:train=256,test=64,size=12,channels=2 --epochs 1 "
                          "--batch-size 32 --quiet --out " + run).code, 0);
    ASSERT_EQ(run_python(test_script("random_tensors.py") + " " + (t / "x.pt").string() + " 40 2 12 12 10 5").code, 0);
    ASSERT_EQ(run_unravel("export --run " + run + " --out " + (t / "w.pt").string()).code, 0);
    ASSERT_EQ(run_unravel("eval --run " + run + " --data tensors:" + (t / "x.pt").string() + " --logits " +
                          (t / "u.pt").string()).code, 0);
    const CommandResult r = run_python(test_script("compare_logits.py") + " " + (t / "w.pt").string() + " " +
                                       (t / "x.pt").string() + " " + (t / "u.pt").string());
    ASSERT_EQ(r.code, 0) << r.err;
    const json c = json::parse(r.out);
    EXPECT_LT(c["max_abs_diff"].get<double>(), 1e-4 * std::max(1.0, c["max_logit"].get<double>()));
    // and back in: the exported file imports as the same network
    ASSERT_EQ(run_unravel("import --weights " + (t / "w.pt").string() + " --arch " +
                          std::string(flags.find("preresnet14") != std::string::npos ? "preresnet14" : "resnet8") +
                          " --out " + (t / "back").string()).code, 0);
    ASSERT_EQ(run_unravel("eval --run " + (t / "back").string() + " --data tensors:" + (t / "x.pt").string() +
                          " --logits " + (t / "b.pt").string()).code, 0);
    const CommandResult same = run_python("-c \"import torch, sys; print(float((torch.load(sys.argv[1])['logits'] - "
                                          "torch.load(sys.argv[2])['logits']).abs().max()))\" " +
                                          (t / "u.pt").string() + " " + (t / "b.pt").string());
    EXPECT_EQ(same.out, "0.0\n");
  }
}

TEST(Import, BadFilesAndArchitecturesAreOneLine) {
  const fs::path fx = fixtures("resnet18");
  TempDir t("bad");
  const std::string sd = (fx / "sd.pt").string();
  expect_user_error(run_unravel("import --weights " + (fx / "tensors.pt").string() + " --arch resnet18 --out " +
                                (t / "a").string()), "holds no weights", "a tensors file");
  expect_user_error(run_unravel("import --weights " + sd + " --arch resnet34 --out " + (t / "b").string()),
                    "they fit --arch resnet18", "another architecture");
  expect_user_error(run_unravel("import --weights " + sd + " --arch resnet18 --classes 100 --out " + (t / "c").string()),
                    "10x512", "wrong class count");
  expect_user_error(run_unravel("import --weights " + sd + " --arch vgg16 --out " + (t / "d").string()),
                    "unknown model 'vgg16'", "unknown architecture");
  expect_user_error(run_unravel("import --weights /no/such.pt --arch resnet18 --out " + (t / "e").string()),
                    "/no/such.pt", "missing file");
  // a truncated file: one line, nothing written
  const std::string cut = (t / "cut.pt").string();
  {
    std::ofstream(cut, std::ios::binary) << slurp(sd).substr(0, 20000);
  }
  expect_user_error(run_unravel("import --weights " + cut + " --arch resnet18 --out " + (t / "f").string()), "cut.pt",
                    "truncated file");
  EXPECT_FALSE(fs::exists(t / "f" / "config.json"));
}

}  // namespace
}  // namespace unravel
