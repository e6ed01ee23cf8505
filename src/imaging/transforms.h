// torchvision 0.14's image transforms on PIL images, up to the uint8 crop: Resize(int),
// CenterCrop, RandomResizedCrop, RandomHorizontalFlip (sizes and rounding rules as torchvision,
// pixels as Pillow 9.4), and the final ToTensor + Normalize into a caller's float buffer.
#pragma once
#include <array>
#include <cstdint>
#include <functional>

#include "imaging/decode.h"
#include "imaging/image.h"

namespace unravel::imaging {

struct Size {
  int width = 0;
  int height = 0;
};

// The output size of transforms.Resize(size) for an int size: the shorter side becomes `size`,
// the longer int(size * long / short) (Python's float division, truncated); w <= h counts as
// "width is the shorter side". Throws UserError when the result would exceed max_pixels.
Size resized_shorter_size(int width, int height, int size, int64_t max_pixels = kDefaultMaxPixels);
// transforms.Resize(size)(img): bilinear with Pillow's antialiasing; unchanged size -> a copy.
Image resize_shorter(const Image& img, int size, int64_t max_pixels = kDefaultMaxPixels);

// PIL's img.crop((left, top, left + width, top + height)): pixels outside the image are black.
Image crop(const Image& img, int top, int left, int height, int width);
// transforms.CenterCrop((height, width)): top = int(round((H - height) / 2.0)) with Python's
// round-half-even, left likewise; a crop larger than the image pads with zeros first, putting
// (crop - size) // 2 on the top / left and the rest on the bottom / right.
Image center_crop(const Image& img, int height, int width);
// Resize(resize_size) then CenterCrop((crop_height, crop_width)), the same bytes, computing only
// the pixels that the crop keeps.
Image resize_center_crop(const Image& img, int resize_size, int crop_height, int crop_width,
                         int64_t max_pixels = kDefaultMaxPixels);

struct CropBox {
  int top = 0;     ///< first row (i in torchvision)
  int left = 0;    ///< first column (j)
  int height = 0;  ///< rows (h)
  int width = 0;   ///< columns (w)
};

struct RandomResizedCropOptions {
  double scale_min = 0.08;         ///< smallest fraction of the image's area
  double scale_max = 1.0;          ///< largest fraction of the image's area
  double ratio_min = 3.0 / 4.0;    ///< smallest aspect ratio width / height (log-uniform)
  double ratio_max = 4.0 / 3.0;    ///< largest aspect ratio width / height
};

// RandomResizedCrop.get_params of torchvision 0.14: up to 10 tries of an area fraction uniform in
// [scale_min, scale_max] and an aspect ratio exp(uniform in [log ratio_min, log ratio_max]),
// w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio)) (round half to even); the first
// that fits gets a uniform position (top, then left). Otherwise the central crop with the ratio
// clamped to the range. `uniform` returns doubles in [0, 1): u maps to a + (b - a) * u for a
// range and to floor(u * n) for torch.randint(0, n). The draws differ from torch's, the
// algorithm does not. Throws UserError for an empty range or non-positive bounds.
CropBox random_resized_crop_box(int width, int height, const RandomResizedCropOptions& options,
                                const std::function<double()>& uniform);
// F.resized_crop on a PIL image: crop(box), then bilinear resize to out_width x out_height.
Image resized_crop(const Image& img, const CropBox& box, int out_height, int out_width);

// F.hflip: mirrors the image left to right, in place.
void hflip(Image& img);

struct Normalization {
  std::array<double, 3> mean{0.485, 0.456, 0.406};  ///< per channel (R, G, B), of x / 255
  std::array<double, 3> std{0.229, 0.224, 0.225};   ///< per channel; ImageNet's by default
};

// ToTensor + Normalize(mean, std) in float32 as torch computes it, (x / 255 - mean) / std with
// mean and std rounded to float: writes 3 x height x width floats (CHW) to `out`.
void to_normalized_chw(const Image& img, const Normalization& norm, float* out);

}  // namespace unravel::imaging
