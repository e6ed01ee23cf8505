// Fuzz harness of the image decoders and transforms (src/imaging): decode the bytes (strict and
// lenient), resize the shorter side, center-crop, normalise. Bad input must end in a UserError;
// a broken invariant (lenient refusing what strict accepts, the fused crop differing) aborts.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/errors.h"
#include "imaging/decode.h"
#include "imaging/transforms.h"

namespace {

using namespace unravel::imaging;

void transforms(const Image& img, int size) {
  constexpr int64_t kMaxPixels = 1 << 22;
  try {
    const Image resized = resize_shorter(img, size, kMaxPixels);
    const int crop = 1 + size / 2;
    const Image cropped = center_crop(resized, crop, crop + 1);
    if (resize_center_crop(img, size, crop, crop + 1, kMaxPixels).pixels != cropped.pixels) {
      std::abort();  // the fused path must give the same bytes
    }
    std::vector<float> out(cropped.pixels.size());
    to_normalized_chw(cropped, Normalization{}, out.data());
  } catch (const unravel::UserError&) {  // a resize past kMaxPixels
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  DecodeOptions strict;
  strict.max_pixels = 1 << 20;  // small images only: the fuzzer's memory limit
  DecodeOptions lenient = strict;
  lenient.strict = false;
  Image img;
  bool strict_ok = false;
  try {
    img = decode_image(data, size, "fuzz", strict);
    strict_ok = true;
  } catch (const unravel::UserError&) {
  }
  try {
    Image again = decode_image(data, size, "fuzz", lenient);
    if (strict_ok && again.pixels != img.pixels) std::abort();
    img = std::move(again);
  } catch (const unravel::UserError&) {
    if (strict_ok) std::abort();  // lenient accepts everything strict accepts
    return 0;
  }
  transforms(img, 1 + (size % 40));
  return 0;
}
