// Bilinear resampling of RGB images, byte for byte Pillow 9.4's Image.resize(size, BILINEAR)
// (ImagingResample, 8-bit path): a triangle filter widened by the downscale factor
// (antialiasing), fixed-point coefficients, a horizontal then a vertical pass through uint8.
#pragma once
#include "imaging/image.h"

namespace unravel::imaging {

// A rectangle of the resized image (output pixel coordinates).
struct Window {
  int left = 0;    ///< first column
  int top = 0;     ///< first row
  int width = 0;   ///< columns
  int height = 0;  ///< rows
};

// Pillow's im.resize((out_w, out_h), Image.BILINEAR) of the whole image. out_w, out_h >= 1; an
// unchanged size gives a copy. The caller bounds out_w * out_h (see transforms.h).
Image resize_bilinear(const Image& in, int out_w, int out_h);

// The `window` part of resize_bilinear(in, out_w, out_h), computed alone (identical bytes, less
// work): resize + crop in one step. The window must lie inside the out_w x out_h image
// (std::logic_error otherwise).
Image resize_bilinear_window(const Image& in, int out_w, int out_h, const Window& window);

}  // namespace unravel::imaging
