// JPEG decoding with libjpeg(-turbo), set up as Pillow 9.4's JpegDecode.c does (library defaults:
// islow DCT, fancy upsampling; 1 component -> L, 3 -> RGB, 4 -> Adobe-inverted CMYK) and
// converted to RGB as Image.convert("RGB") does. libjpeg errors come back through longjmp.
#include <algorithm>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <vector>

#include <jpeglib.h>
// after jpeglib.h, whose jconfig.h enables the arithmetic-coding messages
#include <jerror.h>

#include <fmt/format.h>

#include "core/errors.h"
#include "imaging/codecs.h"

namespace unravel::imaging::detail {

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands us a jpeg_error_mgr*
  std::jmp_buf jump;
  bool strict = true;
  int max_scans = 0;
  bool too_many_scans = false;
  char message[JMSG_LENGTH_MAX] = {0};
};

[[noreturn]] void fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_error_exit(j_common_ptr cinfo) { fail(cinfo); }

// Warnings (level -1) that mean the data is damaged. Pillow refuses a truncated file (its reader
// suspends and finds no more bytes: "image file is truncated"); libjpeg's memory source says
// "Premature end of JPEG file" instead and pads with an EOI. The others Pillow ignores.
bool is_damage(int code, bool strict) {
  if (code == JWRN_JPEG_EOF) return true;
  if (!strict) return false;
  switch (code) {
    case JWRN_ARITH_BAD_CODE:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
      return true;
    default:
      return false;
  }
}

void on_emit_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (is_damage(cinfo->err->msg_code, err->strict)) fail(cinfo);
  cinfo->err->num_warnings++;
}

void on_output_message(j_common_ptr) {}  // never print to stderr

// Called by libjpeg as it goes; stops a progressive JPEG of too many scans.
void on_progress(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  const int scan = reinterpret_cast<j_decompress_ptr>(cinfo)->input_scan_number;
  if (scan > err->max_scans) {
    err->too_many_scans = true;
    std::longjmp(err->jump, 1);
  }
}

// Everything the decode touches lives here, in the caller's frame, so that nothing is left in
// an indeterminate state by the longjmp (only libjpeg's own C frames are skipped).
struct Decoder {
  jpeg_decompress_struct cinfo{};
  ErrorManager err;
  jpeg_progress_mgr progress{};
  bool created = false;
  Image out;
  std::vector<uint8_t> row;  // one decoded row for L and CMYK
  ~Decoder() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// Pillow's CMYK;I unpacker inverts the bytes, then cmyk2rgb of Convert.c (Pillow 9.4):
// nk = 255 - K; R = clip(nk - nk * C / 255) with MULDIV255's rounding.
inline uint8_t cmyk_channel(int c_inverted, int nk) {
  int t = c_inverted * nk + 128;
  int v = nk - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v <= 0 ? 0 : v < 256 ? v : 255);
}

void convert_row(const uint8_t* in, uint8_t* out, int width, int components) {
  if (components == 1) {  // L -> RGB (l2rgb)
    for (int x = 0; x < width; ++x, out += 3) out[0] = out[1] = out[2] = in[x];
    return;
  }
  for (int x = 0; x < width; ++x, in += 4, out += 3) {  // CMYK;I -> CMYK -> RGB
    int nk = in[3];  // 255 - (255 - K as stored)
    out[0] = cmyk_channel(255 - in[0], nk);
    out[1] = cmyk_channel(255 - in[1], nk);
    out[2] = cmyk_channel(255 - in[2], nk);
  }
}

// Returns false after a libjpeg error (message in d.err.message). May throw UserError itself
// (size, components) or std::bad_alloc, outside any libjpeg call.
bool run(Decoder& d, const uint8_t* data, size_t size, const std::string& name,
         const DecodeOptions& options) {
  if (setjmp(d.err.jump)) return false;
  jpeg_create_decompress(&d.cinfo);
  d.created = true;
  d.progress.progress_monitor = on_progress;
  d.cinfo.progress = &d.progress;
  jpeg_mem_src(&d.cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d.cinfo, TRUE);
  jpeg_decompress_struct& c = d.cinfo;
  if (c.data_precision != 8) {  // Pillow: "cannot handle 12-bit layers" (libjpeg refuses first)
    throw UserError(fmt::format("{}: {}-bit JPEG is not supported", name, c.data_precision));
  }
  if (c.num_components == 1) {
    c.out_color_space = JCS_GRAYSCALE;
  } else if (c.num_components == 3) {
    c.out_color_space = JCS_RGB;
  } else if (c.num_components == 4) {
    c.out_color_space = JCS_CMYK;  // from CMYK or YCCK, as libjpeg decides from the Adobe marker
  } else {
    throw UserError(
        fmt::format("{}: JPEG with {} components is not supported", name, c.num_components));
  }
  check_image_size(c.image_width, c.image_height, options.max_pixels, name);
  jpeg_start_decompress(&c);
  const int w = static_cast<int>(c.output_width), h = static_cast<int>(c.output_height);
  const int comps = c.output_components;
  d.out = Image(w, h);
  if (comps != 3) d.row.resize(static_cast<size_t>(w) * comps);
  while (c.output_scanline < c.output_height) {
    const int y = static_cast<int>(c.output_scanline);
    if (comps == 3) {
      JSAMPROW rows[16];
      const int n = std::min(16, h - y);
      for (int i = 0; i < n; ++i) rows[i] = d.out.row(y + i);
      jpeg_read_scanlines(&c, rows, static_cast<JDIMENSION>(n));
    } else {
      JSAMPROW rows[1] = {d.row.data()};
      if (jpeg_read_scanlines(&c, rows, 1) == 1) convert_row(d.row.data(), d.out.row(y), w, comps);
    }
  }
  jpeg_finish_decompress(&c);  // reads up to EOI: a missing EOI is "Premature end of JPEG file"
  return true;
}

}  // namespace

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name,
                  const DecodeOptions& options) {
  Decoder d;
  d.cinfo.err = jpeg_std_error(&d.err.pub);
  d.err.pub.error_exit = on_error_exit;
  d.err.pub.emit_message = on_emit_message;
  d.err.pub.output_message = on_output_message;
  d.err.strict = options.strict;
  d.err.max_scans = options.max_jpeg_scans;
  if (!run(d, data, size, name, options)) {
    if (d.err.too_many_scans) {
      throw UserError(fmt::format("{}: progressive JPEG of more than {} scans (the limit)", name,
                                  options.max_jpeg_scans));
    }
    throw UserError(fmt::format("{}: corrupt or truncated JPEG ({})", name, d.err.message));
  }
  return std::move(d.out);
}

}  // namespace unravel::imaging::detail
