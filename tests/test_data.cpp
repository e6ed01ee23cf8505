// Tests of src/data: spec parsing, IDX and CIFAR readers on small files written here (good and
// corrupt), the synthetic set, subsets and validation splits, normalisation and the Loader.
// Sections: specs / IDX / CIFAR / synthetic / subsets, validation split, normalisation (the
// Normalizer's std is the population std, pinned by a hand computation) / the Loader (every
// example once per epoch, seeded order, crop and flip against a direct computation) / the real
// data set. The Loader's speed is measured by bench/bench_loader, not here.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/errors.h"
#include "data/dataset.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace unravel;
using namespace unravel::data;
using unravel::testing::expect_thrown_user_error;
using unravel::testing::TempDir;

namespace {

using Bytes = std::vector<uint8_t>;

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), (int)b.size());
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

void put_u32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// Pixel value of the synthetic IDX test files: distinct per (example, y, x).
uint8_t idx_pixel(int64_t i, int64_t y, int64_t x) {
  return static_cast<uint8_t>(i * 37 + y * 5 + x * 3);
}

Bytes idx_images(uint32_t n, uint32_t h, uint32_t w, uint32_t magic = 2051) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, n);
  put_u32(b, h);
  put_u32(b, w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t y = 0; y < h; ++y)
      for (uint32_t x = 0; x < w; ++x) b.push_back(idx_pixel(i, y, x));
  return b;
}

Bytes idx_labels(const std::vector<uint8_t>& labels, uint32_t magic = 2049) {
  Bytes b;
  put_u32(b, magic);
  put_u32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

std::vector<uint8_t> cyclic_labels(int n, int offset = 0) {
  std::vector<uint8_t> l;
  for (int i = 0; i < n; ++i) l.push_back(static_cast<uint8_t>((i + offset) % 10));
  return l;
}

// A complete small IDX set: 12 train and 5 test images of 6x4.
void write_idx_set(const TempDir& d, bool gz) {
  auto w = [&](const std::string& name, const Bytes& b) {
    if (gz)
      write_gz(d / (name + ".gz"), b);
    else
      write_raw(d / name, b);
  };
  w("train-images-idx3-ubyte", idx_images(12, 6, 4));
  w("train-labels-idx1-ubyte", idx_labels(cyclic_labels(12)));
  w("t10k-images-idx3-ubyte", idx_images(5, 6, 4));
  w("t10k-labels-idx1-ubyte", idx_labels(cyclic_labels(5, 3)));
}

DataSpec spec_of(const std::string& kind, const std::string& dir) {
  DataSpec s;
  s.kind = kind;
  s.where = dir;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Specs

TEST(DataSpec, ParsesKindsAndDefaults) {
  DataSpec s = parse_data_spec("fashion-mnist");
  EXPECT_EQ(s.kind, "fashion-mnist");
  EXPECT_EQ(s.where, "/usr/share/datasets/fashion-mnist");
  s = parse_data_spec("mnist:/data/mnist");
  EXPECT_EQ(s.kind, "mnist");
  EXPECT_EQ(s.where, "/data/mnist");
  s = parse_data_spec("cifar100:/a:b");  // only the first ':' separates
  EXPECT_EQ(s.kind, "cifar100");
  EXPECT_EQ(s.where, "/a:b");
  s = parse_data_spec("synthetic");
  EXPECT_EQ(s.kind, "synthetic");
  EXPECT_EQ(s.where, "");
  for (const std::string text : {"fashion-mnist:/x", "mnist:/d", "cifar10:rel/dir", "cifar100:/c",
                                 "synthetic", "synthetic:train=64,size=8"}) {
    EXPECT_EQ(parse_data_spec(text).str(), text);
    EXPECT_EQ(parse_data_spec(parse_data_spec(text).str()).where, parse_data_spec(text).where);
  }
  EXPECT_EQ(parse_data_spec("fashion-mnist").str(),
            "fashion-mnist:/usr/share/datasets/fashion-mnist");
}

TEST(DataSpec, RejectsBadSpecs) {
  expect_thrown_user_error([] { parse_data_spec("imagenet:/x"); },
                    {"imagenet", "fashion-mnist", "mnist", "cifar10", "cifar100", "synthetic"});
  expect_thrown_user_error([] { parse_data_spec("mnist"); }, {"mnist", "DIR"});
  expect_thrown_user_error([] { parse_data_spec("cifar10:"); }, {"cifar10:", "empty"});
  expect_thrown_user_error([] { load_dataset(parse_data_spec("fashion-mnist:/no/such/dir")); },
                    {"/no/such/dir", "does not exist"});
}

// ---------------------------------------------------------------------------------------------
// IDX

void check_idx_set(const Dataset& ds) {
  EXPECT_EQ(ds.channels, 1);
  EXPECT_EQ(ds.height, 6);
  EXPECT_EQ(ds.width, 4);
  EXPECT_EQ(ds.num_classes, 10);
  ASSERT_EQ(ds.train.images.sizes(), (std::vector<int64_t>{12, 1, 6, 4}));
  ASSERT_EQ(ds.test.images.sizes(), (std::vector<int64_t>{5, 1, 6, 4}));
  EXPECT_EQ(ds.train.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(ds.train.labels.scalar_type(), torch::kLong);
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(ds.train.labels[i].item<int64_t>(), i % 10);
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 4; ++x)
        ASSERT_EQ(ds.train.images[i][0][y][x].item<int>(), idx_pixel(i, y, x))
            << "train image " << i << " at (" << y << "," << x << ")";
  }
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(ds.test.labels[i].item<int64_t>(), (i + 3) % 10);
    EXPECT_EQ(ds.test.images[i][0][5][3].item<int>(), idx_pixel(i, 5, 3));
  }
}

TEST(Idx, ReadsRawFiles) {
  TempDir d;
  write_idx_set(d, /*gz=*/false);
  const Dataset ds = load_dataset(spec_of("fashion-mnist", d.str()));
  check_idx_set(ds);
  ASSERT_EQ(ds.class_names.size(), 10u);
  EXPECT_EQ(ds.class_names[0], "T-shirt/top");
  EXPECT_EQ(ds.class_names[9], "Ankle boot");
  const Dataset mn = load_dataset(spec_of("mnist", d.str()));
  EXPECT_EQ(mn.class_names[7], "7");
}

TEST(Idx, ReadsGzippedFiles) {
  TempDir d;
  write_idx_set(d, /*gz=*/true);
  check_idx_set(load_dataset(spec_of("fashion-mnist", d.str())));
}

TEST(Idx, PrefersRawWhenBothExist) {
  TempDir d;
  write_idx_set(d, /*gz=*/false);
  // A gzipped training label file with other labels: the raw one must win.
  write_gz(d / "train-labels-idx1-ubyte.gz", idx_labels(cyclic_labels(12, 5)));
  EXPECT_EQ(load_dataset(spec_of("mnist", d.str())).train.labels[0].item<int64_t>(), 0);
  fs::remove(d / "train-labels-idx1-ubyte");
  EXPECT_EQ(load_dataset(spec_of("mnist", d.str())).train.labels[0].item<int64_t>(), 5);
}

TEST(Idx, CorruptFilesGiveOneLineErrors) {
  const std::string img = "train-images-idx3-ubyte", lab = "train-labels-idx1-ubyte";
  struct Case {
    std::string what;
    std::function<void(const TempDir&)> corrupt;  // applied to a good raw set
    std::vector<std::string> parts;               // expected in the message (besides the dir)
  };
  const std::vector<Case> cases = {
      {"missing labels", [&](const TempDir& d) { fs::remove(d / lab); }, {lab, "missing"}},
      {"wrong image magic",
       [&](const TempDir& d) { write_raw(d / img, idx_images(12, 6, 4, /*magic=*/2049)); },
       {img, "magic", "2049", "2051"}},
      {"wrong label magic",
       [&](const TempDir& d) { write_raw(d / lab, idx_labels(cyclic_labels(12), 2051)); },
       {lab, "magic"}},
      {"gzip header on a non-IDX file",
       [&](const TempDir& d) {
         write_gz(d / (img + ".gz"),
                  Bytes{'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
         fs::remove(d / img);
       },
       {img + ".gz", "magic"}},
      {"truncated raw images",
       [&](const TempDir& d) {
         Bytes b = idx_images(12, 6, 4);
         b.resize(b.size() - 7);
         write_raw(d / img, b);
       },
       {img, "truncated", "12 images of 6x4"}},
      {"short header",
       [&](const TempDir& d) {
         write_raw(d / img, Bytes{0, 0, 8, 3, 0, 0});
       },
       {img, "truncated", "header"}},
      {"truncated gz payload",
       [&](const TempDir& d) {
         Bytes b = idx_images(12, 6, 4);
         b.resize(b.size() - 30);
         write_gz(d / (img + ".gz"), b);
         fs::remove(d / img);
       },
       {img + ".gz", "truncated"}},
      {"truncated gz stream",
       [&](const TempDir& d) {
         write_gz(d / (img + ".gz"), idx_images(12, 6, 4));
         Bytes z = unravel::testing::read_bytes(d / (img + ".gz"));
         z.resize(z.size() / 2);
         write_raw(d / (img + ".gz"), z);
         fs::remove(d / img);
       },
       {img + ".gz", "truncated"}},
      {"counts disagree",
       [&](const TempDir& d) { write_raw(d / lab, idx_labels(cyclic_labels(11))); },
       {lab, "11 labels", img, "12 images"}},
      {"label out of range",
       [&](const TempDir& d) {
         auto l = cyclic_labels(12);
         l[4] = 10;
         write_raw(d / lab, idx_labels(l));
       },
       {lab, "label 10", "position 4", "out of range"}},
      {"raw header claims gigabytes",
       [&](const TempDir& d) {
         Bytes b = idx_images(12, 6, 4);
         b[4] = 0x05;  // count 0x05F5E0xx: about 100M images of 6x4
         b[5] = 0xF5;
         b[6] = 0xE0;
         write_raw(d / img, b);
       },
       {img, "truncated", "images of 6x4"}},
      {"gz header claims gigabytes",
       [&](const TempDir& d) {
         Bytes b;
         put_u32(b, 2051);
         put_u32(b, 99999999);
         put_u32(b, 4096);
         put_u32(b, 4096);
         b.resize(b.size() + 1000, 7);
         write_gz(d / (img + ".gz"), b);
         fs::remove(d / img);
       },
       {img + ".gz", "99999999 images of 4096x4096", "limit"}},
      {"gz bomb behind a lying header (refused before inflating)",
       [&](const TempDir& d) {
         Bytes b;
         put_u32(b, 2051);
         put_u32(b, 100000000);  // 10^8 images of 28x28 would be 78 GB
         put_u32(b, 28);
         put_u32(b, 28);
         b.resize(b.size() + 4000000, 0);  // 4 MB of zeros: a ~4 KB gz file
         write_gz(d / (img + ".gz"), b);
         fs::remove(d / img);
       },
       {img + ".gz", "100000000 images of 28x28", "limit"}},
      {"gz header claims more than deflate can hold",
       [&](const TempDir& d) {
         Bytes b;
         put_u32(b, 2051);
         put_u32(b, 2000000);  // 1.5 GB claimed from a ~1 KB file
         put_u32(b, 28);
         put_u32(b, 28);
         b.resize(b.size() + 1000, 7);
         write_gz(d / (img + ".gz"), b);
         fs::remove(d / img);
       },
       {img + ".gz", "2000000 images of 28x28", "cannot hold", "lying header"}},
      {"absurd count",
       [&](const TempDir& d) {
         Bytes b = idx_images(12, 6, 4);
         b[4] = 0xFF;
         write_raw(d / img, b);
       },
       {img, "count must be"}},
      {"zero count",
       [&](const TempDir& d) { write_raw(d / img, idx_images(0, 6, 4)); },
       {img, "count must be"}},
      {"absurd image size",
       [&](const TempDir& d) { write_raw(d / img, idx_images(1, 5000, 4)); },
       {img, "5000x4", "each side"}},
      {"trailing data",
       [&](const TempDir& d) {
         Bytes b = idx_images(12, 6, 4);
         b.push_back(1);
         write_raw(d / img, b);
       },
       {img, "beyond"}},
      {"test size differs",
       [&](const TempDir& d) { write_raw(d / "t10k-images-idx3-ubyte", idx_images(5, 4, 6)); },
       {"test images are 4x6", "6x4"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir d;
    write_idx_set(d, /*gz=*/false);
    c.corrupt(d);
    std::vector<std::string> parts = c.parts;
    parts.push_back(d.str());
    expect_thrown_user_error([&] { load_dataset(spec_of("fashion-mnist", d.str())); }, parts);
  }
}

// ---------------------------------------------------------------------------------------------
// CIFAR

// Byte of record r (in file `f`) at (c, y, x): distinct enough to catch layout mistakes.
uint8_t cifar_pixel(int f, int r, int c, int y, int x) {
  return static_cast<uint8_t>(f * 101 + r * 13 + c * 50 + y * 3 + x * 7);
}

Bytes cifar_file(int f, const std::vector<std::vector<uint8_t>>& label_bytes) {
  Bytes b;
  for (size_t r = 0; r < label_bytes.size(); ++r) {
    b.insert(b.end(), label_bytes[r].begin(), label_bytes[r].end());
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) b.push_back(cifar_pixel(f, static_cast<int>(r), c, y, x));
  }
  return b;
}

// cifar10: batches 1..5 with 2 records each (labels f+r), test with 3 records.
void write_cifar10(const std::string& dir) {
  fs::create_directories(dir);
  for (int f = 1; f <= 5; ++f)
    write_raw((fs::path(dir) / ("data_batch_" + std::to_string(f) + ".bin")).string(),
              cifar_file(f, {{uint8_t(f)}, {uint8_t(f + 1)}}));
  write_raw((fs::path(dir) / "test_batch.bin").string(), cifar_file(0, {{9}, {0}, {3}}));
}

TEST(Cifar, ReadsCifar10ChannelMajor) {
  TempDir d;
  write_cifar10(d.str());
  const Dataset ds = load_dataset(parse_data_spec("cifar10:" + d.str()));
  ASSERT_EQ(ds.train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  ASSERT_EQ(ds.test.images.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(ds.channels, 3);
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.class_names[1], "automobile");
  for (int f = 1; f <= 5; ++f)
    for (int r = 0; r < 2; ++r) {
      const int64_t i = (f - 1) * 2 + r;
      EXPECT_EQ(ds.train.labels[i].item<int64_t>(), f + r);
      for (int c = 0; c < 3; ++c)
        for (int y : {0, 17, 31})
          for (int x : {0, 5, 31})
            ASSERT_EQ(ds.train.images[i][c][y][x].item<int>(), cifar_pixel(f, r, c, y, x))
                << "train " << i << " c" << c << " y" << y << " x" << x;
    }
  EXPECT_EQ(ds.test.labels[0].item<int64_t>(), 9);
  EXPECT_EQ(ds.test.labels[2].item<int64_t>(), 3);
  EXPECT_EQ(ds.test.images[2][1][4][9].item<int>(), cifar_pixel(0, 2, 1, 4, 9));
}

TEST(Cifar, FindsTheArchiveSubfolder) {
  TempDir d;
  write_cifar10(d / "cifar-10-batches-bin");
  EXPECT_EQ(load_dataset(parse_data_spec("cifar10:" + d.str())).train.size(), 10);
}

TEST(Cifar, ReadsCifar100FineLabels) {
  TempDir d;
  write_raw(d / "train.bin", cifar_file(1, {{19, 99}, {0, 42}}));
  write_raw(d / "test.bin", cifar_file(2, {{3, 7}}));
  const Dataset ds = load_dataset(parse_data_spec("cifar100:" + d.str()));
  EXPECT_EQ(ds.num_classes, 100);
  ASSERT_EQ(ds.class_names.size(), 100u);
  EXPECT_EQ(ds.class_names[0], "apple");
  EXPECT_EQ(ds.class_names[99], "worm");
  ASSERT_EQ(ds.train.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_EQ(ds.train.labels[0].item<int64_t>(), 99);
  EXPECT_EQ(ds.train.labels[1].item<int64_t>(), 42);
  EXPECT_EQ(ds.test.labels[0].item<int64_t>(), 7);
  EXPECT_EQ(ds.train.images[1][2][31][0].item<int>(), cifar_pixel(1, 1, 2, 31, 0));
  EXPECT_EQ(ds.test.images[0][0][0][1].item<int>(), cifar_pixel(2, 0, 0, 0, 1));
  // The archive's sub-folder works too.
  TempDir n;
  fs::create_directories(n / "cifar-100-binary");
  fs::copy(d / "train.bin", n / "cifar-100-binary/train.bin");
  fs::copy(d / "test.bin", n / "cifar-100-binary/test.bin");
  EXPECT_EQ(load_dataset(parse_data_spec("cifar100:" + n.str())).test.size(), 1);
}

TEST(Cifar, CorruptFilesGiveOneLineErrors) {
  {
    TempDir d;
    write_cifar10(d.str());
    fs::remove(d / "data_batch_3.bin");
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar10:" + d.str())); },
                      {d / "data_batch_3.bin", "missing"});
  }
  {
    TempDir d;
    write_cifar10(d.str());
    Bytes b = unravel::testing::read_bytes(d / "data_batch_2.bin");
    b.resize(b.size() - 100);
    write_raw(d / "data_batch_2.bin", b);
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar10:" + d.str())); },
                      {d / "data_batch_2.bin", "truncated", "3073"});
  }
  {
    TempDir d;
    write_cifar10(d.str());
    write_raw(d / "test_batch.bin", cifar_file(0, {{1}, {10}}));
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar10:" + d.str())); },
                      {d / "test_batch.bin", "label 10", "position 1", "out of range"});
  }
  {
    TempDir d;
    write_cifar10(d.str());
    write_raw(d / "test_batch.bin", Bytes{});
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar10:" + d.str())); },
                      {d / "test_batch.bin", "empty"});
  }
  {
    TempDir d;
    write_raw(d / "train.bin", cifar_file(1, {{1, 100}}));
    write_raw(d / "test.bin", cifar_file(1, {{1, 1}}));
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar100:" + d.str())); },
                      {d / "train.bin", "fine label 100", "out of range"});
    write_raw(d / "train.bin", cifar_file(1, {{20, 1}}));
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar100:" + d.str())); },
                      {d / "train.bin", "coarse label 20", "out of range"});
    write_raw(d / "train.bin", cifar_file(1, {{1, 1}}));
    fs::remove(d / "test.bin");
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar100:" + d.str())); },
                      {d / "test.bin", "missing"});
    // A CIFAR-10 file given as CIFAR-100: 3073-byte records are not 3074-byte ones.
    write_raw(d / "test.bin", cifar_file(1, {{1}, {2}}));
    expect_thrown_user_error([&] { load_dataset(parse_data_spec("cifar100:" + d.str())); },
                      {d / "test.bin", "3074"});
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic

TEST(Synthetic, DeterministicBalancedAndShaped) {
  const DataSpec spec =
      parse_data_spec("synthetic:train=60,test=20,size=12,channels=1,classes=6,seed=3");
  const Dataset a = load_dataset(spec), b = load_dataset(spec);
  ASSERT_EQ(a.train.images.sizes(), (std::vector<int64_t>{60, 1, 12, 12}));
  ASSERT_EQ(a.test.images.sizes(), (std::vector<int64_t>{20, 1, 12, 12}));
  EXPECT_EQ(a.num_classes, 6);
  EXPECT_EQ(a.class_names.size(), 6u);
  EXPECT_TRUE(torch::equal(a.train.images, b.train.images));
  EXPECT_TRUE(torch::equal(a.test.images, b.test.images));
  EXPECT_TRUE(torch::equal(a.train.labels, b.train.labels));
  const torch::Tensor hist = torch::bincount(a.train.labels);
  EXPECT_TRUE(torch::equal(hist, torch::full({6}, 10, torch::kLong))) << hist;
  // Train and test differ; another seed differs; pixels use the range.
  EXPECT_FALSE(torch::equal(a.train.images.narrow(0, 0, 20), a.test.images));
  const Dataset c = load_dataset(
      parse_data_spec("synthetic:train=60,test=20,size=12,channels=1,classes=6,seed=4"));
  EXPECT_FALSE(torch::equal(a.train.images, c.train.images));
  EXPECT_GT(a.train.images.max().item<int>() - a.train.images.min().item<int>(), 150);

  const Dataset def = load_dataset(parse_data_spec("synthetic"));
  ASSERT_EQ(def.train.images.sizes(), (std::vector<int64_t>{2048, 3, 16, 16}));
  EXPECT_EQ(def.test.size(), 512);
  EXPECT_EQ(def.num_classes, 10);
}

TEST(Synthetic, LearnableButNotTrivial) {
  // Nearest class mean on raw pixels: far above chance (0.1), yet not perfect.
  const Dataset ds = load_dataset(parse_data_spec("synthetic:train=2000,test=500"));
  const torch::Tensor x = ds.train.images.to(torch::kFloat).flatten(1);  // (N, D)
  const torch::Tensor means = torch::zeros({10, x.size(1)}).index_add_(0, ds.train.labels, x) /
                              torch::bincount(ds.train.labels).to(torch::kFloat).unsqueeze(1);
  const torch::Tensor t = ds.test.images.to(torch::kFloat).flatten(1);  // (M, D)
  const torch::Tensor pred = torch::cdist(t, means).argmin(1);
  const double acc = pred.eq(ds.test.labels).to(torch::kDouble).mean().item<double>();
  std::printf("synthetic nearest-class-mean test accuracy: %.3f\n", acc);
  EXPECT_GT(acc, 0.4);
  EXPECT_LT(acc, 0.99);
}

TEST(Synthetic, RejectsBadOptions) {
  expect_thrown_user_error([] { load_dataset(parse_data_spec("synthetic:colour=1")); },
                    {"colour", "train", "seed"});
  expect_thrown_user_error([] { load_dataset(parse_data_spec("synthetic:size=abc")); }, {"size=abc"});
  expect_thrown_user_error([] { load_dataset(parse_data_spec("synthetic:classes=1")); },
                    {"classes=1", "[2, 1000]"});
  expect_thrown_user_error([] { load_dataset(parse_data_spec("synthetic:train")); },
                    {"train", "KEY=VALUE"});
  expect_thrown_user_error(
      [] { load_dataset(parse_data_spec("synthetic:train=1000000,size=512,channels=16")); },
      {"too large"});
}

// ---------------------------------------------------------------------------------------------
// Subsets, validation split, normalisation

Split counting_split(int64_t n) {  // image i is filled with i % 256, label i % 10
  Split s;
  s.images = torch::arange(n, torch::kLong)
                 .remainder(256)
                 .to(torch::kUInt8)
                 .view({n, 1, 1, 1})
                 .expand({n, 1, 3, 2})
                 .contiguous();  // (n, 1, 3, 2)
  s.labels = torch::arange(n, torch::kLong).remainder(10);
  return s;
}

TEST(Subset, TakesFirstN) {
  const Split s = counting_split(50);
  const Split t = take_subset(s, 7);
  EXPECT_EQ(t.size(), 7);
  EXPECT_EQ(t.images.size(0), 7);
  EXPECT_EQ(t.images[6][0][2][1].item<int>(), 6);
  EXPECT_EQ(t.labels[6].item<int64_t>(), 6);
  EXPECT_EQ(take_subset(s, 0).size(), 50);
  EXPECT_EQ(take_subset(s, -3).size(), 50);
  EXPECT_EQ(take_subset(s, 80).size(), 50);
}

TEST(Subset, ValidationSplitIsDeterministicAndDisjoint) {
  const Split s = counting_split(100);
  Split tr, va, tr2, va2, tr3, va3;
  split_validation(s, 30, 7, tr, va);
  split_validation(s, 30, 7, tr2, va2);
  split_validation(s, 30, 8, tr3, va3);
  EXPECT_EQ(tr.size(), 70);
  EXPECT_EQ(va.size(), 30);
  EXPECT_TRUE(torch::equal(tr.images, tr2.images));
  EXPECT_TRUE(torch::equal(va.labels, va2.labels));
  EXPECT_FALSE(torch::equal(va.images, va3.images));
  // Together they hold each example once; labels travel with images; order is kept.
  std::vector<int> seen(100, 0);
  for (const Split* p : {&tr, &va}) {
    for (int64_t i = 0; i < p->size(); ++i) {
      const int v = p->images[i][0][0][0].item<int>();
      ++seen[v];
      EXPECT_EQ(p->labels[i].item<int64_t>(), v % 10);
      if (i > 0) {
        EXPECT_LT(p->images[i - 1][0][0][0].item<int>(), v);
      }
    }
  }
  for (int v = 0; v < 100; ++v) EXPECT_EQ(seen[v], 1) << v;
  // The held-out part is not simply the tail.
  EXPECT_LT(va.images[0][0][0][0].item<int>(), 70);

  split_validation(s, 0, 7, tr, va);
  EXPECT_EQ(tr.size(), 100);
  EXPECT_EQ(va.size(), 0);
  expect_thrown_user_error([&] { split_validation(s, 100, 7, tr, va); }, {"--val-split", "100"});
}

TEST(Normalizer, MatchesHandComputation) {
  // Two images, 2 channels, 1x2 pixels. Channel 0: 0, 255, 51, 102; channel 1: all 10.
  const torch::Tensor x =
      torch::tensor({0, 255, 10, 10, 51, 102, 10, 10}, torch::kUInt8).view({2, 2, 1, 2});
  const Normalizer n = Normalizer::fit(x);
  ASSERT_EQ(n.mean.size(), 2u);
  // Channel 0 in [0,1]: 0, 1, 0.2, 0.4 -> mean 0.4, population var (0.16+0.36+0.04+0)/4 = 0.14.
  EXPECT_NEAR(n.mean[0], 0.4, 1e-12);
  EXPECT_NEAR(n.std[0], std::sqrt(0.14), 1e-12);
  EXPECT_NEAR(n.mean[1], 10.0 / 255, 1e-12);
  EXPECT_EQ(n.std[1], 1.0);  // constant channel
  const torch::Tensor y = n.apply(x);
  EXPECT_EQ(y.scalar_type(), torch::kFloat32);
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_NEAR(y[0][0][0][1].item<float>(), (1.0 - 0.4) / std::sqrt(0.14), 1e-5);
  EXPECT_NEAR(y[1][0][0][0].item<float>(), (0.2 - 0.4) / std::sqrt(0.14), 1e-5);
  EXPECT_NEAR(y[1][1][0][1].item<float>(), 0.0, 1e-6);
  EXPECT_EQ(n.apply(x, torch::kDouble).scalar_type(), torch::kDouble);
  expect_thrown_user_error(
      [&] {
        n.apply(torch::zeros({1, 3, 2, 2}, torch::kUInt8));
      },
      {"2 channel", "3"});
}

TEST(Normalizer, LargeSetIsExact) {
  // 6000 images of 28x28: every pixel (i + j) % 256; checked against a double computation.
  const int64_t N = 6000;
  const torch::Tensor x = (torch::arange(N, torch::kInt).view({N, 1, 1, 1}) +
                           torch::arange(784, torch::kInt).view({1, 1, 28, 28}))
                              .remainder(256)
                              .to(torch::kUInt8);
  const auto t0 = std::chrono::steady_clock::now();
  const Normalizer n = Normalizer::fit(x);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const torch::Tensor d = x.to(torch::kDouble) / 255.0;
  EXPECT_NEAR(n.mean[0], d.mean().item<double>(), 1e-12);
  EXPECT_NEAR(n.std[0], (d - d.mean()).pow(2).mean().sqrt().item<double>(), 1e-9);
  std::printf("Normalizer::fit on %lld images of 28x28: %.2f ms\n", (long long)N, ms);
}

// ---------------------------------------------------------------------------------------------
// Loader

std::vector<Batch> all_batches(const Split& s, const Normalizer& n, const LoaderOptions& o,
                               int64_t epoch) {
  Loader l(s, n, o, epoch);
  std::vector<Batch> out;
  Batch b;
  while (l.next(b)) out.push_back(b);
  EXPECT_EQ(static_cast<int64_t>(out.size()), l.num_batches());
  return out;
}

Split random_split(int64_t n, int64_t c, int64_t h, int64_t w) {
  torch::manual_seed(1);
  Split s;
  s.images = torch::randint(1, 256, {n, c, h, w}, torch::kLong).to(torch::kUInt8);  // no zeros
  s.labels = torch::randint(0, 10, {n}, torch::kLong);
  return s;
}

// Every example exactly once per epoch, with and without shuffling and augmentation, over
// several epochs; drop_last leaves out exactly the final short batch; `start` begins the epoch's
// order at that position.
TEST(Loader, CoversEveryIndexOncePerEpoch) {
  const Split s = random_split(103, 2, 5, 6);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 10;
  o.shuffle = true;
  o.seed = 11;
  const auto batches = all_batches(s, n, o, /*epoch=*/0);
  ASSERT_EQ(batches.size(), 11u);
  EXPECT_EQ(batches.back().images.size(0), 3);
  std::vector<int> seen(103, 0);
  for (const auto& b : batches) {
    ASSERT_EQ(b.images.dim(), 4);
    EXPECT_EQ(b.images.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(b.labels, s.labels.index_select(0, b.index)));
    // No augmentation: exactly the normalised images at those positions.
    EXPECT_TRUE(torch::equal(b.images, n.apply(s.images.index_select(0, b.index))));
    for (int64_t i = 0; i < b.index.size(0); ++i) ++seen[b.index[i].item<int64_t>()];
  }
  for (int i = 0; i < 103; ++i) EXPECT_EQ(seen[i], 1) << i;
  // Shuffled: not the identity order.
  EXPECT_FALSE(torch::equal(batches[0].index, torch::arange(10, torch::kLong)));
  // Unshuffled: in order.
  o.shuffle = false;
  const auto plain = all_batches(s, n, o, 0);
  EXPECT_TRUE(torch::equal(plain[3].index, torch::arange(30, 40, torch::kLong)));

  // Augmented, shuffled, several epochs, with and without drop_last: each example once per
  // epoch (drop_last: all but the 3 at the end of that epoch's order), labels still its own.
  o.shuffle = true;
  o.augment = true;
  o.pad = 2;
  for (bool drop_last : {false, true}) {
    o.drop_last = drop_last;
    for (int64_t epoch : {0, 1, 7}) {
      SCOPED_TRACE("epoch " + std::to_string(epoch) + (drop_last ? " drop_last" : ""));
      std::vector<int> count(103, 0);
      int64_t total = 0;
      for (const auto& b : all_batches(s, n, o, epoch)) {
        EXPECT_TRUE(torch::equal(b.labels, s.labels.index_select(0, b.index)));
        for (int64_t i = 0; i < b.index.size(0); ++i) ++count[b.index[i].item<int64_t>()], ++total;
      }
      EXPECT_EQ(total, drop_last ? 100 : 103);
      for (int i = 0; i < 103; ++i) EXPECT_LE(count[i], 1) << i;
    }
  }
  // start = 40: the positions 40.. of the same epoch's order, batch boundaries from there.
  o.drop_last = false;
  o.augment = false;
  const auto whole = all_batches(s, n, o, 2);
  std::vector<int64_t> order;
  for (const auto& b : whole)
    for (int64_t i = 0; i < b.index.size(0); ++i) order.push_back(b.index[i].item<int64_t>());
  o.start = 40;
  std::vector<int64_t> rest;
  for (const auto& b : all_batches(s, n, o, 2))
    for (int64_t i = 0; i < b.index.size(0); ++i) rest.push_back(b.index[i].item<int64_t>());
  EXPECT_EQ(rest, std::vector<int64_t>(order.begin() + 40, order.end()));
}

// The order is a function of (seed, epoch): the same pair gives the same batches bit for bit,
// another epoch or another seed another permutation.
TEST(Loader, SameSeedAndEpochGiveIdenticalBatches) {
  const Split s = random_split(64, 1, 8, 8);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 16;
  o.shuffle = true;
  o.augment = true;
  o.pad = 2;
  o.seed = 5;
  const auto a = all_batches(s, n, o, 3), b = all_batches(s, n, o, 3);
  const auto c = all_batches(s, n, o, 4);
  o.seed = 6;
  const auto d = all_batches(s, n, o, 3);
  ASSERT_EQ(a.size(), 4u);
  auto order_of = [](const std::vector<Batch>& bs) {
    std::vector<int64_t> out;
    for (const auto& x : bs)
      for (int64_t i = 0; i < x.index.size(0); ++i) out.push_back(x.index[i].item<int64_t>());
    return out;
  };
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].index, b[i].index)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels)) << "batch " << i;
  }
  // another epoch or seed: another permutation (most positions differ, as for random orders)
  for (const auto* other : {&c, &d}) {
    const auto x = order_of(a), y = order_of(*other);
    int same = 0;
    for (size_t i = 0; i < x.size(); ++i) same += x[i] == y[i];
    EXPECT_LT(same, 16) << "of 64 positions";
    EXPECT_TRUE(std::is_permutation(x.begin(), x.end(), y.begin()));
  }
  // Same order but different epochs also augment differently.
  o.shuffle = false;
  o.seed = 5;
  const auto e3 = all_batches(s, n, o, 3), e4 = all_batches(s, n, o, 4);
  EXPECT_TRUE(torch::equal(e3[0].index, e4[0].index));
  EXPECT_FALSE(torch::equal(e3[0].images, e4[0].images));
}

TEST(Loader, FlipOnlyEqualsTorchFlip) {
  const Split s = random_split(200, 3, 4, 7);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 64;
  o.augment = true;
  o.pad = 0;
  int flipped = 0, kept = 0;
  for (const auto& b : all_batches(s, n, o, 0)) {
    const torch::Tensor orig = n.apply(s.images.index_select(0, b.index));  // (B, C, H, W)
    const torch::Tensor flip = torch::flip(orig, {3});
    for (int64_t i = 0; i < b.images.size(0); ++i) {
      const bool same = torch::equal(b.images[i], orig[i]);
      const bool flp = torch::equal(b.images[i], flip[i]);
      ASSERT_TRUE(same || flp) << "sample " << i;
      flipped += flp;
      kept += same;
    }
  }
  EXPECT_GT(flipped, 70);  // ~100 of 200 each way
  EXPECT_GT(kept, 70);
}

// torchvision's RandomCrop(size, padding=pad) then RandomHorizontalFlip, written out with loops on
// uint8 pixels: zero padding, the window at (top, left) of the padded image, then the mirror.
torch::Tensor crop_then_flip(const torch::Tensor& img, int64_t pad, int64_t top, int64_t left, bool flip) {
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2);
  torch::Tensor out = torch::zeros({C, H, W}, torch::kUInt8);
  auto src = img.accessor<uint8_t, 3>();
  auto dst = out.accessor<uint8_t, 3>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t sy = top + y - pad, sx = left + x - pad;  // in the unpadded image
        const uint8_t v = sy >= 0 && sy < H && sx >= 0 && sx < W ? src[c][sy][sx] : 0;
        dst[c][y][flip ? W - 1 - x : x] = v;
      }
  return out;
}

// A known image whose every pixel is distinct (1 + its index: no crop of one offset and flip
// equals another's): each augmented sample equals the direct computation above for exactly one
// (top, left, flip), and over the epoch every offset and both flips occur.
TEST(Loader, CropAndFlipEqualADirectComputation) {
  const int64_t pad = 2, C = 2, H = 6, W = 5;
  Split s;
  s.images = (torch::arange(C * H * W, torch::kLong) + 1).to(torch::kUInt8).view({1, C, H, W}).repeat({600, 1, 1, 1});
  s.labels = torch::zeros({600}, torch::kLong);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 64;
  o.augment = true;
  o.pad = pad;
  o.seed = 3;
  std::vector<torch::Tensor> candidates;  // normalised, per (top, left, flip)
  std::vector<std::tuple<int64_t, int64_t, bool>> params;
  for (int64_t top = 0; top <= 2 * pad; ++top)
    for (int64_t left = 0; left <= 2 * pad; ++left)
      for (bool flip : {false, true}) {
        candidates.push_back(n.apply(crop_then_flip(s.images[0], pad, top, left, flip).unsqueeze(0))[0]);
        params.emplace_back(top, left, flip);
      }
  std::map<std::tuple<int64_t, int64_t, bool>, int> seen;
  for (const auto& b : all_batches(s, n, o, 1))
    for (int64_t i = 0; i < b.images.size(0); ++i) {
      int matches = 0;
      for (size_t c = 0; c < candidates.size(); ++c)
        if (torch::equal(b.images[i], candidates[c])) ++matches, ++seen[params[c]];
      ASSERT_EQ(matches, 1) << "sample " << b.index[i].item<int64_t>() << " is no crop-then-flip of the image";
    }
  EXPECT_EQ(seen.size(), candidates.size()) << "every (top, left, flip) of 25 x 2 occurs in 600 samples";
  int flips = 0;
  for (const auto& [p, count] : seen) flips += std::get<2>(p) ? count : 0;
  EXPECT_NEAR(flips, 300, 60);  // Binomial(600, 1/2): sd 12
  // the flip-only and crop-only settings are the special cases
  o.flip = false;
  for (const auto& b : all_batches(s, n, o, 1))
    for (int64_t i = 0; i < b.images.size(0); ++i) {
      bool found = false;
      for (size_t c = 0; c < candidates.size() && !found; ++c)
        found = !std::get<2>(params[c]) && torch::equal(b.images[i], candidates[c]);
      ASSERT_TRUE(found) << "flip = false gave a flipped sample";
    }
}

TEST(Loader, CropMatchesZeroPaddedReference) {
  const int64_t pad = 3, H = 6, W = 5;
  const Split s = random_split(150, 2, H, W);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 50;
  o.augment = true;
  o.flip = false;
  o.pad = pad;
  // Pad the uint8 images with zeros (as torchvision does), then normalise: padding is a black
  // pixel, -mean/std, not 0 in the normalised domain.
  const torch::Tensor padded =
      n.apply(torch::constant_pad_nd(s.images, {pad, pad, pad, pad}, 0));  // (N, C, H+2p, W+2p)
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (const auto& b : all_batches(s, n, o, 2)) {
    ASSERT_EQ(b.images.sizes(), (std::vector<int64_t>{50, 2, H, W}));
    for (int64_t i = 0; i < b.images.size(0); ++i) {
      const torch::Tensor src = padded[b.index[i].item<int64_t>()];
      bool found = false;
      for (int64_t top = 0; top <= 2 * pad && !found; ++top)
        for (int64_t left = 0; left <= 2 * pad && !found; ++left)
          if (torch::equal(b.images[i], src.narrow(1, top, H).narrow(2, left, W))) {
            found = true;
            offsets.insert({top, left});
          }
      ASSERT_TRUE(found) << "sample " << i << " is no crop of the zero-padded image";
    }
  }
  EXPECT_GT(offsets.size(), 30u);  // of 49 possible offsets, with 150 samples
  EXPECT_TRUE(offsets.count({0, 0}) || offsets.count({2 * pad, 2 * pad}) ||
              offsets.count({0, 2 * pad}) || offsets.count({2 * pad, 0}));
}

TEST(Loader, DropLastAndBadOptions) {
  const Split s = random_split(103, 1, 4, 4);
  const Normalizer n = Normalizer::fit(s.images);
  LoaderOptions o;
  o.batch_size = 10;
  o.drop_last = true;
  o.shuffle = true;
  const auto b = all_batches(s, n, o, 0);
  ASSERT_EQ(b.size(), 10u);
  for (const auto& x : b) EXPECT_EQ(x.images.size(0), 10);
  EXPECT_EQ(Loader(s, n, o, 0).num_batches(), 10);
  o.drop_last = false;
  EXPECT_EQ(Loader(s, n, o, 0).num_batches(), 11);
  o.batch_size = 0;
  expect_thrown_user_error([&] { Loader(s, n, o, 0); }, {"batch size 0"});
  o.batch_size = 8;
  o.augment = true;
  o.pad = -1;
  expect_thrown_user_error([&] { Loader(s, n, o, 0); }, {"padding -1"});
  // An empty split gives no batches.
  Split empty;
  empty.images = s.images.narrow(0, 0, 0);
  empty.labels = s.labels.narrow(0, 0, 0);
  Batch out;
  EXPECT_FALSE(Loader(empty, n, LoaderOptions{}, 0).next(out));
}

// ---------------------------------------------------------------------------------------------
// The real data set, where installed

TEST(RealData, FashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " is not installed";
  const auto t0 = std::chrono::steady_clock::now();
  const Dataset ds = load_dataset(parse_data_spec("fashion-mnist"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("loaded Fashion-MNIST in %.2f s\n", s);
  ASSERT_EQ(ds.train.size(), 60000);
  ASSERT_EQ(ds.test.size(), 10000);
  EXPECT_EQ(ds.train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(ds.test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_TRUE(
      torch::equal(torch::bincount(ds.train.labels), torch::full({10}, 6000, torch::kLong)));
  EXPECT_TRUE(torch::equal(torch::bincount(ds.test.labels), torch::full({10}, 1000, torch::kLong)));
  const Normalizer n = Normalizer::fit(ds.train.images);
  // Known Fashion-MNIST statistics: mean 0.2860, std 0.3530.
  EXPECT_NEAR(n.mean[0], 0.2860, 5e-4);
  EXPECT_NEAR(n.std[0], 0.3530, 5e-4);
}
