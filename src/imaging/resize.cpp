// Pillow 9.4's ImagingResample (src/libImaging/Resample.c) for 8-bit RGB and the bilinear
// filter, rewritten: same coefficient arithmetic in double (compile without FP contraction),
// same fixed-point rounding, same pass order and pass skipping, so that the bytes are equal.
#include "imaging/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace unravel::imaging {

namespace {

// Pillow: PRECISION_BITS = 32 - 8 - 2; sums start at half a unit and are clipped after >>.
constexpr int kPrecisionBits = 22;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;  // arithmetic shift, as Pillow's table lookup
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

inline double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Per output index: the first input index, the number of taps and ksize fixed-point weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size x ksize
  int end(int i) const { return first[i] + count[i]; }
};

// precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size), as Pillow computes them.
Coefficients bilinear_coefficients(int in_size, int out_size) {
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);  // Pillow keeps the box in floats
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;  // the bilinear filter's support is 1
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bilinear_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    int32_t* fixed = &c.weights[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = k[x] * (1 << kPrecisionBits);
      fixed[x] = static_cast<int32_t>(k[x] < 0 ? -0.5 + v : 0.5 + v);
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax > 0 ? xmax : 0;
  }
  return c;
}

// Horizontal pass: rows [y0, y1) of `in`, output columns [x0, x0 + width) -> `out` rows.
void horizontal(const Image& in, int y0, int y1, const Coefficients& c, int x0, int width,
                uint8_t* out, size_t out_stride) {
  for (int y = y0; y < y1; ++y) {
    const uint8_t* src = in.row(y);
    uint8_t* dst = out + static_cast<size_t>(y - y0) * out_stride;
    for (int xx = x0; xx < x0 + width; ++xx, dst += 3) {
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* p = src + static_cast<size_t>(c.first[xx]) * 3;
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int i = 0, n = c.count[xx]; i < n; ++i, p += 3) {
        s0 += p[0] * k[i];
        s1 += p[1] * k[i];
        s2 += p[2] * k[i];
      }
      dst[0] = clip8(s0), dst[1] = clip8(s1), dst[2] = clip8(s2);
    }
  }
}

// Vertical pass: output rows [y0, y0 + height); `rows(i)` is the source row of input index i
// (already cut to the window's columns), `bytes` the bytes per row to produce.
template <class RowOf>
void vertical(RowOf rows, const Coefficients& c, int y0, int height, size_t bytes, Image& out) {
  std::vector<int32_t> acc(bytes);
  for (int yy = y0; yy < y0 + height; ++yy) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    for (int i = 0, n = c.count[yy]; i < n; ++i) {
      const uint8_t* src = rows(c.first[yy] + i);
      const int32_t w = k[i];
      for (size_t x = 0; x < bytes; ++x) acc[x] += src[x] * w;
    }
    uint8_t* dst = out.row(yy - y0);
    for (size_t x = 0; x < bytes; ++x) dst[x] = clip8(acc[x]);
  }
}

}  // namespace

Image resize_bilinear_window(const Image& in, int out_w, int out_h, const Window& win) {
  if (in.empty() || out_w < 1 || out_h < 1 || win.left < 0 || win.top < 0 || win.width < 1 ||
      win.height < 1 || win.left + win.width > out_w || win.top + win.height > out_h) {
    throw std::logic_error("resize_bilinear_window: empty image or window outside the output");
  }
  Image out(win.width, win.height);
  const size_t bytes = out.row_bytes();
  const bool need_h = out_w != in.width, need_v = out_h != in.height;
  if (!need_h && !need_v) {  // a copy of the window
    for (int y = 0; y < win.height; ++y) {
      std::memcpy(out.row(y), in.row(win.top + y) + static_cast<size_t>(win.left) * 3, bytes);
    }
    return out;
  }
  if (!need_v) {  // horizontal pass straight into the output
    const Coefficients ch = bilinear_coefficients(in.width, out_w);
    horizontal(in, win.top, win.top + win.height, ch, win.left, win.width, out.pixels.data(),
               bytes);
    return out;
  }
  const Coefficients cv = bilinear_coefficients(in.height, out_h);
  if (!need_h) {  // vertical pass on the input's columns
    const size_t offset = static_cast<size_t>(win.left) * 3;
    vertical([&](int y) { return in.row(y) + offset; }, cv, win.top, win.height, bytes, out);
    return out;
  }
  // Both passes through a uint8 image holding only the input rows the window's output rows use
  // (Pillow keeps rows ybox_first..ybox_last of the whole output; the bytes are the same).
  const Coefficients ch = bilinear_coefficients(in.width, out_w);
  const int first = cv.first[win.top], last = cv.end(win.top + win.height - 1);
  std::vector<uint8_t> temp(static_cast<size_t>(last - first) * bytes);
  horizontal(in, first, last, ch, win.left, win.width, temp.data(), bytes);
  vertical([&](int y) { return temp.data() + static_cast<size_t>(y - first) * bytes; }, cv,
           win.top, win.height, bytes, out);
  return out;
}

Image resize_bilinear(const Image& in, int out_w, int out_h) {
  return resize_bilinear_window(in, out_w, out_h, Window{0, 0, out_w, out_h});
}

}  // namespace unravel::imaging
