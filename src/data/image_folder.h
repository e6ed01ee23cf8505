// --data imagefolder:DIR[:OPTS]: images in torchvision's ImageFolder layout, streamed.
//
// Layout: DIR/CLASS/**/FILE, classes sorted by name to labels 0..K-1, files of a class in
// torchvision's order (os.walk sorted, then file names sorted), with torchvision's image
// extensions (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp, any case; JPEG and PNG can be
// decoded, other files fail as unreadable). When DIR/train or DIR/val exist they are the
// training and test sets (the classes are those of train; a missing one is replaced by the
// other); otherwise DIR is both. A flat folder of images with labels=FILE (CSV lines
// "file,label", label a class index or a class name, file relative to the folder) is a split too:
// ImageNet's validation images often ship that way.
//
// Options (comma-separated KEY=VALUE after the last ':'):
//   resize=256       shorter side resized to this (PIL bilinear, antialiased), 0: no resize
//   crop=224         centre crop (evaluation) / random resized crop (training) to crop x crop
//   labels=FILE      CSV file,label for a flat split (see above)
//   mean=0.485/0.456/0.406, std=0.229/0.224/0.225: the normalisation (ImageNet's by default)
//   max_pixels=50000000  images with more pixels (per their header) are refused before decoding
//   skip_bad=1       unreadable files are skipped (and counted) instead of stopping the run
//   lenient=1        accept damage that Pillow accepts (default: any corruption is an error)
// Evaluation transform: torchvision's Resize(resize) + CenterCrop(crop) + ToTensor + Normalize,
// byte for byte. Training: RandomResizedCrop(crop, scale 0.08-1, ratio 3/4-4/3) + horizontal
// flip, seeded by (seed, epoch, file) so that resumed runs replay the same crops.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace unravel::data {

struct ImageFolderOptions {
  int resize = 256;
  int crop = 224;
  std::string labels_file;
  std::vector<double> mean{0.485, 0.456, 0.406}, std{0.229, 0.224, 0.225};
  int64_t max_pixels = 50000000;
  bool skip_bad = false;
  bool lenient = false;
};
// UserError naming the option for bad keys or values.
ImageFolderOptions parse_image_folder_options(const std::string& text);

// One split's files in torchvision's order with their labels, and the class names. UserError for
// a missing folder, no classes, an empty class folder, a bad labels file.
struct FolderListing {
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;
};
FolderListing list_image_folder(const std::string& dir, const std::vector<std::string>& classes,
                                const std::string& labels_file);

}  // namespace unravel::data
