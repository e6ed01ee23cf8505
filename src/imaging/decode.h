// JPEG and PNG decoding to RGB, byte for byte what torchvision's default loader gets from
// Pillow 9.4 with libjpeg-turbo 2.1.5 (Image.open(f).convert("RGB")). The format comes from the
// magic bytes, never the file name. Every failure is one UserError line naming the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "imaging/image.h"

namespace unravel::imaging {

// Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS (DecompressionBombError).
constexpr int64_t kPilMaxImagePixels = 89478485;
constexpr int64_t kDefaultMaxPixels = 2 * kPilMaxImagePixels;

struct DecodeOptions {
  // Images with more pixels than this (width x height, read from the header) are refused before
  // any pixel buffer is allocated. Peak memory of a decode is 3 bytes per pixel for the result,
  // plus up to 8 for an interlaced 16-bit PNG or 6 (x components / 3) for a progressive JPEG.
  int64_t max_pixels = kDefaultMaxPixels;
  // A progressive JPEG with more scans than this is refused (each scan can cost a pass over the
  // whole image: a small file of many empty scans would otherwise take minutes; real files have
  // about 10). Pillow has no such limit. TurboJPEG's TJFLAG_LIMITSCANS uses 500 too.
  int max_jpeg_scans = 500;
  // Files larger than this are refused before they are read (decode_image_file only).
  int64_t max_file_bytes = int64_t{1} << 30;
  // true: any sign of damage is an error: a libjpeg "Corrupt JPEG data" warning (bad Huffman
  // code, data segment cut short by a marker, extraneous bytes, ...) and a CRC error in any PNG
  // chunk. false: refuse only what Pillow refuses (a truncated file, a JPEG error, a bad CRC in a
  // PNG chunk before the image data) and decode the rest to the same pixels Pillow gives.
  bool strict = true;
};

enum class ImageFormat { Unknown, Jpeg, Png };

// From the first bytes: JPEG starts FF D8 FF (as Pillow's JpegImagePlugin._accept), PNG with
// its 8-byte signature.
ImageFormat sniff_format(const uint8_t* data, size_t size);

// Decodes `size` bytes; `name` (the file's path) opens every error message:
//   "<name>: not a JPEG or PNG image"
//   "<name>: corrupt or truncated JPEG (<libjpeg's message>)"   (PNG: libpng's message)
//   "<name>: image of W x H pixels exceeds the limit of N pixels"
Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                   const DecodeOptions& options = {});
// Reads the whole file (refusing one above options.max_file_bytes), then decode_image.
Image decode_image_file(const std::string& path, const DecodeOptions& options = {});

}  // namespace unravel::imaging
