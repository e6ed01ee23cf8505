// unravel data: what a --data spec holds (classes, split sizes, image shape, normalisation), and
// the exact tensors the network is fed, written as a PyTorch file (--out), to inspect or compare.
#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "data/dataset.h"
#include "data/stream.h"
#include "engine/compute.h"
#include "train/checkpoint.h"

namespace unravel::cli {

void add_data_command(CLI::App& app) {
  struct Args {
    std::string data = "fashion-mnist", split = "test", out, json_path;
    int64_t limit = 0, batch_size = 64;
    bool augment = false;
    uint64_t seed = 0;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("data", "what a data set holds, and the tensors the network is fed (--out)");
  c->add_option("--data", a->data, "data set (see README: fashion-mnist, cifar10:DIR, tensors:FILE, imagefolder:DIR...)")
      ->capture_default_str();
  c->add_option("--split", a->split, "train | test")->capture_default_str();
  c->add_option("--limit", a->limit, "first N images of the split (0 = all) for --out")->capture_default_str();
  c->add_option("--out", a->out,
                "write {\"images\": N x C x H x W float32 (normalised), \"labels\": N} as a PyTorch file");
  c->add_flag("--augment", a->augment, "with the training augmentation (epoch 0 of --seed)");
  c->add_option("--seed", a->seed, "seed of the augmentation")->capture_default_str();
  c->add_option("--json", a->json_path, "write {spec, classes, train, test, shape, normalization, skipped} to FILE");
  add_threads_flag(c, a->threads);
  c->callback([a] {
    if (a->split != "train" && a->split != "test") throw UserError(fmt::format("--split must be train or test, got '{}'", a->split));
    if (!a->out.empty()) check_output_path(a->out, "--out");
    if (!a->json_path.empty()) check_output_path(a->json_path, "--json");
    setup_compute(a->threads);
    const data::Dataset ds = data::load_dataset(data::parse_data_spec(a->data));
    const data::Normalizer norm = data::Normalizer::for_dataset(ds, ds.train);
    const data::Split& split = a->split == "train" ? ds.train : ds.test;
    int64_t written = 0;
    if (!a->out.empty()) {
      data::LoaderOptions lo;
      lo.batch_size = a->batch_size;
      lo.augment = a->augment;
      lo.seed = a->seed;
      data::Loader loader(data::take_subset(split, a->limit), norm, lo, /*epoch=*/0);
      std::vector<torch::Tensor> images, labels;
      data::Batch b;
      while (loader.next(b)) {
        images.push_back(b.images);
        labels.push_back(b.labels);
      }
      TensorMap t{{"images", images.empty() ? torch::empty({0, ds.channels, ds.height, ds.width}) : torch::cat(images)},
                  {"labels", labels.empty() ? torch::empty({0}, torch::kLong) : torch::cat(labels)}};
      written = t["labels"].size(0);
      save_tensors_atomic(a->out, t);
    }
    const int64_t skipped = split.streamed() ? split.stream->skipped() : 0;
    const nlohmann::json j = {{"schema_version", kRunSchemaVersion},
                              {"spec", ds.spec.str()},
                              {"classes", ds.num_classes},
                              {"class_names", ds.class_names},
                              {"train", ds.train.size()},
                              {"test", ds.test.size()},
                              {"shape", {ds.channels, ds.height, ds.width}},
                              {"normalization", {{"mean", norm.mean}, {"std", norm.std}}},
                              {"streamed", split.streamed()},
                              {"written", written},
                              {"skipped", skipped}};
    std::cout << fmt::format("{}: {} classes, {} training and {} test images of {}x{}x{}{}\n", ds.spec.str(),
                             ds.num_classes, ds.train.size(), ds.test.size(), ds.channels, ds.height, ds.width,
                             split.streamed() ? " (decoded from files)" : "");
    if (!a->out.empty()) std::cout << fmt::format("{}: {} {} images{}\n", a->out, written, a->split,
                                                 skipped ? fmt::format(" ({} unreadable files skipped)", skipped) : "");
    if (!a->json_path.empty()) write_output_file(a->json_path, j.dump(2) + "\n", "--json");
  });
}

}  // namespace unravel::cli
