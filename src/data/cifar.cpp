// CIFAR-10/100 binary files: fixed-size records, label byte(s) then 3x32x32 channel-major pixels.
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/errors.h"
#include "data/formats.h"

namespace fs = std::filesystem;

namespace unravel::data {

namespace {

// ---------------------------------------------------------------------------------------------
// CIFAR binary: fixed-size records, label byte(s) then 3x32x32 channel-major pixels.

constexpr int64_t kCifarPixels = 3 * 32 * 32;
constexpr int64_t kMaxCifarFileBytes = int64_t{4} << 30;

// Reads a whole CIFAR file as (R, record) uint8 after checking its size.
torch::Tensor read_cifar_records(const std::string& path, const std::string& kind, int64_t record) {
  if (!fs::is_regular_file(path)) throw UserError(fmt::format("{}: missing {} file", path, kind));
  std::error_code ec;
  const auto bytes = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) throw UserError(fmt::format("{}: cannot read its size ({})", path, ec.message()));
  if (bytes == 0) throw UserError(fmt::format("{}: is empty", path));
  if (bytes % record != 0)
    throw UserError(fmt::format(
        "{}: truncated or not a {} binary file: {} bytes is not a multiple of the {}-byte record",
        path, kind, bytes, record));
  if (bytes > kMaxCifarFileBytes)
    throw UserError(fmt::format("{}: {} bytes is too large for a {} file", path, bytes, kind));
  torch::Tensor recs = torch::empty({bytes / record, record}, torch::kUInt8);  // (R, record)
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw UserError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  if (std::fread(recs.data_ptr<uint8_t>(), 1, static_cast<size_t>(bytes), f.get()) !=
      static_cast<size_t>(bytes))
    throw UserError(fmt::format("{}: read error", path));
  return recs;
}

// CIFAR files -> one Split. Records have `lead` label bytes (each checked against its limit);
// byte `label_byte` is the label used.
Split cifar_split(const std::vector<std::string>& paths, const std::string& kind, int64_t lead,
                  const std::vector<int64_t>& label_limits, int64_t label_byte) {
  std::vector<torch::Tensor> images, labels;
  for (const auto& path : paths) {
    torch::Tensor recs = read_cifar_records(path, kind, lead + kCifarPixels);
    for (int64_t b = 0; b < lead; ++b) {
      const torch::Tensor col = recs.select(1, b).contiguous();  // (R)
      check_labels(col, label_limits[b], path,
                   lead == 1 ? "label"
                   : b == 0  ? "coarse label"
                             : "fine label");
    }
    images.push_back(recs.narrow(1, lead, kCifarPixels).contiguous().view({-1, 3, 32, 32}));
    labels.push_back(recs.select(1, label_byte).to(torch::kLong));
  }
  Split s;
  s.images = images.size() == 1 ? images[0] : torch::cat(images);  // (N, 3, 32, 32)
  s.labels = labels.size() == 1 ? labels[0] : torch::cat(labels);  // (N)
  return s;
}

// DIR itself, or the sub-folder the official archive unpacks to.
std::string cifar_dir(const std::string& dir, const std::string& sub, const std::string& probe) {
  if (fs::is_regular_file(fs::path(dir) / probe)) return dir;
  const fs::path nested = fs::path(dir) / sub;
  if (fs::is_directory(nested)) return nested.string();
  return dir;
}

const std::vector<std::string>& cifar100_fine_names() {
  static const std::vector<std::string> names = {
      "apple",       "aquarium_fish", "baby",      "bear",       "beaver",       "bed",
      "bee",         "beetle",        "bicycle",   "bottle",     "bowl",         "boy",
      "bridge",      "bus",           "butterfly", "camel",      "can",          "castle",
      "caterpillar", "cattle",        "chair",     "chimpanzee", "clock",        "cloud",
      "cockroach",   "couch",         "crab",      "crocodile",  "cup",          "dinosaur",
      "dolphin",     "elephant",      "flatfish",  "forest",     "fox",          "girl",
      "hamster",     "house",         "kangaroo",  "keyboard",   "lamp",         "lawn_mower",
      "leopard",     "lion",          "lizard",    "lobster",    "man",          "maple_tree",
      "motorcycle",  "mountain",      "mouse",     "mushroom",   "oak_tree",     "orange",
      "orchid",      "otter",         "palm_tree", "pear",       "pickup_truck", "pine_tree",
      "plain",       "plate",         "poppy",     "porcupine",  "possum",       "rabbit",
      "raccoon",     "ray",           "road",      "rocket",     "rose",         "sea",
      "seal",        "shark",         "shrew",     "skunk",      "skyscraper",   "snail",
      "snake",       "spider",        "squirrel",  "streetcar",  "sunflower",    "sweet_pepper",
      "table",       "tank",          "telephone", "television", "tiger",        "tractor",
      "train",       "trout",         "tulip",     "turtle",     "wardrobe",     "whale",
      "willow_tree", "wolf",          "woman",     "worm"};
  return names;
}

}  // namespace

Dataset load_cifar10(const DataSpec& spec) {
  const std::string dir = cifar_dir(spec.where, "cifar-10-batches-bin", "data_batch_1.bin");
  std::vector<std::string> train_paths;
  for (int i = 1; i <= 5; ++i)
    train_paths.push_back((fs::path(dir) / fmt::format("data_batch_{}.bin", i)).string());
  for (const auto& p : train_paths)  // name the first missing batch before reading anything
    if (!fs::is_regular_file(p)) throw UserError(fmt::format("{}: missing cifar10 file", p));
  Dataset ds;
  ds.spec = spec;
  ds.train = cifar_split(train_paths, "cifar10", 1, {10}, 0);
  ds.test = cifar_split({(fs::path(dir) / "test_batch.bin").string()}, "cifar10", 1, {10}, 0);
  ds.channels = 3;
  ds.height = ds.width = 32;
  ds.num_classes = 10;
  ds.class_names = {"airplane", "automobile", "bird",  "cat",  "deer",
                    "dog",      "frog",       "horse", "ship", "truck"};
  return ds;
}

Dataset load_cifar100(const DataSpec& spec) {
  const std::string dir = cifar_dir(spec.where, "cifar-100-binary", "train.bin");
  Dataset ds;
  ds.spec = spec;
  // Records: coarse label (20 classes), fine label (100 classes), pixels.
  ds.train = cifar_split({(fs::path(dir) / "train.bin").string()}, "cifar100", 2, {20, 100}, 1);
  ds.test = cifar_split({(fs::path(dir) / "test.bin").string()}, "cifar100", 2, {20, 100}, 1);
  ds.channels = 3;
  ds.height = ds.width = 32;
  ds.num_classes = 100;
  ds.class_names = cifar100_fine_names();
  return ds;
}

}  // namespace unravel::data
