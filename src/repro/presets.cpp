// The preset table and the sizes derived from a network (see presets.h).
#include "repro/presets.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/errors.h"
#include "core/util.h"

namespace unravel::repro {

using nlohmann::json;

// ---- the preset table ------------------------------------------------------------------------

const std::vector<Preset>& presets() {
  // Timings behind quick: see README "Reproducing the paper" (2-core machine).
  static const std::vector<Preset> table = [] {
    std::vector<Preset> t;
    Preset smoke;
    smoke.name = "smoke";
    smoke.purpose = "tiny: every step on a 6-block net and synthetic data (~1 min; the test suite)";
    smoke.model = "preresnet14";
    smoke.data = "synthetic:train=2048,test=512,size=12,channels=1";
    smoke.epochs = 3;  // ~60% accuracy on this set: enough for deletions to mean something
    smoke.batch_size = 32;
    smoke.lr = 0.1;
    smoke.plain_lr = 0.1;
    smoke.train_subset = 0;
    smoke.test_subset = 0;
    smoke.lesion_samples = 2;
    smoke.grad_samples = 20;
    smoke.grad_batch = 16;
    smoke.sign_samples = 8;
    smoke.budget_s = 180;
    // One thread: a 6-block net on 12x12 images gains nothing from a second one, and on a busy
    // machine libtorch's spinning OpenMP barriers made the 2-thread smoke run 100x slower.
    smoke.threads = 1;
    t.push_back(smoke);

    Preset quick;
    quick.name = "quick";
    quick.purpose = "the README's main job: 27 blocks on Fashion-MNIST in at most 20 min on 2 cores";
    quick.model = "preresnet56";
    quick.data = "fashion-mnist";
    quick.epochs = 3;
    quick.batch_size = 128;
    quick.lr = 0.1;
    quick.plain_lr = 0.05;  // plain56 stayed at chance (loss 2.3) for 3 epochs at 0.1
    quick.warmup_epochs = 0.2;
    quick.train_subset = 15000;
    quick.test_subset = 1000;
    quick.lesion_samples = 4;
    quick.grad_samples = 100;
    quick.grad_batch = 32;
    quick.sign_samples = 16;
    quick.budget_s = 1200;
    t.push_back(quick);

    // The paper at its own depth on this project's 2-core machine: 54 blocks, all of
    // Fashion-MNIST, the longest schedule that fits about two hours in all (per epoch of the
    // four nets ~13 min at 2 threads: preresnet110 ~300 s, its stochastic-depth twin ~250 s, the
    // 23-of-54 net ~185 s, plain14 ~45 s; the experiments ~25 min). The plain control is the
    // paper's: a ~15-layer VGG-like net (plain14), not a 110-layer plain net.
    Preset paper;
    paper.name = "paper";
    paper.purpose = "the paper's 54 blocks on all of Fashion-MNIST, 8 epochs: ~2 h on 2 idle cores";
    paper.model = "preresnet110";
    paper.plain_model = "plain14";
    paper.data = "fashion-mnist";
    paper.epochs = 8;
    paper.batch_size = 128;
    paper.lr = 0.1;
    paper.plain_lr = 0.1;
    paper.warmup_epochs = 0.5;  // He et al. warm ResNet-110 up for 400 iterations
    paper.train_subset = 0;
    paper.test_subset = 0;
    paper.lesion_samples = 5;
    paper.random_test_subset = 2000;
    paper.grad_samples = 200;
    paper.grad_batch = 32;
    paper.sign_samples = 16;
    paper.budget_s = 7200;
    t.push_back(paper);

    Preset full;
    full.name = "full";
    full.purpose = "the paper's ResNet-110 (54 blocks) and schedule: a GPU or a patient user";
    full.model = "preresnet110";
    full.data = "fashion-mnist";
    full.epochs = 164;  // ~64k iterations of batch 128 on CIFAR-10's 50k images
    full.batch_size = 128;
    full.lr = 0.1;
    full.plain_lr = 0.05;
    full.warmup_epochs = 1;  // He et al. warm ResNet-110 up at lr 0.01 for 400 iterations
    full.train_subset = 0;
    full.test_subset = 0;
    full.lesion_samples = 10;
    full.grad_samples = 1000;
    full.grad_batch = 128;
    full.sign_samples = 16;
    full.budget_s = 0;
    t.push_back(full);

    // E2: a pretrained ImageNet network (unravel import) on an image folder: single deletions,
    // random deletions and swaps, and the exact gradient per path length. The network comes from
    // --weights/--arch and the images from --data. Cost for 50,000 validation images of
    // resnet50: E2 alone ~0.3-0.6 s per image on 2 CPU cores (bench/imagefolder.sh: 64 images,
    // 16 plans in 38.9 s on a loaded machine; decoding is 0.2% of it), so 4-8 h.
    Preset imagenet;
    imagenet.name = "imagenet";
    imagenet.kind = PresetKind::ImageNet;
    imagenet.purpose = "E2 on a pretrained network (--weights, --arch) and an image folder (--data)";
    imagenet.model = "";  // --arch
    imagenet.data = "";   // --data
    imagenet.epochs = 0;
    imagenet.test_subset = 0;
    imagenet.lesion_samples = 3;
    imagenet.random_test_subset = 1000;
    imagenet.grad_samples = 0;
    imagenet.grad_batch = 8;
    imagenet.sign_samples = 4;
    imagenet.recalibrate_batches = 0;
    imagenet.budget_s = 0;
    t.push_back(imagenet);
    return t;
  }();
  return table;
}

json Preset::to_json() const {
  return {{"name", name},
          {"kind", kind == PresetKind::Paper ? "paper" : "imagenet"},
          {"model", model},
          {"plain_model", plain_model},
          {"data", data},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"plain_lr", plain_lr},
          {"milestones", milestones},
          {"warmup_epochs", warmup_epochs},
          {"train_subset", train_subset},
          {"test_subset", test_subset},
          {"lesion_samples", lesion_samples},
          {"random_test_subset", random_test_subset},
          {"recalibrate_batches", recalibrate_batches},
          {"grad_samples", grad_samples},
          {"grad_batch", grad_batch},
          {"sign_samples", sign_samples},
          {"budget_s", budget_s},
          {"threads", threads}};
}

const Preset& find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (p.name == name) return p;
  std::string names;
  for (const Preset& p : presets()) names += (names.empty() ? "" : ", ") + p.name;
  throw UserError(fmt::format("--preset '{}': expected one of {}", name, names));
}

std::string presets_table() {
  const char* row = "{:<6} {:<13} {:<8} {:<48} {:>6} {:>5} {:>8} {:>6} {:>5} {:>5} {:>10} {:>8} {:>7}\n";
  std::string s = fmt::format(row, "preset", "model", "plain", "data (--data overrides)", "epochs", "batch",
                              "lr/plain", "train", "test", "warm", "E3/E4", "E6", "budget");
  auto count = [](int64_t v) { return v == 0 ? std::string("all") : std::to_string(v); };
  for (const Preset& p : presets())
    s += fmt::format(row, p.name, p.model.empty() ? "--arch" : p.model,
                     p.kind == PresetKind::ImageNet ? "-" : p.plain_model.empty() ? "same" : p.plain_model,
                     p.data.empty() ? "--data (an image folder)" : p.data, p.epochs,
                     p.batch_size, fmt::format("{}/{}", p.lr, p.plain_lr), count(p.train_subset),
                     count(p.test_subset), p.warmup_epochs,
                     p.random_test_subset > 0 ? fmt::format("{}/k x{}", p.lesion_samples, p.random_test_subset)
                                              : fmt::format("{}/k", p.lesion_samples),
                     fmt::format("{}x{}", p.grad_samples, p.grad_batch),
                     p.budget_s > 0 ? format_duration(p.budget_s) : std::string("-"));
  s += "Every preset: the learning rate (plain: of the plain control) divided by 10 at 50% and "
       "75% of the epochs (warm = linear warm-up epochs), SGD momentum 0.9, weight decay 1e-4, augmentation; "
       "the plain control (same: plainN of the ResNet's depth); stochastic depth p_L = 0.5; short paths "
       "with round(23/54 n) active blocks. train/test: images used (training subset; test images of every "
       "evaluation). E3/E4: random sets per k (k = 1..n/2 deleted, 1..n/3 swaps), xN: on the first N test "
       "images. E6: sampled paths per length x batch (bn eval, one training batch). E7: batch-norm "
       "statistics also re-estimated under each test-time plan. budget: target wall time on 2 idle cores. "
       "Threads: automatic, except smoke (1) unless --threads is given.\n"
       "imagenet: no training; `--weights FILE --arch NAME --data imagefolder:DIR` import a pretrained "
       "network and run E2 (every block deleted alone), E3, E4 and E6 (exact) on it. 50,000 validation "
       "images with resnet50: 4-8 h on 2 CPU cores (E2 ~0.3-0.6 s per image, measured by bench/imagefolder.sh); "
       "--test-subset N for less.\n";
  return s;
}

// ---- derived sizes ---------------------------------------------------------------------------

Sizes derive_sizes(int n, int swap_pairs) {
  if (n < 1) throw UserError(fmt::format("a reproduction needs at least one block, got {}", n));
  Sizes s;
  s.n = n;
  s.active_blocks = std::max(1, static_cast<int>(std::lround(23.0 * n / 54.0)));
  s.delete_k_max = std::max(1, n / 2);
  s.swap_k_max = std::min(std::max(1, n / 3), swap_pairs);
  for (int d : {1, 10, 20}) {
    const int c = std::min(d, n - 1);
    if (c >= 1 && std::find(s.deleted.begin(), s.deleted.end(), c) == s.deleted.end())
      s.deleted.push_back(c);
  }
  if (s.deleted.empty()) s.deleted.push_back(std::min(1, n));  // n = 1: delete the only block
  s.x = std::min(11, std::max(1, static_cast<int>(std::lround(11.0 * n / 54.0))));
  return s;
}

json Sizes::to_json() const {
  return {{"n", n},
          {"active_blocks", active_blocks},
          {"stochastic_depth", stochastic_depth},
          {"delete_k", {1, delete_k_max}},
          {"swap_k", swap_k_max > 0 ? json{1, swap_k_max} : json()},
          {"e8_deleted", deleted},
          {"e8_x", x}};
}


}  // namespace unravel::repro
