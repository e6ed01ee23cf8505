// The batch loader: seeded order and augmentation per epoch, in-memory crop/flip, and read-ahead
// of streamed splits (data/prefetch.h).
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "core/errors.h"
#include "core/random.h"
#include "data/formats.h"
#include "data/prefetch.h"
#include "data/stream.h"

namespace unravel::data {

Loader::Loader(const Split& split, const Normalizer& norm, LoaderOptions opts, int64_t epoch)
    : split_(split), norm_(norm), opts_(opts) {
  if (opts_.batch_size < 1) throw UserError(fmt::format("batch size {} must be at least 1", opts_.batch_size));
  if (opts_.augment && (opts_.pad < 0 || opts_.pad > 1024))
    throw UserError(fmt::format("crop padding {} is outside [0, 1024]", opts_.pad));
  const int64_t n = split_.size();
  if (opts_.start < 0 || opts_.start > n)
    throw std::logic_error(fmt::format("Loader: start {} outside the split of {}", opts_.start, n));
  if (!split_.streamed()) {
    TORCH_CHECK(n == 0 || (split_.images.dim() == 4 && split_.images.size(0) == n),
                "Loader expects (N, C, H, W) images matching the labels");
    if (split_.images.defined()) split_.images = split_.images.contiguous();
  }
  if (split_.labels.defined()) split_.labels = split_.labels.contiguous();
  pos_ = opts_.start;
  epoch_seed_ = mix(opts_.seed, static_cast<uint64_t>(epoch));
  if (opts_.shuffle) {
    Rng rng = Rng::stream(epoch_seed_, kStreamShuffle);
    order_ = to_long_tensor(permutation(n, rng));
  } else {
    order_ = torch::arange(n, torch::kLong);
  }
  if (opts_.augment && !split_.streamed()) {
    TORCH_CHECK(n == 0 || split_.images.scalar_type() == torch::kUInt8,
                "augmentation works on uint8 images (floating tensors files are used as they are)");
    Rng rng = Rng::stream(epoch_seed_, kStreamAugment);
    aug_.resize(static_cast<size_t>(n));
    for (auto& a : aug_) {
      a.dy = static_cast<int16_t>(rng.between(-opts_.pad, opts_.pad));
      a.dx = static_cast<int16_t>(rng.between(-opts_.pad, opts_.pad));
      a.flip = opts_.flip && rng.coin();
    }
  }
  if (split_.streamed()) {
    // Every batch of the epoch from `start` on, as stream items; the augmentation of an item
    // depends on the epoch and the item only (not on batch boundaries or the start).
    std::vector<std::vector<int64_t>> batches;
    std::vector<std::vector<uint64_t>> seeds;
    const int64_t* ord = order_.data_ptr<int64_t>();
    const int64_t* rows = split_.rows.data_ptr<int64_t>();
    const uint64_t aug_base = Rng::stream(epoch_seed_, kStreamAugment).next();
    for (int64_t a = opts_.start; a < n; a += opts_.batch_size) {
      const int64_t b = std::min(n, a + opts_.batch_size);
      if (opts_.drop_last && b - a < opts_.batch_size) break;
      std::vector<int64_t> items;
      std::vector<uint64_t> s;
      for (int64_t p = a; p < b; ++p) {
        items.push_back(rows[ord[p]]);
        s.push_back(mix(aug_base, static_cast<uint64_t>(rows[ord[p]])));
      }
      batches.push_back(std::move(items));
      seeds.push_back(std::move(s));
    }
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int workers = opts_.workers > 0 ? opts_.workers : std::min(4, cores);
    prefetch_ = std::make_unique<Prefetcher>(split_.stream, std::move(batches), std::move(seeds), opts_.augment,
                                             workers, opts_.read_ahead);
  }
}

Loader::~Loader() = default;

int64_t Loader::num_batches() const {
  const int64_t n = split_.size() - opts_.start, b = opts_.batch_size;
  return opts_.drop_last ? n / b : (n + b - 1) / b;
}

torch::Tensor Loader::crop_flip(const torch::Tensor& idx, int64_t first) const {
  const int64_t B = idx.size(0);
  // Crop of the zero-padded image at offset (dy, dx) in [-pad, pad], then optional flip:
  // out[y][x] = img[y + dy][x' + dx] with x' = flip ? W-1-x : x, zero outside the image.
  const int64_t C = split_.images.size(1), H = split_.images.size(2), W = split_.images.size(3);
  const int64_t plane = H * W;
  torch::Tensor u8 = torch::zeros({B, C, H, W}, torch::kUInt8);
  const uint8_t* src = split_.images.data_ptr<uint8_t>();
  uint8_t* dst = u8.data_ptr<uint8_t>();
  const int64_t* ix = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const Aug& a = aug_[static_cast<size_t>(first + b)];
    const int64_t x0 = std::max<int64_t>(0, -a.dx), x1 = std::min<int64_t>(W, W - a.dx);
    if (x1 <= x0) continue;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y) {
        const int64_t sy = y + a.dy;
        if (sy < 0 || sy >= H) continue;
        const uint8_t* srow = src + (ix[b] * C + c) * plane + sy * W;
        uint8_t* drow = dst + (b * C + c) * plane + y * W;
        if (!a.flip) {
          std::memcpy(drow + x0, srow + x0 + a.dx, static_cast<size_t>(x1 - x0));
        } else {
          for (int64_t x = x0; x < x1; ++x) drow[W - 1 - x] = srow[x + a.dx];
        }
      }
  }
  return u8;
}

bool Loader::next(Batch& out) {
  const int64_t n = split_.size();
  const int64_t B = std::min(opts_.batch_size, n - pos_);
  if (B <= 0 || (opts_.drop_last && B < opts_.batch_size)) return false;
  torch::Tensor idx = order_.narrow(0, pos_, B).clone();  // (B) positions in the split
  torch::Tensor pixels;                                   // (B, C, H, W)
  if (split_.streamed()) {
    const auto t0 = std::chrono::steady_clock::now();
    Prefetcher::Result r = prefetch_->next();
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (static_cast<int64_t>(r.kept.size()) != B) idx = idx.index_select(0, torch::tensor(r.kept, torch::kLong));
    pixels = r.images.defined() ? r.images : torch::empty({0, split_.stream->channels(), split_.stream->height(),
                                                           split_.stream->width()}, torch::kUInt8);
  } else if (!aug_.empty()) {
    pixels = crop_flip(idx, pos_);
  } else {
    pixels = split_.images.index_select(0, idx);
  }
  out.images = norm_.apply(pixels);               // (B, C, H, W) float
  out.labels = split_.labels.index_select(0, idx);  // (B)
  out.index = idx;                                  // (B)
  pos_ += B;
  return true;
}

}  // namespace unravel::data
