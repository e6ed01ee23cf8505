// torchvision 0.14's Resize / CenterCrop / RandomResizedCrop / hflip size rules on top of the
// Pillow-exact bilinear resampling (resize.cpp), and the float CHW normalisation.
#include "imaging/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "core/errors.h"
#include "imaging/resize.h"

namespace unravel::imaging {

namespace {

// Python's round() of a float: half to even.
double round_half_even(double x) {
  const double f = std::floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

// int(round((total - part) / 2.0)) for total >= part.
int center_offset(int total, int part) {
  return static_cast<int>(round_half_even((total - part) / 2.0));
}

void require_positive(int a, int b, const char* what) {
  if (a < 1 || b < 1) throw std::logic_error(fmt::format("{}: sizes must be >= 1", what));
}

}  // namespace

Size resized_shorter_size(int width, int height, int size, int64_t max_pixels) {
  require_positive(width, height, "resized_shorter_size");
  require_positive(size, size, "resized_shorter_size");
  const bool width_short = width <= height;
  const int64_t shorter = width_short ? width : height, longer = width_short ? height : width;
  // int(size * long / short): the product is exact, the division a correctly rounded double
  const double new_long = std::trunc(static_cast<double>(size * longer) / shorter);
  if (new_long * size > static_cast<double>(max_pixels)) {
    throw UserError(fmt::format("resizing {} x {} pixels to a shorter side of {} exceeds the limit "
                                "of {} pixels", width, height, size, max_pixels));
  }
  const int l = static_cast<int>(new_long);
  return width_short ? Size{size, l} : Size{l, size};
}

Image resize_shorter(const Image& img, int size, int64_t max_pixels) {
  const Size s = resized_shorter_size(img.width, img.height, size, max_pixels);
  return resize_bilinear(img, s.width, s.height);  // an unchanged size copies
}

Image crop(const Image& img, int top, int left, int height, int width) {
  require_positive(width, height, "crop");
  Image out(width, height);  // black
  const int x0 = std::max(left, 0), x1 = std::min(left + width, img.width);
  for (int y = std::max(top, 0); y < std::min(top + height, img.height) && x0 < x1; ++y) {
    std::memcpy(out.row(y - top) + static_cast<size_t>(x0 - left) * 3,
                img.row(y) + static_cast<size_t>(x0) * 3, static_cast<size_t>(x1 - x0) * 3);
  }
  return out;
}

Image center_crop(const Image& img, int height, int width) {
  require_positive(width, height, "center_crop");
  // torchvision pads first (left / top get (crop - size) // 2), then crops the padded image
  const int pad_left = width > img.width ? (width - img.width) / 2 : 0;
  const int pad_top = height > img.height ? (height - img.height) / 2 : 0;
  const int padded_w = std::max(width, img.width), padded_h = std::max(height, img.height);
  const int top = center_offset(padded_h, height) - pad_top;
  const int left = center_offset(padded_w, width) - pad_left;
  return crop(img, top, left, height, width);
}

Image resize_center_crop(const Image& img, int resize_size, int crop_height, int crop_width,
                         int64_t max_pixels) {
  require_positive(crop_width, crop_height, "resize_center_crop");
  const Size s = resized_shorter_size(img.width, img.height, resize_size, max_pixels);
  if (crop_width > s.width || crop_height > s.height) {
    return center_crop(resize_bilinear(img, s.width, s.height), crop_height, crop_width);
  }
  const Window window{center_offset(s.width, crop_width), center_offset(s.height, crop_height),
                      crop_width, crop_height};
  return resize_bilinear_window(img, s.width, s.height, window);
}

CropBox random_resized_crop_box(int width, int height, const RandomResizedCropOptions& o,
                                const std::function<double()>& uniform) {
  require_positive(width, height, "random_resized_crop_box");
  if (!(0 < o.scale_min && o.scale_min <= o.scale_max && 0 < o.ratio_min &&
        o.ratio_min <= o.ratio_max && std::isfinite(o.scale_max) && std::isfinite(o.ratio_max))) {
    throw UserError(fmt::format("random resized crop: scale ({}, {}) and ratio ({}, {}) must be "
                                "finite (min, max) ranges above 0", o.scale_min, o.scale_max,
                                o.ratio_min, o.ratio_max));
  }
  const double area = static_cast<double>(height) * width;
  const double log_min = std::log(o.ratio_min), log_max = std::log(o.ratio_max);
  auto randint = [&](int n) {  // torch.randint(0, n); u * n can round up to n
    return std::clamp(static_cast<int>(uniform() * n), 0, n - 1);
  };
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * (o.scale_min + (o.scale_max - o.scale_min) * uniform());
    const double aspect = std::exp(log_min + (log_max - log_min) * uniform());
    const double w = round_half_even(std::sqrt(target_area * aspect));
    const double h = round_half_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      CropBox box;
      box.height = static_cast<int>(h);
      box.width = static_cast<int>(w);
      box.top = randint(height - box.height + 1);
      box.left = randint(width - box.width + 1);
      return box;
    }
  }
  // fallback: the central crop, the aspect ratio clamped to the range
  const double in_ratio = static_cast<double>(width) / height;
  CropBox box{0, 0, height, width};
  if (in_ratio < o.ratio_min) {
    box.height = static_cast<int>(round_half_even(width / o.ratio_min));
  } else if (in_ratio > o.ratio_max) {
    box.width = static_cast<int>(round_half_even(height * o.ratio_max));
  }
  box.top = (height - box.height) / 2;  // >= 0: Python's // and C++'s / agree
  box.left = (width - box.width) / 2;
  return box;
}

Image resized_crop(const Image& img, const CropBox& box, int out_height, int out_width) {
  require_positive(out_width, out_height, "resized_crop");
  return resize_bilinear(crop(img, box.top, box.left, box.height, box.width), out_width,
                         out_height);
}

void hflip(Image& img) {
  for (int y = 0; y < img.height; ++y) {
    uint8_t* row = img.row(y);
    for (int a = 0, b = img.width - 1; a < b; ++a, --b) {
      std::swap_ranges(row + 3 * a, row + 3 * a + 3, row + 3 * b);
    }
  }
}

void to_normalized_chw(const Image& img, const Normalization& norm, float* out) {
  float lut[3][256];
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(norm.mean[c]), sd = static_cast<float>(norm.std[c]);
    for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) / 255.0f - mean) / sd;
  }
  const size_t plane = static_cast<size_t>(img.width) * img.height;
  const uint8_t* p = img.pixels.data();
  for (size_t i = 0; i < plane; ++i, p += 3) {
    out[i] = lut[0][p[0]];
    out[plane + i] = lut[1][p[1]];
    out[2 * plane + i] = lut[2][p[2]];
  }
}

}  // namespace unravel::imaging
