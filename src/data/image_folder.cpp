// Image folders: listing in torchvision's order, labels files, and the stream that decodes and
// transforms one file at a time (see image_folder.h).
#include "data/image_folder.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "core/errors.h"
#include "core/random.h"
#include "core/text.h"
#include "core/util.h"
#include "data/formats.h"
#include "data/stream.h"
#include "imaging/decode.h"
#include "imaging/transforms.h"

namespace fs = std::filesystem;

namespace unravel::data {

namespace {

constexpr size_t kMaxFiles = 50000000;  // more entries than this in one split: refused

bool has_image_extension(const std::string& name) {
  static const char* exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : exts) {
    const size_t n = std::strlen(e);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, e) == 0) return true;
  }
  return false;
}

std::vector<double> parse_triple(const std::string& value, const std::string& what) {
  std::vector<double> out;
  for (std::string_view part : split(value, '/')) out.push_back(parse_number(part, what, -1e6, 1e6));
  if (out.size() != 3) throw UserError(fmt::format("{}: expected three values R/G/B, got '{}'", what, value));
  return out;
}

// Image files under `dir`, as torchvision walks them: sorted(os.walk(dir, followlinks=True)),
// each directory's file names sorted.
std::vector<std::string> walk_images(const fs::path& dir) {
  std::map<std::string, std::vector<std::string>> by_dir;  // directory path -> file names
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw UserError(fmt::format("{}: cannot list ({})", dir.string(), ec.message()));
  size_t seen = 0;
  for (; it != end; it.increment(ec)) {
    if (ec) throw UserError(fmt::format("{}: cannot list ({})", dir.string(), ec.message()));
    if (++seen > kMaxFiles) throw UserError(fmt::format("{}: more than {} entries", dir.string(), kMaxFiles));
    if (it->is_directory(ec)) continue;
    const fs::path p = it->path();
    if (has_image_extension(p.filename().string())) by_dir[p.parent_path().string()].push_back(p.filename().string());
  }
  std::vector<std::string> files;
  for (auto& [d, names] : by_dir) {
    std::sort(names.begin(), names.end());
    for (const auto& n : names) files.push_back((fs::path(d) / n).string());
  }
  return files;
}

std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> classes;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) classes.push_back(it->path().filename().string());
  if (ec) throw UserError(fmt::format("{}: cannot list ({})", dir.string(), ec.message()));
  std::sort(classes.begin(), classes.end());
  return classes;
}

// labels=FILE: "file,label" lines ('#' comments and a "file,label" header allowed).
FolderListing read_labels_file(const fs::path& dir, const std::string& path, std::vector<std::string> classes) {
  const std::string text = read_text_file(path);
  FolderListing out;
  std::map<std::string, int64_t> index;
  for (size_t k = 0; k < classes.size(); ++k) index[classes[k]] = static_cast<int64_t>(k);
  std::vector<std::pair<std::string, std::string>> rows;
  int line_no = 0;
  for (std::string_view line : split(text, '\n')) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t comma = line.rfind(',');
    if (comma == std::string_view::npos)
      throw UserError(fmt::format("{}:{}: expected 'file,label', got '{}'", path, line_no, elide_middle(line)));
    std::string file(trim(line.substr(0, comma))), label(trim(line.substr(comma + 1)));
    if (line_no == 1 && file == "file" && label == "label") continue;
    if (file.empty() || label.empty())
      throw UserError(fmt::format("{}:{}: empty file or label in '{}'", path, line_no, elide_middle(line)));
    rows.emplace_back(std::move(file), std::move(label));
  }
  if (rows.empty()) throw UserError(fmt::format("{}: no 'file,label' lines", path));
  const bool numeric = std::all_of(rows.begin(), rows.end(), [](const auto& r) {
    return r.second.find_first_not_of("0123456789") == std::string::npos && r.second.size() < 10;
  });
  if (classes.empty()) {  // class names from the file: sorted names, or 0..max for indices
    std::set<std::string> names;
    int64_t max_index = -1;
    for (const auto& r : rows) {
      if (numeric) max_index = std::max<int64_t>(max_index, std::stoll(r.second));
      else names.insert(r.second);
    }
    if (numeric)
      for (int64_t k = 0; k <= max_index; ++k) classes.push_back(std::to_string(k));
    else
      classes.assign(names.begin(), names.end());
    for (size_t k = 0; k < classes.size(); ++k) index[classes[k]] = static_cast<int64_t>(k);
  }
  for (const auto& [file, label] : rows) {
    int64_t y = -1;
    if (numeric) {
      y = std::stoll(label);
      if (y >= static_cast<int64_t>(classes.size()))
        throw UserError(fmt::format("{}: label {} of {} is not a class index (0..{})", path, label, file,
                                    classes.size() - 1));
    } else {
      auto it = index.find(label);
      if (it == index.end())
        throw UserError(fmt::format("{}: label '{}' of {} is not one of the {} classes", path, elide_middle(label),
                                    file, classes.size()));
      y = it->second;
    }
    out.files.push_back((dir / file).string());
    out.labels.push_back(y);
  }
  out.classes = std::move(classes);
  return out;
}

// Decodes and transforms one file per load() (the evaluation or the training transform).
class FolderStream : public ImageStream {
 public:
  FolderStream(std::vector<std::string> files, ImageFolderOptions o) : files_(std::move(files)), o_(std::move(o)) {
    decode_.max_pixels = o_.max_pixels;
    decode_.strict = !o_.lenient;
  }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int64_t channels() const override { return 3; }
  int64_t height() const override { return o_.crop; }
  int64_t width() const override { return o_.crop; }
  int64_t skipped() const override { return skipped_.load(); }
  std::string describe(int64_t item) const override { return files_.at(static_cast<size_t>(item)); }

  bool load(int64_t item, uint8_t* out, bool augment, uint64_t seed) const override {
    const std::string& path = files_.at(static_cast<size_t>(item));
    imaging::Image img;
    try {
      img = imaging::decode_image_file(path, decode_);
      if (augment) {
        Rng rng(seed);
        const imaging::CropBox box =
            imaging::random_resized_crop_box(img.width, img.height, {}, [&rng] { return rng.uniform(); });
        img = imaging::resized_crop(img, box, o_.crop, o_.crop);
        if (rng.coin()) imaging::hflip(img);
      } else if (o_.resize > 0) {
        img = imaging::resize_center_crop(img, o_.resize, o_.crop, o_.crop, o_.max_pixels);
      } else {
        img = imaging::center_crop(img, o_.crop, o_.crop);
      }
    } catch (const UserError& e) {
      if (!o_.skip_bad) throw;
      skipped_.fetch_add(1);
      return false;
    }
    // HWC -> CHW
    const int64_t plane = static_cast<int64_t>(o_.crop) * o_.crop;
    const uint8_t* src = img.pixels.data();
    for (int64_t p = 0; p < plane; ++p)
      for (int c = 0; c < 3; ++c) out[c * plane + p] = src[3 * p + c];
    return true;
  }

 private:
  std::vector<std::string> files_;
  ImageFolderOptions o_;
  imaging::DecodeOptions decode_;
  mutable std::atomic<int64_t> skipped_{0};
};

Split stream_split(const FolderListing& l, const ImageFolderOptions& o) {
  Split s;
  s.labels = torch::tensor(l.labels, torch::kLong);
  s.stream = std::make_shared<FolderStream>(l.files, o);
  s.rows = torch::arange(static_cast<int64_t>(l.files.size()), torch::kLong);
  return s;
}

}  // namespace

ImageFolderOptions parse_image_folder_options(const std::string& text) {
  ImageFolderOptions o;
  const std::string what = "--data imagefolder";
  for (const auto& [key, value] : parse_key_values(text, what)) {
    const std::string w = what + ": option " + key;
    if (key == "resize") o.resize = static_cast<int>(parse_int(value, w, 0, 8192));
    else if (key == "crop") o.crop = static_cast<int>(parse_int(value, w, 1, 8192));
    else if (key == "labels") o.labels_file = value;
    else if (key == "mean") o.mean = parse_triple(value, w);
    else if (key == "std") o.std = parse_triple(value, w);
    else if (key == "max_pixels") o.max_pixels = parse_int(value, w, 1, imaging::kDefaultMaxPixels);
    else if (key == "skip_bad") o.skip_bad = parse_int(value, w, 0, 1) == 1;
    else if (key == "lenient") o.lenient = parse_int(value, w, 0, 1) == 1;
    else
      throw UserError(fmt::format("{}: unknown option '{}' (valid: resize, crop, labels, mean, std, max_pixels, "
                                  "skip_bad, lenient)", what, elide_middle(key)));
  }
  for (double s : o.std)
    if (!(s > 0)) throw UserError(fmt::format("{}: std values must be > 0", what));
  if (o.resize > 0 && o.resize < o.crop)
    throw UserError(fmt::format("{}: resize={} is smaller than crop={}", what, o.resize, o.crop));
  return o;
}

FolderListing list_image_folder(const std::string& dir_text, const std::vector<std::string>& given_classes,
                                const std::string& labels_file) {
  const fs::path dir(dir_text);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError(fmt::format("{}: no such directory", dir_text));
  if (!labels_file.empty()) return read_labels_file(dir, labels_file, given_classes);
  const std::vector<std::string> found = class_folders(dir);
  if (found.empty())
    throw UserError(fmt::format("{}: no class folders (expected DIR/CLASS/IMAGE files, or labels=FILE)", dir_text));
  FolderListing out;
  out.classes = given_classes.empty() ? found : given_classes;
  std::map<std::string, int64_t> index;
  for (size_t k = 0; k < out.classes.size(); ++k) index[out.classes[k]] = static_cast<int64_t>(k);
  for (const std::string& c : found)
    if (!index.count(c))
      throw UserError(fmt::format("{}: class folder '{}' is not one of the training classes", dir_text, c));
  for (const std::string& c : found) {
    const std::vector<std::string> files = walk_images(dir / c);
    if (files.empty()) throw UserError(fmt::format("{}: class folder holds no image files", (dir / c).string()));
    for (const auto& f : files) {
      out.files.push_back(f);
      out.labels.push_back(index[c]);
    }
    if (out.files.size() > kMaxFiles) throw UserError(fmt::format("{}: more than {} images", dir_text, kMaxFiles));
  }
  return out;
}

Dataset load_image_folder(const DataSpec& spec) {
  const ImageFolderOptions o = parse_image_folder_options(spec.options);
  const fs::path dir(spec.where);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError(fmt::format("--data {}: no such directory", spec.str()));
  const bool has_train = fs::is_directory(dir / "train", ec), has_val = fs::is_directory(dir / "val", ec);
  Dataset ds;
  ds.spec = spec;
  FolderListing train, test;
  if (has_train || has_val) {
    // The labels file describes the flat split: val (ImageNet's layout), or train without val.
    const bool labels_for_val = has_val && !o.labels_file.empty();
    if (has_train) train = list_image_folder((dir / "train").string(), {}, labels_for_val ? "" : o.labels_file);
    if (has_val) test = list_image_folder((dir / "val").string(), train.classes, labels_for_val ? o.labels_file : "");
    if (!has_train) train = test;
    if (!has_val) test = train;
  } else {
    test = list_image_folder(dir.string(), {}, o.labels_file);
    train = test;
  }
  ds.class_names = train.classes.size() >= test.classes.size() ? train.classes : test.classes;
  ds.num_classes = std::max<int64_t>(2, static_cast<int64_t>(ds.class_names.size()));
  ds.channels = 3;
  ds.height = ds.width = o.crop;
  ds.train = stream_split(train, o);
  ds.test = stream_split(test, o);
  ds.normalization = Dataset::Norm{o.mean, o.std};
  return ds;
}

}  // namespace unravel::data
