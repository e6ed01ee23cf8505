// An 8-bit RGB image in memory (rows top to bottom, pixels left to right, 3 bytes R, G, B each):
// what the decoders produce and the torchvision-style transforms take. Torch-free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace unravel::imaging {

struct Image {
  int width = 0;                ///< pixels per row
  int height = 0;               ///< rows
  std::vector<uint8_t> pixels;  ///< height x width x 3 bytes (HWC, RGB)

  Image() = default;
  // A black image of the given size (the caller keeps w * h within its pixel limit).
  Image(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3, 0) {}

  size_t row_bytes() const { return static_cast<size_t>(width) * 3; }
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
  bool empty() const { return width <= 0 || height <= 0; }
};

}  // namespace unravel::imaging
