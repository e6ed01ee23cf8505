// Per-channel normalisation: fitted exactly on uint8 training images, prescribed by the data set,
// or identity for already normalised floating images; applied as ToTensor + Normalize do.
#include <fmt/format.h>

#include <cmath>

#include "core/errors.h"
#include "data/dataset.h"

namespace unravel::data {

Normalizer Normalizer::fit(const torch::Tensor& images_u8) {
  TORCH_CHECK(images_u8.dim() == 4 && images_u8.scalar_type() == torch::kUInt8,
              "Normalizer::fit expects (N, C, H, W) uint8, got ", images_u8.sizes());
  if (images_u8.size(0) == 0) throw UserError("cannot fit the normalisation: no training images");
  const torch::Tensor x = images_u8.contiguous();  // (N, C, H, W)
  const int64_t N = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  const uint8_t* p = x.data_ptr<uint8_t>();
  // Exact integer sums per channel (uint64 cannot overflow below ~2.8e14 pixels per channel).
  std::vector<uint64_t> sum(static_cast<size_t>(C), 0), sum_sq(static_cast<size_t>(C), 0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const uint8_t* q = p + (i * C + c) * plane;
      uint64_t s = 0, s2 = 0;
      for (int64_t j = 0; j < plane; ++j) {
        const uint32_t v = q[j];
        s += v;
        s2 += v * v;
      }
      sum[c] += s;
      sum_sq[c] += s2;
    }
  Normalizer norm;
  const double count = static_cast<double>(N * plane);
  for (int64_t c = 0; c < C; ++c) {
    const double mean = static_cast<double>(sum[c]) / count;  // in pixel units
    const double var = std::max(0.0, static_cast<double>(sum_sq[c]) / count - mean * mean);
    const double std = std::sqrt(var) / 255.0;
    norm.mean.push_back(mean / 255.0);
    norm.std.push_back(std > 1e-8 ? std : 1.0);
  }
  return norm;
}

Normalizer Normalizer::for_dataset(const Dataset& ds, const Split& train) {
  if (ds.normalization) return Normalizer{ds.normalization->mean, ds.normalization->std};
  if (train.streamed())
    throw UserError(fmt::format("--data {}: give the normalisation (mean=...,std=...) of streamed images",
                                ds.spec.str()));
  if (train.images.defined() && train.images.is_floating_point())
    return Normalizer{std::vector<double>(static_cast<size_t>(ds.channels), 0.0),
                      std::vector<double>(static_cast<size_t>(ds.channels), 1.0)};
  return fit(train.images);
}

bool Normalizer::is_identity() const {
  for (size_t c = 0; c < mean.size(); ++c)
    if (mean[c] != 0.0 || std[c] != 1.0) return false;
  return !mean.empty();
}

torch::Tensor Normalizer::apply(const torch::Tensor& images_u8, torch::ScalarType dtype) const {
  TORCH_CHECK(images_u8.dim() == 4, "Normalizer::apply expects (B, C, H, W), got ",
              images_u8.sizes());
  if (images_u8.is_floating_point()) return images_u8.to(dtype);  // already normalised
  const int64_t C = images_u8.size(1);
  if (mean.empty() || static_cast<int64_t>(mean.size()) != C || std.size() != mean.size())
    throw UserError(fmt::format(
        "normalisation has {} channel(s) but the images have {} (data set of another kind?)",
        mean.size(), C));
  // Exactly torchvision's ToTensor + Normalize in `dtype`: x / 255, then (t - mean) / std with
  // mean and std rounded to dtype (so image-folder inputs equal torchvision's bit for bit).
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  std::vector<double> m = mean, sd = std;
  const torch::Tensor mean_t = torch::from_blob(m.data(), {1, C, 1, 1}, opts).to(dtype);
  const torch::Tensor std_t = torch::from_blob(sd.data(), {1, C, 1, 1}, opts).to(dtype);
  torch::Tensor out = images_u8.to(dtype).div_(255);  // (B, C, H, W)
  out.sub_(mean_t).div_(std_t);
  return out;
}

}  // namespace unravel::data
