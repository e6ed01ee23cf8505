// Tests of src/imaging against Pillow 9.4 and torchvision 0.14 themselves: tests/data/
// imaging_fixtures.py (run with /usr/bin/python3) writes JPEG / PNG / hostile files and what
// Pillow and torchvision make of each into a fresh temporary directory; we compare byte for byte.
#include <gtest/gtest.h>

#include <ctime>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <jpeglib.h>  // after <cstdio>

#include "core/errors.h"
#include "imaging/decode.h"
#include "imaging/resize.h"
#include "imaging/transforms.h"
#include "testing.h"

namespace fs = std::filesystem;
namespace ut = unravel::testing;
using namespace unravel::imaging;
using Line = std::vector<std::string>;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Largest absolute difference of two byte strings (-1: sizes differ).
int max_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return -1;
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

std::string make_temp_dir() {
  std::string templ = (fs::temp_directory_path() / "unravel_imaging_XXXXXX").string();
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
  return templ;
}

// Removes a temporary directory on every way out of a test.
struct RemoveDir {
  std::string path;
  ~RemoveDir() {
    if (!path.empty()) fs::remove_all(path);
  }
};

// Runs the fixture script into a fresh temporary directory (the caller removes it).
std::string make_fixtures(const std::string& args) {
  const std::string templ = make_temp_dir();
  const std::string cmd = "/usr/bin/python3 " UNRAVEL_TEST_SOURCE_DIR
                          "/tests/data/imaging_fixtures.py " + templ + args + " 2>" + templ +
                          "/log.txt";
  if (std::system(cmd.c_str()) != 0) {
    throw std::runtime_error("tests/data/imaging_fixtures.py failed, see " + templ + "/log.txt");
  }
  return templ;
}

// Every file and oracle (the Python script, torch included, takes ~5 s: each TEST_F of this
// fixture is one ctest process, so they are few and large).
class ImagingOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_NO_THROW(dir_ = make_fixtures(""));
    std::ifstream manifest(dir_ + "/manifest.txt");
    for (std::string text; std::getline(manifest, text);) {
      std::istringstream in(text);
      Line l;
      for (std::string field; in >> field;) l.push_back(field);
      if (!l.empty()) lines_.push_back(l);
    }
    ASSERT_GT(lines_.size(), 300u);
  }
  static void TearDownTestSuite() {
    if (!dir_.empty() && !::getenv("UNRAVEL_KEEP_FIXTURES")) fs::remove_all(dir_);
  }
  static std::string path(const std::string& name) { return dir_ + "/" + name; }
  static std::vector<Line> lines(const std::string& kind) {
    std::vector<Line> out;
    for (const Line& l : lines_) {
      if (l[0] == kind) out.push_back(l);
    }
    return out;
  }
  // Every decoded file once (Pillow's bytes checked in DecodeMatchesPillow).
  const Image& decoded(const std::string& name) {
    auto it = cache_.find(name);
    if (it == cache_.end()) it = cache_.emplace(name, decode_image_file(path(name))).first;
    return it->second;
  }
  void random_resized_crops();  // part of TransformsMatchTorchvision
  void pixel_limits();          // part of HostileFilesAndLimits
  static std::string dir_;
  static std::vector<Line> lines_;
  std::map<std::string, Image> cache_;
};
std::string ImagingOracle::dir_;
std::vector<Line> ImagingOracle::lines_;

void expect_image(const Image& img, const std::string& expected_file, int w, int h, int* worst,
                  const std::string& what) {
  EXPECT_EQ(img.width, w) << what;
  EXPECT_EQ(img.height, h) << what;
  const int d = max_diff(img.pixels, read_bytes(expected_file));
  EXPECT_EQ(d, 0) << what << ": largest byte difference " << d;
  *worst = std::max(*worst, d);
}

}  // namespace

TEST_F(ImagingOracle, DecodeMatchesPillow) {
  int worst = 0, n = 0;
  for (const Line& l : lines("decode")) {  // decode FILE EXPECTED W H
    const Image& img = decoded(l[1]);
    expect_image(img, path(l[2]), std::stoi(l[3]), std::stoi(l[4]), &worst, l[1]);
    const std::vector<uint8_t> bytes = read_bytes(path(l[1]));
    EXPECT_EQ(decode_image(bytes.data(), bytes.size(), l[1]).pixels, img.pixels) << l[1];
    ++n;
  }
  EXPECT_EQ(n, 43);
  std::printf("decoded %d JPEG / PNG files, largest difference to Pillow: %d\n", n, worst);
  // strict = false: the same verdict as Pillow on damaged files, and the same pixels when it
  // decodes them (corrupt entropy data, a bad CRC in IDAT, no IEND)
  int accepted = 0;
  DecodeOptions lenient;
  lenient.strict = false;
  for (const Line& l : lines("lenient")) {  // lenient FILE EXPECTED|-
    if (l[2] == "-") {
      EXPECT_THROW(decode_image_file(path(l[1]), lenient), unravel::UserError) << l[1];
      continue;
    }
    Image img;
    ASSERT_NO_THROW(img = decode_image_file(path(l[1]), lenient)) << l[1];
    EXPECT_EQ(max_diff(img.pixels, read_bytes(path(l[2]))), 0) << l[1];
    ++accepted;
  }
  // corrupt_marker, corrupt_bytes, corrupt_random, bad_crc_only_idat, no_iend
  EXPECT_EQ(accepted, 5);
}

TEST_F(ImagingOracle, TransformsMatchTorchvision) {
  int worst = 0;
  for (const Line& l : lines("resize")) {  // resize FILE S EXPECTED W H
    const Image r = resize_shorter(decoded(l[1]), std::stoi(l[2]));
    expect_image(r, path(l[3]), std::stoi(l[4]), std::stoi(l[5]), &worst, "Resize " + l[3]);
  }
  for (const Line& l : lines("resize_crop")) {  // resize_crop FILE S C EXPECTED W H
    const int s = std::stoi(l[2]), c = std::stoi(l[3]), w = std::stoi(l[5]), h = std::stoi(l[6]);
    const Image& img = decoded(l[1]);
    expect_image(resize_center_crop(img, s, c, c), path(l[4]), w, h, &worst, "fused " + l[4]);
    expect_image(center_crop(resize_shorter(img, s), c, c), path(l[4]), w, h, &worst, l[4]);
  }
  for (const Line& l : lines("crop")) {  // crop FILE CH CW EXPECTED W H  (CenterCrop, padding)
    const Image c = center_crop(decoded(l[1]), std::stoi(l[2]), std::stoi(l[3]));
    expect_image(c, path(l[4]), std::stoi(l[5]), std::stoi(l[6]), &worst, "CenterCrop " + l[4]);
  }
  for (const Line& l : lines("resize_wh")) {  // resize_wh FILE W H EXPECTED  (PIL resize)
    const int w = std::stoi(l[2]), h = std::stoi(l[3]);
    expect_image(resize_bilinear(decoded(l[1]), w, h), path(l[4]), w, h, &worst, l[4]);
  }
  std::printf("resize / crop: largest byte difference to torchvision: %d\n", worst);
  double worst_float = 0;
  int n_float = 0;
  for (const Line& l : lines("normalize")) {  // normalize FILE S C EXPECTED.f32
    const int c = std::stoi(l[3]);
    const Image img = resize_center_crop(decoded(l[1]), std::stoi(l[2]), c, c);
    std::vector<float> mine(3 * static_cast<size_t>(c) * c), theirs(mine.size());
    to_normalized_chw(img, Normalization{}, mine.data());
    const std::vector<uint8_t> raw = read_bytes(path(l[4]));
    ASSERT_EQ(raw.size(), theirs.size() * 4) << l[4];
    std::memcpy(theirs.data(), raw.data(), raw.size());  // little-endian float32, as here
    for (size_t i = 0; i < mine.size(); ++i) {
      worst_float = std::max(worst_float, double(std::fabs(mine[i] - theirs[i])));
    }
    ++n_float;
  }
  EXPECT_GE(n_float, 40);
  EXPECT_LE(worst_float, 1e-6);
  std::printf("ToTensor + Normalize: %d crops, largest difference %.3g\n", n_float, worst_float);
  random_resized_crops();
}

void ImagingOracle::random_resized_crops() {
  // rrc W H SCALE_MIN SCALE_MAX RATIO_MIN RATIO_MAX I J H W U1 U2 ...: get_params of torchvision
  // 0.14 run on these uniforms (its RNG replaced); the fallback cases included
  int n = 0;
  for (const Line& l : lines("rrc")) {
    RandomResizedCropOptions o;
    o.scale_min = std::stod(l[3]), o.scale_max = std::stod(l[4]);
    o.ratio_min = std::stod(l[5]), o.ratio_max = std::stod(l[6]);
    size_t next = 11;
    auto uniform = [&] { return std::stod(l.at(next++)); };
    const CropBox b = random_resized_crop_box(std::stoi(l[1]), std::stoi(l[2]), o, uniform);
    EXPECT_EQ(b.top, std::stoi(l[7])) << n;
    EXPECT_EQ(b.left, std::stoi(l[8])) << n;
    EXPECT_EQ(b.height, std::stoi(l[9])) << n;
    EXPECT_EQ(b.width, std::stoi(l[10])) << n;
    ++n;
  }
  EXPECT_EQ(n, 17);
  int worst = 0;
  std::map<std::string, Image> crops;
  for (const Line& l : lines("resized_crop")) {  // resized_crop FILE I J H W SIZE EXPECTED
    const CropBox b{std::stoi(l[2]), std::stoi(l[3]), std::stoi(l[4]), std::stoi(l[5])};
    const int s = std::stoi(l[6]);
    crops[l[7]] = resized_crop(decoded(l[1]), b, s, s);
    expect_image(crops[l[7]], path(l[7]), s, s, &worst, l[7]);
  }
  for (const Line& l : lines("hflip")) {  // hflip CROP W H EXPECTED
    ASSERT_EQ(crops.count(l[1]), 1u);
    Image f = crops[l[1]];
    hflip(f);
    expect_image(f, path(l[4]), std::stoi(l[2]), std::stoi(l[3]), &worst, l[4]);
  }
  EXPECT_EQ(crops.size(), 6u);
}

TEST_F(ImagingOracle, HostileFilesAndLimits) {
  int n = 0;
  for (const Line& l : lines("reject")) {  // reject FILE EXPECTED-TEXT...
    std::string expected;
    for (size_t i = 2; i < l.size(); ++i) expected += (i > 2 ? " " : "") + l[i];
    const auto start = std::clock();  // CPU time: a busy machine cannot fail it
    try {
      decode_image_file(path(l[1]));
      ADD_FAILURE() << l[1] << " was decoded";
    } catch (const unravel::UserError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind(path(l[1]) + ": ", 0), 0u) << m;  // names the file first
      EXPECT_NE(m.find(expected), std::string::npos) << m << " lacks " << expected;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_LT(m.size() - path(l[1]).size(), 160u) << m;
    }
    const double s = static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC;
    EXPECT_LT(s, ut::cpu_budget(0.5)) << l[1];
    ++n;
  }
  EXPECT_EQ(n, 22);
  EXPECT_THROW(decode_image_file(path("no such file.jpg")), unravel::UserError);
  EXPECT_THROW(decode_image_file(dir_), unravel::UserError);  // a directory
  DecodeOptions small;
  small.max_file_bytes = 1000;
  EXPECT_THROW(decode_image_file(path("q90.jpg"), small), unravel::UserError);
  pixel_limits();
}

void ImagingOracle::pixel_limits() {
  DecodeOptions o;
  o.max_pixels = 500 * 375;
  EXPECT_EQ(decode_image_file(path("q90.jpg"), o).width, 500);
  EXPECT_EQ(decode_image_file(path("progressive.jpg"), o).height, 375);
  o.max_pixels = 500 * 375 - 1;
  for (const char* name : {"q90.jpg", "progressive.jpg"}) {
    try {
      decode_image_file(path(name), o);
      ADD_FAILURE() << name;
    } catch (const unravel::UserError& e) {
      EXPECT_EQ(std::string(e.what()), path(name) + ": image of 500 x 375 pixels exceeds the "
                                                    "limit of 187499 pixels");
    }
  }
  o.max_pixels = 61 * 43 - 1;
  EXPECT_THROW(decode_image_file(path("rgb8_interlaced.png"), o), unravel::UserError);
  // libjpeg's default progressive script has 10 scans for YCbCr
  DecodeOptions scans;
  scans.max_jpeg_scans = 10;
  EXPECT_EQ(decode_image_file(path("progressive.jpg"), scans).pixels,
            decode_image_file(path("progressive.jpg")).pixels);
  scans.max_jpeg_scans = 9;
  try {
    decode_image_file(path("progressive.jpg"), scans);
    ADD_FAILURE();
  } catch (const unravel::UserError& e) {
    EXPECT_EQ(std::string(e.what()),
              path("progressive.jpg") + ": progressive JPEG of more than 9 scans (the limit)");
  }
  EXPECT_NO_THROW(decode_image_file(path("q90.jpg"), scans));  // one scan
}

// Decode + Resize(256) + CenterCrop(224) of a 500 x 375 JPEG at quality 90, one thread: a
// measurement (printed), not a test of speed. Pillow's encoder alone, no torch: quick.
TEST(ImagingSpeed, ThroughputOneThread) {
  RemoveDir dir;
  ASSERT_NO_THROW(dir.path = make_fixtures(" --speed"));
  const std::vector<uint8_t> bytes = read_bytes(dir.path + "/q90.jpg");
  ASSERT_GT(bytes.size(), 10000u);
  const Image img = decode_image(bytes.data(), bytes.size(), "q90.jpg");
  const std::vector<uint8_t> expected = center_crop(resize_shorter(img, 256), 224, 224).pixels;
  using clock = std::chrono::steady_clock;
  auto rate = [&](bool fused, int n) {
    const auto start = clock::now();
    for (int i = 0; i < n; ++i) {
      const Image img = decode_image(bytes.data(), bytes.size(), "q90.jpg");
      const Image crop = fused ? resize_center_crop(img, 256, 224, 224)
                               : center_crop(resize_shorter(img, 256), 224, 224);
      EXPECT_EQ(crop.pixels, expected);
    }
    return n / std::chrono::duration<double>(clock::now() - start).count();
  };
  auto time_of = [&](int n, auto f) {
    const auto start = clock::now();
    for (int i = 0; i < n; ++i) f();
    return std::chrono::duration<double>(clock::now() - start).count() / n * 1e3;
  };
  const double decode_ms = time_of(60, [&] { decode_image(bytes.data(), bytes.size(), "x"); });
  const double resize_ms = time_of(60, [&] { resize_shorter(img, 256); });
  const double fused = rate(true, 60), plain = rate(false, 60);
  std::printf("500x375 q90 JPEG, one thread: decode %.2f ms, Resize(256) %.2f ms; decode + "
              "resize + crop %.0f images/s (%.0f without the fused crop)\n",
              decode_ms, resize_ms, fused, plain);
}

// A YCCK JPEG (Adobe transform 2, what Photoshop writes for CMYK): Pillow cannot write one, so
// libjpeg's encoder makes it here; Pillow decodes it for the oracle.
TEST(ImagingYcck, MatchesPillow) {
  RemoveDir guard;
  ASSERT_NO_THROW(guard.path = make_temp_dir());
  const std::string& dir = guard.path;
  const int w = 37, h = 23;
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&c, &out, &out_size);
  c.image_width = w, c.image_height = h, c.input_components = 4, c.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, JCS_YCCK);
  jpeg_set_quality(&c, 85, TRUE);
  jpeg_start_compress(&c, TRUE);
  std::vector<uint8_t> row(w * 4);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w * 4; ++x) row[x] = static_cast<uint8_t>(x * 7 + y * 13 + (x % 4) * 50);
    JSAMPROW r = row.data();
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  const std::vector<uint8_t> bytes(out, out + out_size);
  jpeg_destroy_compress(&c);
  std::free(out);
  std::ofstream(dir + "/ycck.jpg", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::string cmd = "cd " + dir + " && /usr/bin/python3 -c \"from PIL import Image; "
      "im = Image.open('ycck.jpg'); assert im.info['adobe_transform'] == 2; "
      "open('ycck.rgb', 'wb').write(im.convert('RGB').tobytes())\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::vector<uint8_t> expected = read_bytes(dir + "/ycck.rgb");
  const Image img = decode_image(bytes.data(), bytes.size(), "ycck.jpg");
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(max_diff(img.pixels, expected), 0);
}

TEST(Imaging, SniffsMagicBytesNotNames) {
  const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  EXPECT_EQ(sniff_format(jpeg, 4), ImageFormat::Jpeg);
  EXPECT_EQ(sniff_format(jpeg, 2), ImageFormat::Unknown);
  EXPECT_EQ(sniff_format(png, 8), ImageFormat::Png);
  EXPECT_EQ(sniff_format(png, 7), ImageFormat::Unknown);
  EXPECT_EQ(sniff_format(gif, 6), ImageFormat::Unknown);
  EXPECT_EQ(sniff_format(nullptr, 0), ImageFormat::Unknown);
  try {
    decode_image(gif, sizeof gif, "x.png");
    ADD_FAILURE();
  } catch (const unravel::UserError& e) {
    EXPECT_STREQ(e.what(), "x.png: not a JPEG or PNG image");
  }
}

TEST(Imaging, TorchvisionSizeRules) {
  // int(size * long / short), shorter side by w <= h
  EXPECT_EQ(resized_shorter_size(500, 375, 256).width, 341);  // int(256 * 500 / 375) = 341
  EXPECT_EQ(resized_shorter_size(375, 500, 256).height, 341);
  EXPECT_EQ(resized_shorter_size(100, 100, 7).width, 7);
  EXPECT_EQ(resized_shorter_size(3, 517, 256).height, 44117);  // int(44117.33)
  EXPECT_THROW(resized_shorter_size(1, 100000, 2000), unravel::UserError);  // 2e8 pixels
  // CenterCrop offsets: int(round((H - h) / 2.0)), half to even
  Image img(5, 4);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i);
  const Image c = center_crop(img, 1, 2);  // top = round(1.5) = 2, left = round(1.5) = 2
  EXPECT_EQ(c.pixels[0], img.row(2)[6]);
  const Image d = center_crop(img, 3, 4);  // top = round(0.5) = 0, left = round(0.5) = 0
  EXPECT_EQ(d.pixels[0], img.row(0)[0]);
  const Image e = center_crop(img, 7, 5);  // pads 1 row on top, 2 below
  EXPECT_EQ(e.row(0)[0], 0);
  EXPECT_EQ(e.row(1)[0], img.row(0)[0]);
  EXPECT_EQ(e.row(5)[0], 0);
}

TEST(Imaging, ResizeWindowEqualsResizeThenCrop) {
  Image img(37, 29);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 7919);
  for (auto [w, h] : {std::pair{20, 15}, {37, 60}, {80, 29}, {37, 29}, {5, 90}}) {
    const Image full = resize_bilinear(img, w, h);
    const Window win{w / 4, h / 3, w - w / 4 - w / 5, h - h / 3};
    const Image part = resize_bilinear_window(img, w, h, win);
    EXPECT_EQ(part.pixels, crop(full, win.top, win.left, win.height, win.width).pixels) << w;
  }
  EXPECT_THROW(resize_bilinear_window(img, 10, 10, Window{5, 5, 6, 1}), std::logic_error);
}

TEST(Imaging, HflipMirrorsRows) {
  Image img(3, 2);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i);
  hflip(img);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{6, 7, 8, 3, 4, 5, 0, 1, 2, 15, 16, 17, 12, 13, 14,
                                              9, 10, 11}));
}
