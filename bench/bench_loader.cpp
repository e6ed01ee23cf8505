// Loader throughput (ms per batch of 128, shuffled, with and without crop + flip) on in-memory
// splits of Fashion-MNIST's and CIFAR's shapes: a measurement printed, moved here from the tests
// (tests/test_data.cpp checks what the loader does). The trainer needs well under 5 ms a batch
// next to a ~200 ms ResNet-20 step.
// Usage: bench_loader [--repeat R]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "data/dataset.h"

using namespace unravel;

int main(int argc, char** argv) {
  int repeat = 3;  // epochs timed per setting; the fastest is printed
  for (int i = 1; i + 1 < argc; i += 2)
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::max(1, std::atoi(argv[i + 1]));
  torch::manual_seed(1);
  for (const auto& shape : {std::vector<int64_t>{8192, 1, 28, 28}, {2048, 3, 32, 32}}) {
    data::Split s;
    s.images = torch::randint(0, 256, {shape[0], shape[1], shape[2], shape[3]}, torch::kLong).to(torch::kUInt8);
    s.labels = torch::randint(0, 10, {shape[0]}, torch::kLong);
    const data::Normalizer n = data::Normalizer::fit(s.images);
    for (bool augment : {false, true}) {
      data::LoaderOptions o;
      o.batch_size = 128;
      o.shuffle = true;
      o.augment = augment;
      double best_ms = 1e30;
      for (int r = 0; r < repeat; ++r) {
        data::Loader l(s, n, o, /*epoch=*/r);
        data::Batch b;
        int64_t count = 0;
        const auto t0 = std::chrono::steady_clock::now();
        while (l.next(b)) ++count;
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        best_ms = std::min(best_ms, ms / static_cast<double>(count));
      }
      std::printf("Loader, 128 x %lldx%lldx%lld, shuffle, augment=%d: %.3f ms/batch (best of %d epochs)\n",
                  (long long)shape[1], (long long)shape[2], (long long)shape[3], (int)augment, best_ms, repeat);
    }
  }
  return 0;
}
