// Data sets: --data spec parsing, IDX (MNIST / Fashion-MNIST) and CIFAR binary readers that
// refuse bad files with one line naming the file, the generated `synthetic` set, per-channel
// normalisation and the deterministic batch loader with crop/flip augmentation.
#include "data/dataset.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>

#include "core/errors.h"
#include "core/random.h"

namespace fs = std::filesystem;

namespace unravel::data {

namespace {

// Streams used by this file (the second argument of mix with the user's seed).
constexpr uint64_t kStreamShuffle = 1, kStreamAugment = 2, kStreamValSplit = 3,
                   kStreamSynthPrototypes = 4, kStreamSynthTrain = 5, kStreamSynthTest = 6;

torch::Tensor to_long_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())},
                          torch::kLong)
      .clone();
}

// ---------------------------------------------------------------------------------------------
// Spec parsing

const char* kFashionDefaultDir = "/usr/share/datasets/fashion-mnist";
const char* kValidKinds =
    "fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:OPTS]";

struct SyntheticOptions {
  int64_t train = 2048, test = 512, size = 16, channels = 3, classes = 10;
  uint64_t seed = 0;
};

int64_t parse_int(const std::string& key, const std::string& value, int64_t lo, int64_t hi) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size())
    throw UserError(fmt::format("--data synthetic: option {}={} is not an integer", key, value));
  if (v < lo || v > hi)
    throw UserError(
        fmt::format("--data synthetic: option {}={} is outside [{}, {}]", key, value, lo, hi));
  return v;
}

SyntheticOptions parse_synthetic(const std::string& opts) {
  SyntheticOptions o;
  size_t start = 0;
  while (start < opts.size()) {
    size_t end = opts.find(',', start);
    if (end == std::string::npos) end = opts.size();
    const std::string item = opts.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      throw UserError(fmt::format("--data synthetic: option '{}' is not KEY=VALUE", item));
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "train")
      o.train = parse_int(key, value, 1, 1000000);
    else if (key == "test")
      o.test = parse_int(key, value, 1, 1000000);
    else if (key == "size")
      o.size = parse_int(key, value, 4, 512);
    else if (key == "channels")
      o.channels = parse_int(key, value, 1, 16);
    else if (key == "classes")
      o.classes = parse_int(key, value, 2, 1000);
    else if (key == "seed")
      o.seed = static_cast<uint64_t>(parse_int(key, value, 0, INT64_MAX));
    else
      throw UserError(
          fmt::format("--data synthetic: unknown option '{}' (valid: train, test, size, channels, "
                      "classes, seed)",
                      key));
  }
  const double bytes = static_cast<double>(o.train + o.test) * o.channels * o.size * o.size;
  if (bytes > 4e9)
    throw UserError(
        fmt::format("--data synthetic:{}: {:.1f} GB of images is too large", opts, bytes / 1e9));
  return o;
}

// ---------------------------------------------------------------------------------------------
// IDX files (MNIST, Fashion-MNIST): big-endian header, then uint8 data.

constexpr int64_t kMaxIdxCount = 100000000;  // refuse headers claiming more examples
constexpr int64_t kMaxIdxDim = 4096;         // ... or larger images
constexpr int64_t kReadChunk = 1 << 20;

uint32_t big_endian_u32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// Reads a raw or gzipped file through zlib (which passes non-gzip files through unchanged).
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) throw UserError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
    gzbuffer(file_, 1 << 18);
  }
  ~ByteReader() { gzclose(file_); }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  // Reads up to n bytes into dst; fewer only when the data ends.
  int64_t read(void* dst, int64_t n) {
    int64_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(std::min<int64_t>(n - done, kReadChunk));
      const int got = gzread(file_, static_cast<char*>(dst) + done, want);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_, &code);
        if (code == Z_BUF_ERROR)
          throw UserError(fmt::format("{}: truncated: the compressed data ends early", path_));
        throw UserError(fmt::format("{}: corrupt or unreadable data ({})", path_, msg));
      }
      if (got == 0) break;
      done += got;
    }
    return done;
  }
  bool compressed() { return gzdirect(file_) == 0; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

// Returns the data of an IDX file with `ndims` dimensions as a flat uint8 tensor and its dims.
torch::Tensor read_idx(const std::string& path, int ndims, const char* what,
                       std::vector<int64_t>& dims) {
  ByteReader in(path);
  unsigned char header[4 + 4 * 3];
  const int64_t header_bytes = 4 + 4 * ndims;
  if (in.read(header, header_bytes) < header_bytes)
    throw UserError(
        fmt::format("{}: truncated: shorter than the {}-byte IDX header", path, header_bytes));
  const uint32_t magic = big_endian_u32(header);
  const uint32_t expected = 0x0800u | static_cast<uint32_t>(ndims);  // uint8 data, ndims dims
  if (magic != expected)
    throw UserError(fmt::format("{}: bad magic number {} (expected {} for an IDX {} file)", path,
                                magic, expected, what));
  dims.assign(static_cast<size_t>(ndims), 0);
  for (int d = 0; d < ndims; ++d) dims[d] = big_endian_u32(header + 4 + 4 * d);
  std::string claim = fmt::format("{} {}", dims[0], what);
  if (ndims == 3) claim += fmt::format(" of {}x{}", dims[1], dims[2]);
  if (dims[0] < 1 || dims[0] > kMaxIdxCount)
    throw UserError(
        fmt::format("{}: header claims {}; the count must be 1..{}", path, claim, kMaxIdxCount));
  for (int d = 1; d < ndims; ++d)
    if (dims[d] < 1 || dims[d] > kMaxIdxDim)
      throw UserError(
          fmt::format("{}: header claims {}; each side must be 1..{}", path, claim, kMaxIdxDim));
  int64_t total = 1;  // <= 1e8 * 4096 * 4096: fits in int64
  for (int64_t d : dims) total *= d;

  // A raw file's size is known: check it before allocating. A gzipped one is read in chunks,
  // so memory only grows with data that is really there.
  std::error_code ec;
  const auto file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  if (!in.compressed() && !ec && file_bytes - header_bytes < total)
    throw UserError(
        fmt::format("{}: truncated: header declares {} ({} bytes) but the file holds {}", path,
                    claim, total, file_bytes - header_bytes));
  std::vector<uint8_t> buf;
  buf.reserve(static_cast<size_t>(std::min<int64_t>(total, 64 * kReadChunk)));
  while (static_cast<int64_t>(buf.size()) < total) {
    const int64_t have = static_cast<int64_t>(buf.size());
    const int64_t want = std::min<int64_t>(kReadChunk, total - have);
    buf.resize(static_cast<size_t>(have + want));
    const int64_t got = in.read(buf.data() + have, want);
    if (got < want)
      throw UserError(
          fmt::format("{}: truncated: header declares {} ({} bytes) but the data ends after {}",
                      path, claim, total, have + got));
  }
  unsigned char extra;
  if (in.read(&extra, 1) != 0)
    throw UserError(fmt::format("{}: has data beyond the {} its header declares", path, claim));
  return torch::from_blob(buf.data(), {total}, torch::kUInt8).clone();
}

std::string find_idx_file(const std::string& dir, const std::string& name) {
  const fs::path raw = fs::path(dir) / name;
  const fs::path gz = fs::path(dir) / (name + ".gz");
  if (fs::is_regular_file(raw)) return raw.string();
  if (fs::is_regular_file(gz)) return gz.string();
  throw UserError(
      fmt::format("{}: missing file (neither it nor {}.gz exists)", raw.string(), name));
}

void check_labels(const torch::Tensor& labels_u8, int64_t num_classes, const std::string& path,
                  const char* word = "label") {
  const uint8_t* p = labels_u8.data_ptr<uint8_t>();
  const int64_t n = labels_u8.numel();
  for (int64_t i = 0; i < n; ++i)
    if (p[i] >= num_classes)
      throw UserError(fmt::format("{}: {} {} at position {} is out of range (classes 0..{})", path,
                                  word, p[i], i, num_classes - 1));
}

Split load_idx_split(const std::string& dir, const std::string& prefix) {
  const std::string image_path = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  std::vector<int64_t> image_dims, label_dims;
  torch::Tensor images = read_idx(image_path, 3, "images", image_dims);
  torch::Tensor labels = read_idx(label_path, 1, "labels", label_dims);
  if (label_dims[0] != image_dims[0])
    throw UserError(fmt::format("{}: holds {} labels but {} holds {} images", label_path,
                                label_dims[0], image_path, image_dims[0]));
  check_labels(labels, 10, label_path);
  Split s;
  s.images = images.view({image_dims[0], 1, image_dims[1], image_dims[2]});  // (N, 1, H, W)
  s.labels = labels.to(torch::kLong);                                        // (N)
  return s;
}

Dataset load_idx_dataset(const DataSpec& spec) {
  Dataset ds;
  ds.spec = spec;
  ds.train = load_idx_split(spec.dir, "train");
  ds.test = load_idx_split(spec.dir, "t10k");
  ds.channels = 1;
  ds.height = ds.train.images.size(2);
  ds.width = ds.train.images.size(3);
  if (ds.test.images.size(2) != ds.height || ds.test.images.size(3) != ds.width)
    throw UserError(fmt::format("{}: test images are {}x{} but training images are {}x{}", spec.dir,
                                ds.test.images.size(2), ds.test.images.size(3), ds.height,
                                ds.width));
  ds.num_classes = 10;
  if (spec.kind == "fashion-mnist")
    ds.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  else
    for (int i = 0; i < 10; ++i) ds.class_names.push_back(std::to_string(i));
  return ds;
}

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

Dataset load_cifar10(const DataSpec& spec) {
  const std::string dir = cifar_dir(spec.dir, "cifar-10-batches-bin", "data_batch_1.bin");
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

Dataset load_cifar100(const DataSpec& spec) {
  const std::string dir = cifar_dir(spec.dir, "cifar-100-binary", "train.bin");
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

// ---------------------------------------------------------------------------------------------
// Synthetic: each class is a random sum of low-frequency cosines per channel (unit RMS). An
// image = 128 + 48 * (contrast * own pattern shifted + 0.4 * another class's pattern)
//         + brightness offset + pixel noise, rounded and clamped to [0, 255].

struct SyntheticPatterns {
  int64_t classes, channels, size;
  std::vector<double> values;  // (classes, channels, size, size)
  double at(int64_t k, int64_t c, int64_t y, int64_t x) const {
    return values[static_cast<size_t>(((k * channels + c) * size + y) * size + x)];
  }
};

SyntheticPatterns make_patterns(const SyntheticOptions& o) {
  SyntheticPatterns p{o.classes, o.channels, o.size, {}};
  p.values.assign(static_cast<size_t>(o.classes * o.channels * o.size * o.size), 0.0);
  Rng rng(mix(o.seed, kStreamSynthPrototypes));
  const double w = 2.0 * M_PI / static_cast<double>(o.size);
  for (int64_t k = 0; k < o.classes; ++k) {
    double sum_sq = 0;
    for (int64_t c = 0; c < o.channels; ++c) {
      for (int fy = 0; fy <= 2; ++fy)
        for (int fx = 0; fx <= 2; ++fx) {
          if (fy == 0 && fx == 0) continue;
          const double amp = rng.normal(), phase = 2.0 * M_PI * rng.uniform();
          for (int64_t y = 0; y < o.size; ++y)
            for (int64_t x = 0; x < o.size; ++x)
              p.values[static_cast<size_t>(((k * o.channels + c) * o.size + y) * o.size + x)] +=
                  amp * std::cos(w * static_cast<double>(fy * y + fx * x) + phase);
        }
      for (int64_t i = 0; i < o.size * o.size; ++i) {
        const double v = p.values[static_cast<size_t>((k * o.channels + c) * o.size * o.size + i)];
        sum_sq += v * v;
      }
    }
    const double scale =
        1.0 / std::sqrt(sum_sq / static_cast<double>(o.channels * o.size * o.size));
    for (int64_t i = 0; i < o.channels * o.size * o.size; ++i)
      p.values[static_cast<size_t>(k * o.channels * o.size * o.size + i)] *= scale;
  }
  return p;
}

Split make_synthetic_split(const SyntheticOptions& o, const SyntheticPatterns& pat, int64_t n,
                           uint64_t stream) {
  Rng rng(mix(o.seed, stream));
  const int64_t S = o.size, C = o.channels, max_shift = std::max<int64_t>(1, S / 8);
  torch::Tensor images = torch::empty({n, C, S, S}, torch::kUInt8);  // (N, C, S, S)
  torch::Tensor labels = torch::empty({n}, torch::kLong);            // (N)
  uint8_t* img = images.data_ptr<uint8_t>();
  int64_t* lab = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % o.classes;
    const int64_t other = (k + 1 + static_cast<int64_t>(rng.below(o.classes - 1))) % o.classes;
    const int64_t sy = rng.between(-max_shift, max_shift), sx = rng.between(-max_shift, max_shift);
    const double contrast = 0.7 + 0.6 * rng.uniform();
    const double brightness = 12.0 * rng.normal();
    lab[i] = k;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < S; ++y)
        for (int64_t x = 0; x < S; ++x) {
          const int64_t py = ((y - sy) % S + S) % S, px = ((x - sx) % S + S) % S;
          const double v = 128.0 + brightness + 30.0 * rng.normal() +
                           48.0 * (contrast * pat.at(k, c, py, px) + 0.4 * pat.at(other, c, y, x));
          img[((i * C + c) * S + y) * S + x] =
              static_cast<uint8_t>(std::lround(std::min(255.0, std::max(0.0, v))));
        }
  }
  return Split{images, labels};
}

Dataset load_synthetic(const DataSpec& spec) {
  const SyntheticOptions o = parse_synthetic(spec.dir);
  const SyntheticPatterns pat = make_patterns(o);
  Dataset ds;
  ds.spec = spec;
  ds.train = make_synthetic_split(o, pat, o.train, kStreamSynthTrain);
  ds.test = make_synthetic_split(o, pat, o.test, kStreamSynthTest);
  ds.channels = o.channels;
  ds.height = ds.width = o.size;
  ds.num_classes = o.classes;
  for (int64_t k = 0; k < o.classes; ++k) ds.class_names.push_back(fmt::format("class{}", k));
  return ds;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

std::string DataSpec::str() const { return dir.empty() ? kind : kind + ":" + dir; }

DataSpec parse_data_spec(const std::string& spec) {
  const size_t colon = spec.find(':');
  DataSpec d;
  d.kind = spec.substr(0, colon);
  const bool has_dir = colon != std::string::npos;
  if (has_dir) d.dir = spec.substr(colon + 1);
  if (d.kind == "synthetic") return d;
  if (d.kind == "fashion-mnist" || d.kind == "mnist" || d.kind == "cifar10" ||
      d.kind == "cifar100") {
    if (has_dir && d.dir.empty())
      throw UserError(fmt::format("--data {}: empty directory after ':'", spec));
    if (!has_dir) {
      if (d.kind != "fashion-mnist")
        throw UserError(fmt::format("--data {}: needs a directory, as in {}:DIR", spec, d.kind));
      d.dir = kFashionDefaultDir;
    }
    return d;
  }
  throw UserError(
      fmt::format("--data {}: unknown data set '{}' (valid: {})", spec, d.kind, kValidKinds));
}

Dataset load_dataset(const DataSpec& spec) {
  if (spec.kind == "synthetic") return load_synthetic(spec);
  if (spec.kind != "fashion-mnist" && spec.kind != "mnist" && spec.kind != "cifar10" &&
      spec.kind != "cifar100")
    throw UserError(fmt::format("--data {}: unknown data set '{}' (valid: {})", spec.str(),
                                spec.kind, kValidKinds));
  if (!fs::is_directory(spec.dir))
    throw UserError(fmt::format("--data {}: directory {} does not exist", spec.str(), spec.dir));
  if (spec.kind == "cifar10") return load_cifar10(spec);
  if (spec.kind == "cifar100") return load_cifar100(spec);
  return load_idx_dataset(spec);
}

Split take_subset(const Split& s, int64_t n) {
  if (n <= 0 || n >= s.size()) return s;
  return Split{s.images.narrow(0, 0, n), s.labels.narrow(0, 0, n)};
}

Split slice_split(const Split& s, int64_t begin, int64_t end) {
  return Split{s.images.slice(0, begin, end), s.labels.slice(0, begin, end)};
}

void split_validation(const Split& train, int64_t n_val, uint64_t seed, Split& train_out,
                      Split& val) {
  const int64_t n = train.size();
  if (n_val <= 0) {
    train_out = train;
    val = n > 0 ? Split{train.images.narrow(0, 0, 0), train.labels.narrow(0, 0, 0)} : Split{};
    return;
  }
  if (n_val >= n)
    throw UserError(fmt::format(
        "--val-split {}: must be smaller than the training set ({} examples)", n_val, n));
  Rng rng(mix(seed, kStreamValSplit));
  std::vector<int64_t> perm = permutation(n, rng);
  std::vector<int64_t> keep(perm.begin(), perm.end() - n_val), held(perm.end() - n_val, perm.end());
  std::sort(keep.begin(), keep.end());
  std::sort(held.begin(), held.end());
  const torch::Tensor keep_t = to_long_tensor(keep), held_t = to_long_tensor(held);
  train_out = Split{train.images.index_select(0, keep_t), train.labels.index_select(0, keep_t)};
  val = Split{train.images.index_select(0, held_t), train.labels.index_select(0, held_t)};
}

Normalizer Normalizer::fit(const torch::Tensor& images_u8) {
  TORCH_CHECK(images_u8.dim() == 4 && images_u8.scalar_type() == torch::kUInt8,
              "Normalizer::fit expects (N, C, H, W) uint8, got ", images_u8.sizes());
  if (images_u8.size(0) == 0) throw UserError("cannot fit the normalisation: no training images");
  const torch::Tensor x = images_u8.contiguous();  // (N, C, H, W)
  const int64_t N = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  const uint8_t* p = x.data_ptr<uint8_t>();
  // Exact integer sums per channel (uint64 cannot overflow below ~2.8e14 pixels per channel).
  std::vector<uint64_t> sum(static_cast<size_t>(C), 0), sum_sq(static_cast<size_t>(C), 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* q = p + (i * C + c) * plane;
      uint64_t s = 0, s2 = 0;
      for (int64_t j = 0; j < plane; ++j) {
        const uint32_t v = q[j];
        s += v;
        s2 += v * v;
      }
      sum[c] += s;
      sum_sq[c] += s2;
    }
  Normalizer norm;
  const double count = static_cast<double>(N * plane);
  for (int64_t c = 0; c < C; ++c) {
    const double mean = static_cast<double>(sum[c]) / count;  // in pixel units
    const double var = std::max(0.0, static_cast<double>(sum_sq[c]) / count - mean * mean);
    const double std = std::sqrt(var) / 255.0;
    norm.mean.push_back(mean / 255.0);
    norm.std.push_back(std > 1e-8 ? std : 1.0);
  }
  return norm;
}

torch::Tensor Normalizer::apply(const torch::Tensor& images_u8, torch::ScalarType dtype) const {
  TORCH_CHECK(images_u8.dim() == 4, "Normalizer::apply expects (B, C, H, W), got ",
              images_u8.sizes());
  const int64_t C = images_u8.size(1);
  if (mean.empty() || static_cast<int64_t>(mean.size()) != C || std.size() != mean.size())
    throw UserError(fmt::format(
        "normalisation has {} channel(s) but the images have {} (data set of another kind?)",
        mean.size(), C));
  // (x/255 - mean)/std = x * scale + shift
  std::vector<double> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = 1.0 / (255.0 * std[c]);
    shift[c] = -mean[c] / std[c];
  }
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const torch::Tensor scale_t = torch::from_blob(scale.data(), {1, C, 1, 1}, opts).to(dtype);
  const torch::Tensor shift_t = torch::from_blob(shift.data(), {1, C, 1, 1}, opts).to(dtype);
  torch::Tensor out = images_u8.to(dtype);  // (B, C, H, W)
  out.mul_(scale_t).add_(shift_t);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loader

Loader::Loader(const Split& split, const Normalizer& norm, LoaderOptions opts, int64_t epoch)
    : norm_(norm), opts_(opts) {
  if (opts_.batch_size < 1)
    throw UserError(fmt::format("batch size {} must be at least 1", opts_.batch_size));
  if (opts_.augment && (opts_.pad < 0 || opts_.pad > 1024))
    throw UserError(fmt::format("crop padding {} is outside [0, 1024]", opts_.pad));
  TORCH_CHECK(split.size() == 0 ||
                  (split.images.dim() == 4 && split.images.scalar_type() == torch::kUInt8 &&
                   split.images.size(0) == split.size()),
              "Loader expects (N, C, H, W) uint8 images matching the labels");
  split_.images = split.images.defined() ? split.images.contiguous() : split.images;
  split_.labels = split.labels.defined() ? split.labels.contiguous() : split.labels;
  const int64_t n = split_.size();
  const auto ep = static_cast<uint64_t>(epoch);
  if (opts_.shuffle) {
    Rng rng(mix(mix(opts_.seed, ep), kStreamShuffle));
    order_ = to_long_tensor(permutation(n, rng));
  } else {
    order_ = torch::arange(n, torch::kLong);
  }
  if (opts_.augment) {
    Rng rng(mix(mix(opts_.seed, ep), kStreamAugment));
    aug_.resize(static_cast<size_t>(n));
    for (auto& a : aug_) {
      a.dy = static_cast<int16_t>(rng.between(-opts_.pad, opts_.pad));
      a.dx = static_cast<int16_t>(rng.between(-opts_.pad, opts_.pad));
      a.flip = opts_.flip && rng.coin();
    }
  }
}

int64_t Loader::num_batches() const {
  const int64_t n = split_.size(), b = opts_.batch_size;
  return opts_.drop_last ? n / b : (n + b - 1) / b;
}

bool Loader::next(Batch& out) {
  const int64_t n = split_.size();
  const int64_t B = std::min(opts_.batch_size, n - pos_);
  if (B <= 0 || (opts_.drop_last && B < opts_.batch_size)) return false;
  const torch::Tensor idx = order_.narrow(0, pos_, B).clone();  // (B)
  torch::Tensor u8;                                             // (B, C, H, W) uint8
  if (!opts_.augment) {
    u8 = split_.images.index_select(0, idx);
  } else {
    // Crop of the zero-padded image at offset (dy, dx) in [-pad, pad], then optional flip:
    // out[y][x] = img[y + dy][x' + dx] with x' = flip ? W-1-x : x, zero outside the image.
    const int64_t C = split_.images.size(1), H = split_.images.size(2), W = split_.images.size(3);
    const int64_t plane = H * W;
    u8 = torch::zeros({B, C, H, W}, torch::kUInt8);
    const uint8_t* src = split_.images.data_ptr<uint8_t>();
    uint8_t* dst = u8.data_ptr<uint8_t>();
    const int64_t* ix = idx.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const Aug& a = aug_[static_cast<size_t>(pos_ + b)];
      const int64_t x0 = std::max<int64_t>(0, -a.dx), x1 = std::min<int64_t>(W, W - a.dx);
      if (x1 <= x0) continue;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < H; ++y) {
          const int64_t sy = y + a.dy;
          if (sy < 0 || sy >= H) continue;
          const uint8_t* srow = src + (ix[b] * C + c) * plane + sy * W;
          uint8_t* drow = dst + (b * C + c) * plane + y * W;
          if (!a.flip) {
            std::memcpy(drow + x0, srow + x0 + a.dx, static_cast<size_t>(x1 - x0));
          } else {
            for (int64_t x = x0; x < x1; ++x) drow[W - 1 - x] = srow[x + a.dx];
          }
        }
    }
  }
  out.images = norm_.apply(u8);                     // (B, C, H, W) float
  out.labels = split_.labels.index_select(0, idx);  // (B)
  out.index = idx;                                  // (B)
  pos_ += B;
  return true;
}

}  // namespace unravel::data
