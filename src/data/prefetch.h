// Read-ahead for streamed splits: worker threads decode the images of the next batches while
// the network works on the current one, never more than `ahead` batches at a time (memory
// stays bounded whatever the data set's size).
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/stream.h"

namespace unravel::data {

class Prefetcher {
 public:
  // batches[b] lists the stream items of batch b, in order; `seeds[b][i]` the augmentation seed
  // of each (ignored unless augment).
  Prefetcher(std::shared_ptr<const ImageStream> stream, std::vector<std::vector<int64_t>> batches,
             std::vector<std::vector<uint64_t>> seeds, bool augment, int workers, int ahead);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  struct Result {
    torch::Tensor images;       // (B', C, H, W) uint8: the images that could be read
    std::vector<int64_t> kept;  // their slots in the batch (B' <= B; skipped files left out)
  };
  // The next batch, in order; blocks until its images are decoded. Rethrows the UserError of
  // an unreadable file (streams that do not skip bad files).
  Result next();

 private:
  struct Slot {
    torch::Tensor images;    // (B, C, H, W) uint8, allocated when the batch is started
    std::vector<char> ok;    // per image: read
    int64_t remaining = 0;   // images not yet done
    std::string error;       // first failure
  };
  void work();

  std::shared_ptr<const ImageStream> stream_;
  std::vector<std::vector<int64_t>> batches_;
  std::vector<std::vector<uint64_t>> seeds_;
  bool augment_;
  int ahead_;
  std::vector<Slot> slots_;
  size_t next_batch_ = 0, next_image_ = 0;  // the next task to hand out
  size_t consumed_ = 0;                     // batches returned by next()
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> threads_;
};

}  // namespace unravel::data
