// PNG decoding with libpng (raw samples, no libpng transforms but de-interlacing), converted to
// RGB exactly as Pillow 9.4's PngImagePlugin modes + Image.convert("RGB") do, quirks included:
// 16-bit gray opens as mode I and is CLIPPED to 255, 16-bit colour keeps the high byte, alpha
// is dropped (never composited), palette indices past the PLTE entries read Pillow's grey ramp.
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include <png.h>

#include <fmt/format.h>

#include "core/errors.h"
#include "imaging/codecs.h"

namespace unravel::imaging::detail {

namespace {

// Everything the decode touches lives here, in the caller's frame (see jpeg.cpp).
struct Reader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  char message[200] = {0};
  Image out;
  std::vector<uint8_t> raw;  // one row, or every row of an interlaced image
  std::vector<png_bytep> rows;
  uint8_t palette[256][3];
  ~Reader() {
    if (png) png_destroy_read_struct(&png, &info, nullptr);
  }
};

void on_error(png_structp png, png_const_charp msg) {
  auto* r = static_cast<Reader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", msg);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign problems: libpng carries on

void on_read(png_structp png, png_bytep out, size_t n) {
  auto* r = static_cast<Reader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "unexpected end of file");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

// Sample x of a row of `depth`-bit samples (1, 2, 4: packed, most significant bits first).
inline int packed(const uint8_t* in, int x, int depth) {
  const int bit = x * depth;
  return (in[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
}

void gray_row(const uint8_t* in, uint8_t* out, int w, int depth) {
  for (int x = 0; x < w; ++x, out += 3) {
    int v;
    if (depth == 8) {
      v = in[x];
    } else if (depth == 16) {  // mode I from I;16B, then i2rgb clips
      v = (in[2 * x] << 8) | in[2 * x + 1];
      if (v > 255) v = 255;
    } else {  // "1" (0 / 255), L;2 (x 0x55), L;4 (x 0x11)
      static const int kScale[5] = {0, 255, 0x55, 0, 0x11};
      v = packed(in, x, depth) * kScale[depth];
    }
    out[0] = out[1] = out[2] = static_cast<uint8_t>(v);
  }
}

// A row of raw samples of (depth, colour type) -> RGB, as Pillow's unpacker + convert("RGB").
void convert_row(const Reader& r, const uint8_t* in, uint8_t* out, int w, int depth, int type) {
  if (type == PNG_COLOR_TYPE_GRAY) return gray_row(in, out, w, depth);
  if (type == PNG_COLOR_TYPE_PALETTE) {
    for (int x = 0; x < w; ++x, out += 3) {
      const uint8_t* c = r.palette[depth == 8 ? in[x] : packed(in, x, depth)];
      out[0] = c[0], out[1] = c[1], out[2] = c[2];
    }
    return;
  }
  const int channels = type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : type == PNG_COLOR_TYPE_RGB ? 3 : 4;
  const int step = channels * (depth / 8), sample = depth / 8;  // high byte first at 16 bits
  for (int x = 0; x < w; ++x, in += step, out += 3) {
    if (channels == 2) {
      out[0] = out[1] = out[2] = in[0];
    } else {
      out[0] = in[0], out[1] = in[sample], out[2] = in[2 * sample];
    }
  }
}

// Pillow's palette: the PLTE entries, then its default grey ramp (i, i, i) up to 256.
void load_palette(Reader& r) {
  for (int i = 0; i < 256; ++i) r.palette[i][0] = r.palette[i][1] = r.palette[i][2] = i;
  png_colorp entries = nullptr;
  int n = 0;
  if (png_get_PLTE(r.png, r.info, &entries, &n) == 0) return;
  for (int i = 0; i < n && i < 256; ++i) {
    r.palette[i][0] = entries[i].red, r.palette[i][1] = entries[i].green;
    r.palette[i][2] = entries[i].blue;
  }
}

// Returns false after a libpng error (message in r.message). May throw UserError (size) or
// std::bad_alloc outside libpng calls.
bool run(Reader& r, const std::string& name, const DecodeOptions& options) {
  if (setjmp(png_jmpbuf(r.png))) return false;
  // Pillow checks the CRC of every chunk before the image data
  png_set_crc_action(r.png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
  png_set_user_limits(r.png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);  // our pixel limit applies
  png_set_read_fn(r.png, &r, on_read);
  png_read_info(r.png, r.info);
  const int64_t w = png_get_image_width(r.png, r.info), h = png_get_image_height(r.png, r.info);
  check_image_size(w, h, options.max_pixels, name);
  const int depth = png_get_bit_depth(r.png, r.info);
  const int type = png_get_color_type(r.png, r.info);
  if (type == PNG_COLOR_TYPE_PALETTE) load_palette(r);
  // ... but not those of the image data (IDAT): lenient decoding ignores them too
  if (!options.strict) png_set_crc_action(r.png, PNG_CRC_QUIET_USE, PNG_CRC_NO_CHANGE);
  const bool interlaced = png_get_interlace_type(r.png, r.info) != PNG_INTERLACE_NONE;
  png_set_interlace_handling(r.png);
  png_read_update_info(r.png, r.info);
  const size_t row_bytes = png_get_rowbytes(r.png, r.info);
  r.out = Image(static_cast<int>(w), static_cast<int>(h));
  if (!interlaced) {
    r.raw.resize(row_bytes);
    for (int y = 0; y < h; ++y) {
      png_read_row(r.png, r.raw.data(), nullptr);
      convert_row(r, r.raw.data(), r.out.row(y), static_cast<int>(w), depth, type);
    }
    return true;
  }
  r.raw.resize(row_bytes * static_cast<size_t>(h));
  r.rows.resize(static_cast<size_t>(h));
  for (int y = 0; y < h; ++y) r.rows[y] = r.raw.data() + row_bytes * static_cast<size_t>(y);
  png_read_image(r.png, r.rows.data());
  for (int y = 0; y < h; ++y) {
    convert_row(r, r.rows[y], r.out.row(y), static_cast<int>(w), depth, type);
  }
  return true;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

Image decode_png(const uint8_t* data, size_t size, const std::string& name,
                 const DecodeOptions& options) {
  // The size first, from IHDR (always the first chunk), before libpng allocates anything.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    check_image_size(be32(data + 16), be32(data + 20), options.max_pixels, name);
  }
  Reader r;
  r.data = data;
  r.size = size;
  r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
  if (r.png) r.info = png_create_info_struct(r.png);
  if (!r.png || !r.info) throw std::bad_alloc();
  if (!run(r, name, options)) {
    throw UserError(fmt::format("{}: corrupt or truncated PNG ({})", name, r.message));
  }
  // The rest of the file (chunks after the image data, IEND) is not read, as Pillow ignores it.
  return std::move(r.out);
}

}  // namespace unravel::imaging::detail
