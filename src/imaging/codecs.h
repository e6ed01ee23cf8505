// Internal to the imaging module: the two decoders behind decode_image (jpeg.cpp, png.cpp) and
// the size check they share. Not for use outside src/imaging/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "imaging/decode.h"
#include "imaging/image.h"

namespace unravel::imaging::detail {

// Throws UserError "<name>: image of W x H pixels exceeds the limit of N pixels" (or "... is
// empty" for a zero side) unless 0 < w, 0 < h and w * h <= max_pixels.
void check_image_size(int64_t w, int64_t h, int64_t max_pixels, const std::string& name);

// `data` starts with FF D8 FF / the PNG signature (sniff_format said so).
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name,
                  const DecodeOptions& options);
Image decode_png(const uint8_t* data, size_t size, const std::string& name,
                 const DecodeOptions& options);

}  // namespace unravel::imaging::detail
