// Data sets held in memory as uint8 images, the --data specs of DESIGN.md, per-channel
// normalisation from the training set, and a deterministic batch loader with augmentation.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace unravel::data {

// "fashion-mnist[:DIR]", "mnist:DIR", "cifar10:DIR", "cifar100:DIR", "synthetic[:OPTS]".
//   fashion-mnist, mnist: DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
//     t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or gzipped (NAME.gz; raw preferred).
//   cifar10: DIR (or DIR/cifar-10-batches-bin) holds data_batch_1..5.bin and test_batch.bin.
//   cifar100: DIR (or DIR/cifar-100-binary) holds train.bin and test.bin (fine labels are used).
//   synthetic: comma-separated KEY=VALUE options, all optional, defaults shown:
//     "synthetic:train=2048,test=512,size=16,channels=3,classes=10,seed=0"
//     Each class is a fixed random low-frequency pattern; an image is its class pattern, randomly
//     shifted (circularly, up to size/8) and scaled, plus a weaker pattern of another class,
//     a brightness offset and pixel noise. Labels are balanced (example i has class i % classes).
struct DataSpec {
  std::string kind;  // fashion-mnist | mnist | cifar10 | cifar100 | synthetic
  std::string dir;   // directory (or synthetic options); default filled in for fashion-mnist
  std::string str() const;
};
DataSpec parse_data_spec(const std::string& spec);  // throws UserError on unknown kind

struct Split {
  torch::Tensor images;  // (N, C, H, W) uint8
  torch::Tensor labels;  // (N) int64, in [0, num_classes)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct Dataset {
  DataSpec spec;
  int64_t channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<std::string> class_names;
  Split train;
  Split test;
};

// Loads the whole data set. Every problem with a file (missing, wrong magic, truncated, counts
// that disagree, labels out of range, a header claiming more than the file holds) throws
// UserError with one line naming the file and the problem; nothing huge is allocated first.
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

// Per-channel mean/std over the training images (in [0,1] units; population std, exact sums;
// a constant channel gets std 1). apply() computes (x/255 - mean)/std, so a zero pixel (crop
// padding) maps to -mean/std as in torchvision. UserError if the channel counts disagree.
struct Normalizer {
  std::vector<double> mean, std;
  static Normalizer fit(const torch::Tensor& images_u8);
  // uint8 (B,C,H,W) -> float (B,C,H,W) normalised, dtype float32 unless given
  torch::Tensor apply(const torch::Tensor& images_u8,
                      torch::ScalarType dtype = torch::kFloat32) const;
};

struct LoaderOptions {
  int64_t batch_size = 128;  ///< images per batch
  bool shuffle = false;      ///< seeded permutation per epoch
  bool augment = false;      ///< random crop with zero padding `pad` + horizontal flip
  int64_t pad = 4;           ///< crop padding
  bool flip = true;          ///< horizontal flips when augmenting
  bool drop_last = false;    ///< drop a final short batch
  uint64_t seed = 0;         ///< with the epoch, fixes order and augmentation
};

struct Batch {
  torch::Tensor images;  // (B, C, H, W) float, normalised
  torch::Tensor labels;  // (B) int64
  torch::Tensor index;   // (B) int64 position in the split
};

// Iterates one epoch of a split. Same (seed, epoch) -> same batches, bit for bit, so that a
// resumed run replays the uninterrupted one (the random streams are the library's own, so this
// also holds across libtorch versions and platforms). Batches are CPU tensors.
// Throws UserError for batch_size < 1 or pad outside [0, 1024].
class Loader {
 public:
  Loader(const Split& split, const Normalizer& norm, LoaderOptions opts, int64_t epoch);
  bool next(Batch& out);  // false at the end of the epoch
  int64_t num_batches() const;
  int64_t size() const { return split_.size(); }

 private:
  Split split_;
  Normalizer norm_;
  LoaderOptions opts_;
  torch::Tensor order_;  // (N) int64
  int64_t pos_ = 0;
  // Augmentation of the example at each position of the epoch: crop offset and flip.
  struct Aug {
    int16_t dy = 0, dx = 0;
    bool flip = false;
  };
  std::vector<Aug> aug_;  // (N) when augmenting, else empty
};

}  // namespace unravel::data
