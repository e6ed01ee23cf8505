// The generated `synthetic` data set: learnable, seeded, any size (for tests and smoke runs).
#include <cmath>

#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"
#include "core/text.h"
#include "data/formats.h"

namespace unravel::data {

namespace {

struct SyntheticOptions {
  int64_t train = 2048, test = 512, size = 16, channels = 3, classes = 10;
  uint64_t seed = 0;
};

SyntheticOptions parse_synthetic(const std::string& opts) {
  SyntheticOptions o;
  const std::string what = "--data synthetic";
  for (const auto& [key, value] : parse_key_values(opts, what)) {
    const std::string w = what + ": option " + key + "=" + value;
    if (key == "train")
      o.train = parse_int(value, w, 1, 1000000);
    else if (key == "test")
      o.test = parse_int(value, w, 1, 1000000);
    else if (key == "size")
      o.size = parse_int(value, w, 4, 512);
    else if (key == "channels")
      o.channels = parse_int(value, w, 1, 16);
    else if (key == "classes")
      o.classes = parse_int(value, w, 2, 1000);
    else if (key == "seed")
      o.seed = static_cast<uint64_t>(parse_int(value, w, 0, INT64_MAX));
    else
      throw UserError(fmt::format("{}: unknown option '{}' (valid: train, test, size, channels, classes, seed)",
                                  what, key));
  }
  const double bytes = static_cast<double>(o.train + o.test) * o.channels * o.size * o.size;
  if (bytes > 4e9)
    throw UserError(
        fmt::format("--data synthetic:{}: {:.1f} GB of images is too large", opts, bytes / 1e9));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Synthetic: each class is a random sum of low-frequency cosines per channel (unit RMS). An
// image = 128 + 48 * (contrast * own pattern shifted + 0.4 * another class's pattern)
//         + brightness offset + pixel noise, rounded and clamped to [0, 255].

struct SyntheticPatterns {
  int64_t classes, channels, size;
  std::vector<double> values;  // (classes, channels, size, size)
  double at(int64_t k, int64_t c, int64_t y, int64_t x) const {
    return values[static_cast<size_t>(((k * channels + c) * size + y) * size + x)];
  }
};

SyntheticPatterns make_patterns(const SyntheticOptions& o) {
  SyntheticPatterns p{o.classes, o.channels, o.size, {}};
  p.values.assign(static_cast<size_t>(o.classes * o.channels * o.size * o.size), 0.0);
  Rng rng = Rng::stream(o.seed, kStreamSynthPrototypes);
  const double w = 2.0 * M_PI / static_cast<double>(o.size);
  for (int64_t k = 0; k < o.classes; ++k) {
    double sum_sq = 0;
    for (int64_t c = 0; c < o.channels; ++c) {
      for (int fy = 0; fy <= 2; ++fy)
        for (int fx = 0; fx <= 2; ++fx) {
          if (fy == 0 && fx == 0) continue;
          const double amp = rng.normal(), phase = 2.0 * M_PI * rng.uniform();
          for (int64_t y = 0; y < o.size; ++y)
            for (int64_t x = 0; x < o.size; ++x)
              p.values[static_cast<size_t>(((k * o.channels + c) * o.size + y) * o.size + x)] +=
                  amp * std::cos(w * static_cast<double>(fy * y + fx * x) + phase);
        }
      for (int64_t i = 0; i < o.size * o.size; ++i) {
        const double v = p.values[static_cast<size_t>((k * o.channels + c) * o.size * o.size + i)];
        sum_sq += v * v;
      }
    }
    const double scale =
        1.0 / std::sqrt(sum_sq / static_cast<double>(o.channels * o.size * o.size));
    for (int64_t i = 0; i < o.channels * o.size * o.size; ++i)
      p.values[static_cast<size_t>(k * o.channels * o.size * o.size + i)] *= scale;
  }
  return p;
}

Split make_synthetic_split(const SyntheticOptions& o, const SyntheticPatterns& pat, int64_t n,
                           uint64_t stream) {
  Rng rng = Rng::stream(o.seed, stream);
  const int64_t S = o.size, C = o.channels, max_shift = std::max<int64_t>(1, S / 8);
  torch::Tensor images = torch::empty({n, C, S, S}, torch::kUInt8);  // (N, C, S, S)
  torch::Tensor labels = torch::empty({n}, torch::kLong);            // (N)
  uint8_t* img = images.data_ptr<uint8_t>();
  int64_t* lab = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = i % o.classes;
    const int64_t other = (k + 1 + static_cast<int64_t>(rng.below(o.classes - 1))) % o.classes;
    const int64_t sy = rng.between(-max_shift, max_shift), sx = rng.between(-max_shift, max_shift);
    const double contrast = 0.7 + 0.6 * rng.uniform();
    const double brightness = 12.0 * rng.normal();
    lab[i] = k;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < S; ++y)
        for (int64_t x = 0; x < S; ++x) {
          const int64_t py = ((y - sy) % S + S) % S, px = ((x - sx) % S + S) % S;
          const double v = 128.0 + brightness + 30.0 * rng.normal() +
                           48.0 * (contrast * pat.at(k, c, py, px) + 0.4 * pat.at(other, c, y, x));
          img[((i * C + c) * S + y) * S + x] =
              static_cast<uint8_t>(std::lround(std::min(255.0, std::max(0.0, v))));
        }
  }
  return Split{images, labels};
}

}  // namespace

Dataset load_synthetic(const DataSpec& spec) {
  const SyntheticOptions o = parse_synthetic(spec.where);
  const SyntheticPatterns pat = make_patterns(o);
  Dataset ds;
  ds.spec = spec;
  ds.train = make_synthetic_split(o, pat, o.train, kStreamSynthTrain);
  ds.test = make_synthetic_split(o, pat, o.test, kStreamSynthTest);
  ds.channels = o.channels;
  ds.height = ds.width = o.size;
  ds.num_classes = o.classes;
  for (int64_t k = 0; k < o.classes; ++k) ds.class_names.push_back(fmt::format("class{}", k));
  return ds;
}


}  // namespace unravel::data
