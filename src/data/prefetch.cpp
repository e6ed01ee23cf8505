// Worker threads over (batch, image) tasks in order, at most `ahead` batches in flight.
#include "data/prefetch.h"

#include <fmt/format.h>

#include "core/errors.h"

namespace unravel::data {

Prefetcher::Prefetcher(std::shared_ptr<const ImageStream> stream, std::vector<std::vector<int64_t>> batches,
                       std::vector<std::vector<uint64_t>> seeds, bool augment, int workers, int ahead)
    : stream_(std::move(stream)),
      batches_(std::move(batches)),
      seeds_(std::move(seeds)),
      augment_(augment),
      ahead_(std::max(1, ahead)),
      slots_(batches_.size()) {
  for (int w = 0; w < std::max(1, workers); ++w) threads_.emplace_back([this] { work(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Prefetcher::work() {
  const int64_t C = stream_->channels(), H = stream_->height(), W = stream_->width();
  const int64_t image_bytes = C * H * W;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      return stop_ || (next_batch_ < batches_.size() && next_batch_ < consumed_ + static_cast<size_t>(ahead_));
    });
    if (stop_) return;
    const size_t b = next_batch_, i = next_image_;
    Slot& slot = slots_[b];
    if (i == 0) {  // first task of the batch: its buffer
      const auto n = static_cast<int64_t>(batches_[b].size());
      slot.images = torch::empty({n, C, H, W}, torch::kUInt8);
      slot.ok.assign(static_cast<size_t>(n), 0);
      slot.remaining = n;
    }
    if (++next_image_ >= batches_[b].size()) {
      next_image_ = 0;
      ++next_batch_;
    }
    if (batches_[b].empty()) {  // nothing to decode
      done_cv_.notify_all();
      continue;
    }
    uint8_t* out = slot.images.data_ptr<uint8_t>() + static_cast<int64_t>(i) * image_bytes;
    const int64_t item = batches_[b][i];
    const uint64_t seed = augment_ ? seeds_[b][i] : 0;
    lock.unlock();
    bool ok = false;
    std::string error;
    try {
      ok = stream_->load(item, out, augment_, seed);
    } catch (const UserError& e) {
      error = e.what();
    } catch (const std::exception& e) {
      error = fmt::format("{}: {}", stream_->describe(item), e.what());
    }
    lock.lock();
    slot.ok[i] = ok;
    if (!error.empty() && slot.error.empty()) slot.error = error;
    if (--slot.remaining == 0) done_cv_.notify_all();
  }
}

Prefetcher::Result Prefetcher::next() {
  std::unique_lock<std::mutex> lock(mu_);
  if (consumed_ >= batches_.size()) throw std::logic_error("Prefetcher::next past the last batch");
  const size_t b = consumed_;
  done_cv_.wait(lock, [&] { return next_batch_ > b && slots_[b].remaining == 0; });
  Slot slot = std::move(slots_[b]);
  slots_[b] = Slot{};
  ++consumed_;
  lock.unlock();
  work_cv_.notify_all();
  if (!slot.error.empty()) throw UserError(slot.error);
  Result r;
  for (size_t i = 0; i < slot.ok.size(); ++i)
    if (slot.ok[i]) r.kept.push_back(static_cast<int64_t>(i));
  if (r.kept.size() == slot.ok.size()) {
    r.images = slot.images;
  } else if (slot.images.defined()) {
    r.images = slot.images.index_select(0, torch::tensor(r.kept, torch::kLong));
  }
  return r;
}

}  // namespace unravel::data
