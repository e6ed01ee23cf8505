// Data-parallel training over libtorch's own c10d process groups (docs/design.md, "Data
// parallelism"): Gloo on CPU, no home-made transport. A Communicator is one rank's handle on the
// group; with world size 1 it is a no-op and needs no c10d at all.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/distributed_options.h"
#include "train/evaluate.h"

namespace unravel {

class Communicator {
 public:
  // Joins the group (blocks until all ranks have joined). UserError when world_size > 1 and this
  // build has no Gloo, or the store cannot be reached.
  explicit Communicator(const DistributedOptions& o);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  void allreduce_sum(torch::Tensor& t);         ///< in place, every rank gets the sum
  void broadcast(torch::Tensor& t, int root = 0);  ///< in place, every rank gets root's values
  void barrier();

  // Whether this build can run more than one rank (libtorch with c10d Gloo and its headers).
  static bool available();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

// The device of a rank: for CUDA with several ranks, GPU rank mod the GPUs present (ranks
// numbered machine by machine); otherwise `d` itself.
torch::Device rank_device(torch::Device d, int rank, int world_size);

// Images [begin, end) of a global batch of `global` images that rank `rank` of `world` takes:
// contiguous, sizes differ by at most one, in rank order.
std::pair<int64_t, int64_t> shard_range(int64_t global, int rank, int world);

// After backward on this rank's shard (loss = mean over the shard): makes every rank's gradients
// the gradient of the mean loss over the whole global batch (each rank's weighted by its shard
// size), in one all-reduce. A parameter without a gradient on every rank (a block skipped by the
// mini-batch's plan) stays without one. `stats` (e.g. summed loss and correct answers) is summed
// over ranks in the same call.
void sync_gradients(Communicator& comm, const std::vector<torch::Tensor>& params, int64_t shard,
                    int64_t global, std::vector<double>& stats);

// Sums the counts of `metrics` (n, correct, loss, per class) over ranks, in one all-reduce:
// metrics of disjoint shards of a test set become the metrics of the whole set.
void allreduce_metrics(Communicator& comm, std::vector<Metrics*> metrics);

}  // namespace unravel
