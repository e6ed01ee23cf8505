// Training and evaluation throughput (images/s) of preresnet20/56/110 on Fashion-MNIST-shaped
// batches, and the share of a training step spent preparing data, in one process.
// Usage: bench_train [--threads N] [--steps S] [--models preresnet20,preresnet56]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/network.h"
#include "train/run.h"

using namespace unravel;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, steps = 8;
  std::string models = "preresnet20,preresnet56,preresnet110";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--models")) models = argv[i + 1];
  }
  setup_compute(threads);
  // Real data when installed, else synthetic images of the same shape.
  data::Dataset ds;
  try {
    ds = data::load_dataset(data::parse_data_spec("fashion-mnist"));
  } catch (const std::exception&) {
    ds = data::load_dataset(data::parse_data_spec("synthetic:train=2048,test=1024,size=28,channels=1"));
  }
  auto norm = data::Normalizer::for_dataset(ds, ds.train);
  data::LoaderOptions lo;
  lo.batch_size = 128;
  lo.shuffle = true;
  lo.augment = true;
  std::printf("threads %d, batch 128, %d timed steps after 2 warm-up steps, data %s\n", torch::get_num_threads(),
              steps, ds.spec.str().c_str());
  std::printf("%-14s %8s %14s %14s %12s\n", "model", "blocks", "train img/s", "eval img/s", "data share");
  size_t pos = 0;
  while (pos < models.size()) {
    size_t comma = models.find(',', pos);
    std::string name = models.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? models.size() : comma + 1;
    torch::manual_seed(0);
    models::Network net(models::NetworkOptions(name).in_channels(1).input_size(28, 28));
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-4));
    data::Loader loader(ds.train, norm, lo, 1);
    data::Batch b;
    double data_s = 0, step_s = 0;
    net->train();
    for (int s = 0; s < steps + 2; ++s) {
      auto t0 = Clock::now();
      loader.next(b);
      double d = seconds_since(t0);
      auto loss = torch::nn::functional::cross_entropy(net->forward(b.images), b.labels);
      opt.zero_grad();
      loss.backward();
      opt.step();
      if (s >= 2) {
        data_s += d;
        step_s += seconds_since(t0);
      }
    }
    net->eval();
    torch::InferenceMode im;
    auto x = norm.apply(ds.test.images.slice(0, 0, 500));
    net->forward(x);  // warm-up
    auto t0 = Clock::now();
    const int eval_reps = 3;
    for (int r = 0; r < eval_reps; ++r) net->forward(x);
    double eval_s = seconds_since(t0);
    std::printf("%-14s %8d %14.1f %14.1f %11.2f%%\n", name.c_str(), net->num_blocks(), steps * 128 / step_s,
                eval_reps * 500 / eval_s, 100.0 * data_s / step_s);
    std::fflush(stdout);
  }
  return 0;
}
