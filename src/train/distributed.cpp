// c10d process groups (Gloo) behind the Communicator, and the gradient all-reduce of a
// data-parallel step. Built with Gloo only when CMake found its headers (UNRAVEL_WITH_GLOO).
#include "train/distributed.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/errors.h"
#include "core/util.h"

#ifdef UNRAVEL_WITH_GLOO
#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace unravel {

using torch::Tensor;

void check_distributed_options(const DistributedOptions& o) {
  if (o.world_size < 1) throw UserError(fmt::format("--world-size must be at least 1, got {}", o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw UserError(fmt::format("--rank {} is not in 0..{} (--world-size {})", o.rank, o.world_size - 1, o.world_size));
  if (o.world_size == 1) return;
  const bool file = o.store.rfind("file:", 0) == 0 && o.store.size() > 5;
  const bool tcp = o.store.rfind("tcp:", 0) == 0;
  if (!file && !tcp)
    throw UserError(fmt::format("--store '{}': expected file:PATH or tcp:HOST:PORT (needed with --world-size {})",
                                o.store, o.world_size));
  if (file) {  // c10d's FileStore would retry opening a file in a missing directory until the timeout
    const std::filesystem::path parent = std::filesystem::absolute(o.store.substr(5)).parent_path();
    if (!std::filesystem::is_directory(parent))
      throw UserError(fmt::format("--store '{}': directory {} does not exist", o.store, parent.string()));
  }
  if (tcp) {
    const std::string hp = o.store.substr(4);
    const auto colon = hp.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < hp.size();
    if (ok) {
      const std::string port = hp.substr(colon + 1);
      ok = port.find_first_not_of("0123456789") == std::string::npos && port.size() <= 5 && std::stoi(port) > 0 &&
           std::stoi(port) < 65536;
    }
    if (!ok) throw UserError(fmt::format("--store '{}': expected tcp:HOST:PORT with a port in 1..65535", o.store));
  }
  if (o.timeout_s < 1) throw UserError(fmt::format("distributed timeout must be >= 1 s, got {}", o.timeout_s));
}

torch::Device rank_device(torch::Device d, int rank, int world_size) {
  if (!d.is_cuda() || world_size == 1) return d;
  const int gpus = static_cast<int>(torch::cuda::device_count());
  return gpus > 0 ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(rank % gpus)) : d;
}

std::pair<int64_t, int64_t> shard_range(int64_t global, int rank, int world) {
  return {global * rank / world, global * (rank + 1) / world};
}

bool Communicator::available() {
#ifdef UNRAVEL_WITH_GLOO
  return true;
#else
  return false;
#endif
}

#ifdef UNRAVEL_WITH_GLOO

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

namespace {

c10::intrusive_ptr<c10d::Store> make_store(const DistributedOptions& o) {
  if (o.store.rfind("file:", 0) == 0) return c10::make_intrusive<c10d::FileStore>(o.store.substr(5), o.world_size);
  const std::string hp = o.store.substr(4);
  const auto colon = hp.rfind(':');
  c10d::TCPStoreOptions t;
  t.port = static_cast<uint16_t>(std::stoi(hp.substr(colon + 1)));
  t.isServer = o.rank == 0;
  t.numWorkers = o.world_size;
  t.waitWorkers = true;
  t.timeout = std::chrono::milliseconds(1000LL * o.timeout_s);
  return c10::make_intrusive<c10d::TCPStore>(hp.substr(0, colon), t);
}

}  // namespace

Communicator::Communicator(const DistributedOptions& o) : rank_(o.rank), size_(o.world_size) {
  check_distributed_options(o);
  if (size_ == 1) return;
  impl_ = std::make_unique<Impl>();
  try {
    impl_->store = make_store(o);
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->timeout = std::chrono::milliseconds(1000LL * o.timeout_s);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    opts->devices.push_back(ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank_, size_, opts);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    throw UserError(fmt::format("--store {}: rank {} of {} could not join the group: {}", o.store, rank_, size_,
                                what.substr(0, what.find('\n'))));
  }
}

namespace {

// A collective fails when another rank stops (connection closed, timeout): one line, not a trace.
template <class F>
void collective(int rank, int size, const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    const std::string m = e.what();
    throw PeerError(fmt::format("data-parallel rank {} of {}: {} failed, did another rank stop? ({})", rank, size,
                                what, m.substr(0, m.find('\n'))));
  }
}

}  // namespace

void Communicator::allreduce_sum(Tensor& t) {
  if (size_ == 1) return;
  collective(rank_, size_, "all-reduce", [&] {
    std::vector<Tensor> v{t};
    impl_->pg->allreduce(v)->wait();
  });
}

void Communicator::broadcast(Tensor& t, int root) {
  if (size_ == 1) return;
  collective(rank_, size_, "broadcast", [&] {
    std::vector<Tensor> v{t};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->pg->broadcast(v, bo)->wait();
  });
}

void Communicator::barrier() {
  if (size_ == 1) return;
  collective(rank_, size_, "barrier", [&] { impl_->pg->barrier()->wait(); });
}

#else  // no Gloo in this build: world size 1 only

struct Communicator::Impl {};

Communicator::Communicator(const DistributedOptions& o) : rank_(o.rank), size_(o.world_size) {
  check_distributed_options(o);
  if (size_ > 1)
    throw UserError(fmt::format("--world-size {}: this build has no c10d Gloo (install libgloo-dev and rebuild)",
                                size_));
}
void Communicator::allreduce_sum(Tensor&) {}
void Communicator::broadcast(Tensor&, int) {}
void Communicator::barrier() {}

#endif

Communicator::~Communicator() = default;

void sync_gradients(Communicator& comm, const std::vector<Tensor>& params, int64_t shard, int64_t global,
                    std::vector<double>& stats) {
  if (comm.size() == 1) return;
  torch::NoGradGuard ng;
  const size_t np = params.size(), ns = stats.size();
  // First: the statistics and which parameters have a gradient anywhere (float64, small).
  Tensor head = torch::zeros({static_cast<int64_t>(ns + np)}, torch::kFloat64);
  auto h = head.accessor<double, 1>();
  for (size_t i = 0; i < ns; ++i) h[i] = stats[i];
  for (size_t p = 0; p < np; ++p) h[ns + p] = params[p].grad().defined() ? 1.0 : 0.0;
  comm.allreduce_sum(head);
  for (size_t i = 0; i < ns; ++i) stats[i] = h[i];
  // Then the gradients that exist somewhere, each weighted by this rank's share of the batch.
  const double weight = static_cast<double>(shard) / static_cast<double>(global);
  std::vector<Tensor> flat;
  std::vector<size_t> which;
  for (size_t p = 0; p < np; ++p) {
    if (h[ns + p] == 0) continue;
    const Tensor& g = params[p].grad();
    flat.push_back(g.defined() ? g.reshape({-1}) * weight : torch::zeros({params[p].numel()}, params[p].options()));
    which.push_back(p);
  }
  if (flat.empty()) return;
  Tensor buf = torch::cat(flat);
  comm.allreduce_sum(buf);
  int64_t off = 0;
  for (size_t p : which) {
    Tensor param = params[p];
    const int64_t k = param.numel();
    Tensor g = buf.slice(0, off, off + k).view(param.sizes());
    if (param.grad().defined()) param.mutable_grad().copy_(g);
    else param.mutable_grad() = g.clone();
    off += k;
  }
}

void allreduce_metrics(Communicator& comm, std::vector<Metrics*> metrics) {
  if (comm.size() == 1 || metrics.empty()) return;
  int64_t len = 0;
  for (const Metrics* m : metrics) len += 4 + 2 * static_cast<int64_t>(m->class_n.size());
  Tensor t = torch::zeros({len}, torch::kFloat64);
  auto v = t.accessor<double, 1>();
  int64_t i = 0;
  for (const Metrics* m : metrics) {
    v[i++] = static_cast<double>(m->n), v[i++] = static_cast<double>(m->correct);
    v[i++] = static_cast<double>(m->correct5), v[i++] = m->loss_sum;
    for (size_t c = 0; c < m->class_n.size(); ++c)
      v[i++] = static_cast<double>(m->class_n[c]), v[i++] = static_cast<double>(m->class_correct[c]);
  }
  comm.allreduce_sum(t);
  i = 0;
  for (Metrics* m : metrics) {
    m->n = std::llround(v[i++]), m->correct = std::llround(v[i++]);
    m->correct5 = std::llround(v[i++]), m->loss_sum = v[i++];
    for (size_t c = 0; c < m->class_n.size(); ++c)
      m->class_n[c] = std::llround(v[i++]), m->class_correct[c] = std::llround(v[i++]);
  }
}

}  // namespace unravel
