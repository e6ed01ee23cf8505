// Data sets and their --data specs: splits of labelled images held in memory (IDX, CIFAR,
// synthetic, tensors files) or streamed from image files (image folders), per-channel
// normalisation, and the deterministic batch loader with augmentation and read-ahead.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace unravel::data {

// --data specs, "KIND[:WHERE[:OPTIONS]]":
//   fashion-mnist[:DIR], mnist:DIR: DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
//     t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or gzipped (NAME.gz; raw preferred).
//   cifar10:DIR (or DIR/cifar-10-batches-bin) holds data_batch_1..5.bin and test_batch.bin.
//   cifar100:DIR (or DIR/cifar-100-binary) holds train.bin and test.bin (fine labels are used).
//   synthetic[:OPTS]: comma-separated KEY=VALUE options, all optional, defaults shown:
//     "synthetic:train=2048,test=512,size=16,channels=3,classes=10,seed=0"
//     Each class is a fixed random low-frequency pattern; an image is its class pattern, randomly
//     shifted (circularly, up to size/8) and scaled, plus a weaker pattern of another class,
//     a brightness offset and pixel noise. Labels are balanced (example i has class i % classes).
//   tensors:FILE: a file written by PyTorch's torch.save of a dict {"images": (N, C, H, W),
//     "labels": (N)} (the one split serves as training and test set), or of {"train": {...},
//     "test": {...}} with such dicts. uint8 images are pixels (normalised like every data set);
//     floating images are used as they are (already normalised).
//   imagefolder:DIR[:OPTS]: torchvision's ImageFolder layout, see data/image_folder.h.
struct DataSpec {
  std::string kind;     // fashion-mnist | mnist | cifar10 | cifar100 | synthetic | tensors | imagefolder
  std::string where;    // directory or file; synthetic: its options
  std::string options;  // imagefolder: KEY=VALUE options; else empty
  std::string str() const;  // the spec back as text (defaults filled in)
};
DataSpec parse_data_spec(const std::string& spec);  // throws UserError on unknown kind

class ImageStream;  // data/stream.h: images decoded from files when a batch needs them

// One split: N labelled images of C x H x W. In memory (`images` defined) or streamed
// (`stream` set, `rows` says which of its items each position is).
struct Split {
  torch::Tensor images;  // (N, C, H, W) uint8 pixels, or float32 already normalised; in memory
  torch::Tensor labels;  // (N) int64, in [0, num_classes)
  std::shared_ptr<const ImageStream> stream;  // streamed splits only
  torch::Tensor rows;    // (N) int64: the stream's item at each position (streamed only)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  bool streamed() const { return stream != nullptr; }
  // The positions `idx` ((B) int64) as a split of their own (in memory: a copy; streamed: rows).
  Split select(const torch::Tensor& idx) const;
};

struct Dataset {
  DataSpec spec;
  int64_t channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<std::string> class_names;
  Split train;
  Split test;
  // The normalisation this data set prescribes (image folders: the spec's or ImageNet's mean and
  // std; floating tensors: none), or nullopt: fit it on the training images (Normalizer::fit).
  struct Norm {
    std::vector<double> mean, std;
  };
  std::optional<Norm> normalization;
  int64_t skipped_files = 0;  // image folders with skip-bad: files left out when listing
};

// Loads the data set (image folders: lists the files; pixels are decoded when needed). Every
// problem with a file (missing, wrong magic, truncated, counts that disagree, labels out of
// range, a header claiming more than the file holds) throws UserError with one line naming the
// file and the problem; nothing huge is allocated first.
Dataset load_dataset(const DataSpec& spec);

// First n examples (n <= 0 or n >= size: all). Deterministic.
Split take_subset(const Split& s, int64_t n);
// Examples [begin, end) (a view, no copy), e.g. one rank's shard.
Split slice_split(const Split& s, int64_t begin, int64_t end);
// Held-out validation: the last `n_val` examples of a seeded permutation of train go to
// `val`, the rest to `train_out` (both keep the original order). Deterministic in seed.
// n_val <= 0: no validation set (val empty); n_val >= train size: UserError.
void split_validation(const Split& train, int64_t n_val, uint64_t seed, Split& train_out,
                      Split& val);

// Per-channel mean/std in [0,1] units. fit() over uint8 training images: population std, exact
// sums; a constant channel gets std 1. apply() computes (x/255 - mean)/std in float32, as
// torchvision's ToTensor + Normalize do, so a zero pixel (crop padding) maps to -mean/std;
// floating input is taken as already normalised and passed through (cast to dtype).
struct Normalizer {
  std::vector<double> mean, std;
  static Normalizer fit(const torch::Tensor& images_u8);
  // The data set's prescribed normalisation, else fit on `train` (in memory, uint8), else
  // identity for floating images. UserError for a streamed split without a prescription.
  static Normalizer for_dataset(const Dataset& ds, const Split& train);
  // uint8 (B,C,H,W) -> float (B,C,H,W) normalised, dtype float32 unless given
  torch::Tensor apply(const torch::Tensor& images, torch::ScalarType dtype = torch::kFloat32) const;
  bool is_identity() const;
};

struct LoaderOptions {
  int64_t batch_size = 128;  ///< images per batch
  bool shuffle = false;      ///< seeded permutation per epoch
  bool augment = false;      ///< in memory: random crop with zero padding `pad` + horizontal flip;
                             ///< image folders: random resized crop + horizontal flip
  int64_t pad = 4;           ///< crop padding
  bool flip = true;          ///< horizontal flips when augmenting
  bool drop_last = false;    ///< drop a final short batch
  uint64_t seed = 0;         ///< with the epoch, fixes order and augmentation
  int64_t start = 0;         ///< first position of the epoch's order (resuming a sweep)
  int read_ahead = 3;        ///< streamed splits: batches decoded ahead of the one in use
  int workers = 0;           ///< streamed splits: decoding threads (0: one per core, at most 4)
};

struct Batch {
  torch::Tensor images;  // (B, C, H, W) float, normalised
  torch::Tensor labels;  // (B) int64
  torch::Tensor index;   // (B) int64 position in the split
};

class Prefetcher;  // data/prefetch.h

// Iterates one epoch of a split. Same (seed, epoch) -> same batches, bit for bit, so that a
// resumed run replays the uninterrupted one (the random streams are the library's own, so this
// also holds across libtorch versions and platforms). Batches are CPU tensors. Streamed splits
// are decoded by worker threads `read_ahead` batches ahead; an unreadable file is a UserError
// naming it, or, when the stream skips bad files, is left out of its batch (counted by the stream).
// Throws UserError for batch_size < 1 or pad outside [0, 1024].
class Loader {
 public:
  Loader(const Split& split, const Normalizer& norm, LoaderOptions opts, int64_t epoch);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  bool next(Batch& out);  // false at the end of the epoch
  int64_t num_batches() const;
  int64_t size() const { return split_.size(); }
  double wait_seconds() const { return wait_s_; }  // time next() spent waiting for decoders

 private:
  torch::Tensor crop_flip(const torch::Tensor& idx, int64_t first) const;
  Split split_;
  Normalizer norm_;
  LoaderOptions opts_;
  torch::Tensor order_;  // (N) int64
  int64_t pos_ = 0;
  uint64_t epoch_seed_ = 0;
  // Augmentation of the example at each position of the epoch (in memory): crop offset and flip.
  struct Aug {
    int16_t dy = 0, dx = 0;
    bool flip = false;
  };
  std::vector<Aug> aug_;  // (N) when augmenting in memory, else empty
  std::unique_ptr<Prefetcher> prefetch_;
  double wait_s_ = 0;
};

}  // namespace unravel::data
