// Gradient per path length: the exact decomposition against the paper's sampled backward passes
// (1000 random paths per length), in one process, on one batch through a random preresnet56.
// Prints both times and the ratio (target: exact >= 50x faster). Sampling every length takes
// long on 2 cores, so by default a spread of lengths is timed and the total extrapolated
// linearly in the number of lengths (--full times them all); the output says which.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/plan.h"
#include "paths/gradients.h"
#include "train/run.h"

namespace {

using unravel::paths::GradientOptions;
using unravel::paths::SampleEngine;

template <class Fn>
double time_s(Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_gradients: exact per-length decomposition vs sampled paths (E6)"};
  std::string model = "preresnet56", lengths_text = "2,8,14,20,26", dtype_name = "float32";
  int64_t batch = 32, samples = 1000, replicated_samples = 100;
  int threads = 0, sign_samples = 16;
  bool full = false;
  app.add_option("--model", model, "network (random weights, 1x28x28 inputs)")->capture_default_str();
  app.add_option("--batch-size", batch, "images per batch")->capture_default_str();
  app.add_option("--samples", samples, "sampled paths per length")->capture_default_str();
  app.add_option("--lengths", lengths_text, "lengths timed for sampling (extrapolated)")
      ->capture_default_str();
  app.add_flag("--full", full, "time sampling at every length (no extrapolation)");
  app.add_option("--replicated-samples", replicated_samples,
                 "paths timed with the replicated engine (0 = skip)")
      ->capture_default_str();
  app.add_option("--sign-samples", sign_samples, "random-sign draws of the second exact timing")
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--dtype", dtype_name, "float32 | float64")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::cout << std::unitbuf;  // progress lines appear as they are measured
  try {
    unravel::setup_compute(threads);
    const auto dtype = dtype_name == "float64" ? torch::kFloat64 : torch::kFloat32;
    torch::manual_seed(0);
    unravel::models::Network net(
        unravel::models::NetworkOptions(model).in_channels(1).input_size(28, 28).num_classes(10));
    net->to(dtype);
    net->eval();
    const int n = net->num_blocks();
    const torch::Tensor images = torch::randn({batch, 1, 28, 28}, dtype);    // (B, 1, 28, 28)
    const torch::Tensor labels = torch::randint(0, 10, {batch}, torch::kLong);  // (B)
    std::vector<int> lengths;
    if (full) {
      lengths.resize(n + 1);
      std::iota(lengths.begin(), lengths.end(), 0);
    } else {
      lengths = unravel::parse_index_list(lengths_text, "--lengths");
    }
    for (int k : lengths)
      if (k < 0 || k > n) throw unravel::UserError(fmt::format("--lengths: {} is not in 0..{}", k, n));

    std::cout << fmt::format("bench_gradients: {} ({} blocks), batch {} x 1x28x28, {}, {} threads\n",
                             model, n, batch, dtype_name, torch::get_num_threads());
    // Reference unit: one ordinary forward + backward to the input of block 1.
    unravel::paths::input_gradient(net, images, labels, unravel::paths::BnMode::Eval);  // warm-up
    const double t_fb = time_s([&] {
      unravel::paths::input_gradient(net, images, labels, unravel::paths::BnMode::Eval);
    });
    std::cout << fmt::format("ordinary forward+backward:            {:8.3f} s\n", t_fb);

    GradientOptions eo;
    eo.sign_samples = 0;
    double residual = 0;
    const double t_exact = time_s([&] {
      residual = unravel::paths::exact_gradients(net, images, labels, eo).residual;
    });
    std::cout << fmt::format(
        "exact (per-length sums + check):      {:8.3f} s  = {:.1f} forward+backward; residual {:.2g}\n",
        t_exact, t_exact / t_fb, residual);
    eo.sign_samples = sign_samples;
    const double t_exact_signs =
        time_s([&] { unravel::paths::exact_gradients(net, images, labels, eo); });
    std::cout << fmt::format("exact + {:2d} random-sign draws:         {:8.3f} s\n", sign_samples,
                             t_exact_signs);

    // Sampling (chain engine, the default), length by length.
    double t_lengths = 0;
    for (int k : lengths) {
      GradientOptions so;
      so.samples = samples;
      so.min_length = so.max_length = k;
      so.engine = SampleEngine::Chain;
      const double t = time_s([&] { unravel::paths::sample_gradients(net, images, labels, so); });
      t_lengths += t;
      std::cout << fmt::format("sample k={:2d}, {} paths (chain):       {:8.3f} s\n", k, samples, t);
    }
    const int all_lengths = n + 1;
    const double t_sample = t_lengths / static_cast<double>(lengths.size()) * all_lengths;
    const bool extrapolated = static_cast<int>(lengths.size()) != all_lengths;
    std::cout << fmt::format(
        "sample, all {} lengths x {} paths:    {:8.3f} s{}\n", all_lengths, samples, t_sample,
        extrapolated ? fmt::format("  (EXTRAPOLATED linearly from {} timed lengths)", lengths.size())
                     : "");

    // The replicated engine (batch x R with per-sample gates) at the middle length, per path.
    if (replicated_samples > 0) {
      const int k = n / 2;
      GradientOptions ro;
      ro.samples = replicated_samples;
      ro.min_length = ro.max_length = k;
      ro.engine = SampleEngine::Replicated;
      const double t_rep = time_s([&] { unravel::paths::sample_gradients(net, images, labels, ro); });
      ro.engine = SampleEngine::Chain;
      const double t_chain = time_s([&] { unravel::paths::sample_gradients(net, images, labels, ro); });
      std::cout << fmt::format(
          "engines at k={}, {} paths: replicated {:.3f} s, chain {:.3f} s ({:.2f} ms vs {:.2f} ms per path)\n",
          k, replicated_samples, t_rep, t_chain, 1e3 * t_rep / replicated_samples,
          1e3 * t_chain / replicated_samples);
    }
    std::cout << fmt::format("ratio sample / exact:                 {:8.1f}x  (target >= 50x){}\n",
                             t_sample / t_exact, extrapolated ? "  [sample time extrapolated]" : "");
    std::cout << fmt::format("ratio sample / (exact + {} signs):    {:8.1f}x\n", sign_samples,
                             t_sample / t_exact_signs);
    // The paper's procedure without the chain engine's sharing: a forward and a backward per path.
    const double t_naive = static_cast<double>(all_lengths) * samples * t_fb;
    std::cout << fmt::format(
        "ratio naive sampling / exact:         {:8.1f}x  (naive = {} x {} x forward+backward = "
        "{:.0f} s, ESTIMATED)\n",
        t_naive / t_exact, all_lengths, samples, t_naive);
  } catch (const unravel::UserError& e) {
    std::cerr << "bench_gradients: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
