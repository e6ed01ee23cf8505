// --data imagefolder:DIR against torchvision on folders written by Debian's python3-pil
// (tests/data/image_folder_fixtures.py: JPEG and PNG; RGB, grayscale, RGBA, palette, CMYK; odd
// sizes, images smaller than the crop, a nested folder, upper-case extensions, a stray .txt):
// the tensors unravel feeds the network equal torchvision's ImageFolder + Resize + CenterCrop +
// ToTensor + Normalize, for train/val folders and a flat folder with a labels CSV; an imported
// resnet18 has torchvision's loss on the folder; bad files are one line naming the file, or
// skipped and counted with skip_bad=1; parallel decoding gives the same batches as serial.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>
#include <sstream>

#include "data/dataset.h"
#include "testing.h"

namespace unravel {
namespace {

using namespace unravel::testing;
using nlohmann::json;

fs::path folder_fixture() {
  const std::string script = test_script("image_folder_fixtures.py");
  return cached_fixture("imagefolder", slurp(script), [&](const fs::path& dir) {
    const CommandResult r = run_python(script + " " + dir.string() + " --resize 40 --crop 32");
    ASSERT_EQ(r.code, 0) << r.err;
  });
}

// Largest |unravel - torchvision| over the images, and whether the labels agree: "diff ok".
std::pair<double, bool> compare_tensors(const std::string& ours, const std::string& theirs) {
  const CommandResult r = run_python(
      "-c \"import torch, sys; a = torch.load(sys.argv[1]); b = torch.load(sys.argv[2]); "
      "same = a['images'].shape == b['images'].shape and bool((a['labels'] == b['labels']).all()); "
      "print(float((a['images'] - b['images']).abs().max()) if same else 1e9, int(same))\" " + ours + " " + theirs);
  EXPECT_EQ(r.code, 0) << r.err;
  double diff = 1e9;
  int same = 0;
  std::istringstream(r.out) >> diff >> same;
  return {diff, same == 1};
}

TEST(ImageFolder, EvaluationTensorsEqualTorchvision) {
  const fs::path fx = folder_fixture();
  TempDir t("if");
  const std::string spec = "imagefolder:" + (fx / "folder").string() + ":resize=40,crop=32";
  for (const std::string split : {"val", "train"}) {
    SCOPED_TRACE(split);
    const std::string out = (t / (split + ".pt")).string();
    const CommandResult r =
        run_unravel("data --data " + spec + " --split " + (split == "val" ? "test" : "train") + " --out " + out);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto [diff, same] = compare_tensors(out, (fx / ("expected_" + split + ".pt")).string());
    std::printf("%s: largest difference to torchvision %.3g (normalised units)\n", split.c_str(), diff);
    EXPECT_TRUE(same) << "shapes or labels differ";
    EXPECT_LE(diff, 1e-6);
  }
  // the flat layout with a labels file (class names)
  const std::string flat = "imagefolder:" + (fx / "flat").string() + ":resize=40,crop=32,labels=" +
                           (fx / "flat_labels.csv").string();
  ASSERT_EQ(run_unravel("data --data " + flat + " --out " + (t / "flat.pt").string()).code, 0);
  const auto [diff, same] = compare_tensors((t / "flat.pt").string(), (fx / "expected_flat.pt").string());
  EXPECT_TRUE(same);
  EXPECT_LE(diff, 1e-6);
}

// The read-ahead decodes in worker threads; the batches must not depend on how many.
TEST(ImageFolder, ParallelDecodingGivesTheSameBatchesAsSerial) {
  const fs::path fx = folder_fixture();
  const data::Dataset ds =
      data::load_dataset(data::parse_data_spec("imagefolder:" + (fx / "folder").string() + ":resize=40,crop=32"));
  const data::Normalizer norm = data::Normalizer::for_dataset(ds, ds.train);
  for (bool augment : {false, true}) {
    SCOPED_TRACE(augment ? "training transform" : "evaluation transform");
    std::vector<torch::Tensor> runs[2];
    for (int k = 0; k < 2; ++k) {
      data::LoaderOptions lo;
      lo.batch_size = 5;
      lo.shuffle = true;
      lo.augment = augment;
      lo.seed = 11;
      lo.workers = k == 0 ? 1 : 4;
      lo.read_ahead = k == 0 ? 1 : 3;
      data::Loader loader(ds.train, norm, lo, /*epoch=*/2);
      data::Batch b;
      while (loader.next(b)) runs[k].push_back(b.images);
    }
    ASSERT_EQ(runs[0].size(), runs[1].size());
    for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_TRUE(torch::equal(runs[0][i], runs[1][i])) << "batch " << i;
  }
}

TEST(ImageFolder, ImportedResnet18HasTorchvisionsLoss) {
  const fs::path fx = folder_fixture();
  TempDir t("ifl");
  // a seeded random torchvision resnet18 with random batch-norm statistics, 3 classes
  const CommandResult w = run_python("-c \"import torch, torchvision; torch.manual_seed(3); "
                                     "m = torchvision.models.resnet18(num_classes=3); "
                                     "[b.running_var.uniform_(0.5, 1.5) for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]; "
                                     "torch.save(m.state_dict(), '" + (t / "w.pt").string() + "')\"");
  ASSERT_EQ(w.code, 0) << w.err;
  ASSERT_EQ(run_unravel("import --weights " + (t / "w.pt").string() + " --arch resnet18 --input 3x32x32 --out " +
                        (t / "run").string()).code, 0);
  const CommandResult e = run_unravel("eval --run " + (t / "run").string() + " --data imagefolder:" +
                                      (fx / "folder").string() + ":resize=40,crop=32 --json " + (t / "e.json").string());
  ASSERT_EQ(e.code, 0) << e.err;
  const CommandResult ref = run_python(
      "-c \"import torch, torchvision; m = torchvision.models.resnet18(num_classes=3); m.load_state_dict(torch.load('" +
      (t / "w.pt").string() + "')); m.eval(); d = torch.load('" + (fx / "expected_val.pt").string() +
      "'); print(float(torch.nn.functional.cross_entropy(m(d['images']), d['labels'])))\"");
  ASSERT_EQ(ref.code, 0) << ref.err;
  const double theirs = std::stod(ref.out), ours = read_json((t / "e.json").string())["loss"].get<double>();
  std::printf("loss: unravel %.8f, torchvision %.8f\n", ours, theirs);
  EXPECT_NEAR(ours, theirs, 0.01 * theirs);
}

// A copy of the fixture folder to damage.
fs::path copy_folder(const TempDir& t) {
  const fs::path dst = t / "folder";
  fs::copy(folder_fixture() / "folder", dst, fs::copy_options::recursive);
  return dst;
}

TEST(ImageFolder, BadFilesAreOneLineOrSkipped) {
  TempDir t("ifb");
  const fs::path dir = copy_folder(t);
  const fs::path bad = dir / "val" / "bee" / "a.jpg";
  const std::string jpeg = slurp(bad.string());
  std::ofstream(bad, std::ios::binary) << jpeg.substr(0, jpeg.size() / 2);  // truncated
  const std::string spec = "imagefolder:" + dir.string() + ":resize=40,crop=32";
  expect_user_error(run_unravel("data --data " + spec + " --out " + (t / "x.pt").string()), bad.string(),
                    "truncated JPEG");
  // skip_bad: the run goes on without it and says so
  const CommandResult r = run_unravel("data --data " + spec + ",skip_bad=1 --out " + (t / "x.pt").string() +
                                      " --json " + (t / "d.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const json d = read_json((t / "d.json").string());
  EXPECT_EQ(d["skipped"].get<int>(), 1);
  EXPECT_EQ(d["written"].get<int>(), d["test"].get<int>() - 1);

  // not an image behind an image extension
  std::ofstream(bad, std::ios::binary) << "just text, not pixels\n";
  expect_user_error(run_unravel("data --data " + spec + " --out " + (t / "x.pt").string()), "not a JPEG or PNG",
                    "text file named .jpg");
  // a header claiming enormous dimensions, refused before decoding
  const CommandResult big = run_python("-c \"from PIL import Image; Image.new('L', (9000, 9000)).save('" +
                                       bad.string() + "', quality=10)\"");
  ASSERT_EQ(big.code, 0) << big.err;
  expect_user_error(run_unravel("data --data " + spec + ",max_pixels=1000000 --out " + (t / "x.pt").string()),
                    "exceeds the limit", "enormous image");
  // an empty class folder; a folder with no classes
  fs::create_directories(dir / "train" / "zebra");
  expect_user_error(run_unravel("data --data " + spec), "zebra", "empty class");
  fs::create_directories(t / "empty");
  expect_user_error(run_unravel("data --data imagefolder:" + (t / "empty").string()), "no class folders",
                    "no classes");
  expect_user_error(run_unravel("data --data imagefolder:" + dir.string() + ":resize=40,crop=32,colour=1"), "colour",
                    "unknown option");
}

// The training transform is seeded: the same seed gives the same crops, another seed others.
TEST(ImageFolder, TrainingAugmentationIsSeeded) {
  const fs::path fx = folder_fixture();
  TempDir t("ifa");
  const std::string spec = "imagefolder:" + (fx / "folder").string() + ":resize=40,crop=32";
  for (const auto& [name, seed] : {std::pair<std::string, int>{"a", 1}, {"b", 1}, {"c", 2}})
    ASSERT_EQ(run_unravel("data --data " + spec + " --split train --augment --seed " + std::to_string(seed) +
                          " --out " + (t / (name + ".pt")).string()).code, 0);
  EXPECT_EQ(compare_tensors((t / "a.pt").string(), (t / "b.pt").string()).first, 0.0);
  EXPECT_GT(compare_tensors((t / "a.pt").string(), (t / "c.pt").string()).first, 0.1);
  EXPECT_GT(compare_tensors((t / "a.pt").string(), (fx / "expected_train.pt").string()).first, 0.1);
}

}  // namespace
}  // namespace unravel

namespace unravel {
namespace {

// `repro --preset imagenet` end to end on the fixture folder: a seeded torchvision resnet18
// imported at 32x32, E2 deletes each of its 8 blocks alone. Every plan's loss and correct count
// is torchvision's on the same tensors (block j replaced by relu(shortcut(x))); results.json
// holds a verdict for E2 and the report draws its figure; the rerun reuses every step.
TEST(ReproImagenetPreset, E2OnAnImportedResnet18MatchesTorchvision) {
  const fs::path fx = folder_fixture();
  TempDir t("rin");
  const std::string weights = (t / "w.pt").string();
  const CommandResult w = run_python("-c \"import torch, torchvision; torch.manual_seed(5); "
                                     "m = torchvision.models.resnet18(num_classes=3); "
                                     "[b.running_var.uniform_(0.5, 1.5) for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]; "
                                     "torch.save(m.state_dict(), '" + weights + "')\"");
  ASSERT_EQ(w.code, 0) << w.err;
  const std::string out = (t / "out").string();
  const std::string cmd = "repro --preset imagenet --weights " + weights + " --arch resnet18 --data imagefolder:" +
                          (fx / "folder").string() + ":resize=40,crop=32 --threads 1 --out " + out;
  const CommandResult first = run_unravel(cmd);
  ASSERT_EQ(first.code, 0) << first.err;
  const json r = read_json(out + "/results.json");

  // torchvision on the same tensors: intact, then each block deleted; "loss correct" per line.
  const CommandResult ref = run_python(
      "-c \"import sys, torch, torchvision; sys.path.insert(0, '" + test_script("") + "'); import torchvision_fixtures as f; m = torchvision.models.resnet18(num_classes=3); "
      "m.load_state_dict(torch.load('" + weights + "')); m.eval(); d = torch.load('" +
      (fx / "expected_val.pt").string() + "'); x, y = d['images'], d['labels']; "
      "c, l, _ = f.evaluate(m, x, y); print(l / len(y), c)\n"
      "for j in range(1, 9):\n"
      "    name, i, saved = f.with_deleted(m, j); c, l, _ = f.evaluate(m, x, y); print(l / len(y), c); "
      "getattr(m, name)[i] = saved\"");
  ASSERT_EQ(ref.code, 0) << ref.err;
  std::vector<std::pair<double, int>> theirs;
  std::istringstream lines(ref.out);
  double loss;
  int correct;
  while (lines >> loss >> correct) theirs.emplace_back(loss, correct);
  ASSERT_EQ(theirs.size(), 9u) << ref.out;

  const json& e2 = r.at("E2");
  EXPECT_EQ(e2.at("baseline").at("n").get<int>(), e2.at("test_n").get<int>());
  EXPECT_NEAR(e2.at("baseline").at("loss").get<double>(), theirs[0].first, 1e-5);
  EXPECT_EQ(e2.at("baseline").at("correct").get<int>(), theirs[0].second);
  std::map<int, json> by_block;
  for (const json& p : e2.at("plans"))
    if (p.at("kind") == "delete" && p.at("k") == 1) by_block[p.at("blocks")[0].get<int>()] = p;
  ASSERT_EQ(by_block.size(), 8u) << "one single deletion per block of resnet18";
  for (int j = 1; j <= 8; ++j) {
    EXPECT_NEAR(by_block.at(j).at("loss").get<double>(), theirs[j].first, 1e-5) << "block " << j;
    EXPECT_EQ(by_block.at(j).at("correct").get<int>(), theirs[j].second) << "block " << j;
  }
  // resnet18's downsampling blocks are 3, 5 and 7 (layer2.0, layer3.0, layer4.0).
  EXPECT_TRUE(by_block.at(3).at("downsample").get<bool>());
  EXPECT_TRUE(by_block.at(7).at("downsample").get<bool>());
  EXPECT_FALSE(by_block.at(2).at("downsample").get<bool>());
  ASSERT_TRUE(r.at("verdicts").contains("E2"));
  EXPECT_FALSE(r.at("verdicts").at("E2").at("rule").get<std::string>().empty());
  EXPECT_TRUE(fs::exists(out + "/report/E2_single_deletion.svg"));
  EXPECT_NE(slurp(out + "/report/index.html").find("90.6% (block 66)"), std::string::npos)
      << "the authors' ResNet-200 numbers beside ours";

  // The rerun computes nothing: E2's cached result is the same.
  const CommandResult second = run_unravel(cmd);
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(read_json(out + "/results.json").at("E2"), e2);
  const size_t steps = r.at("steps").size();
  EXPECT_NE(second.out.find(fmt::format("({} of {} steps reused)", steps, steps)), std::string::npos) << second.out;
}

// Without the network, the preset stops with one line before it reads the (possibly huge) folder,
// and writes nothing into --out.
TEST(ReproImagenetPreset, MissingWeightsIsOneLineBeforeAnyWork) {
  TempDir t("rinw");
  const std::string out = (t / "out").string();
  expect_user_error(run_unravel("repro --preset imagenet --arch resnet18 --data imagefolder:" + (t / "none").string() +
                                " --out " + out),
                    "--weights FILE --arch NAME", "no --weights");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace unravel
