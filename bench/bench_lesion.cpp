// The lesion engine benchmark of issue 3: in one process, the single-block sweep of preresnet56
// (27 blocks + baseline = 28 plans) over 2,000 Fashion-MNIST test images with the prefix-tree
// engine and with the reference engine (one full forward per plan), both on the same folded
// evaluation copy. Prints times, the ratio, achieved GFLOP/s (conv + linear FLOPs of what each
// engine computes) and the ceiling: the best GFLOP/s of one 3x3 convolution of the network at the
// batch size used, over both memory formats.
//
// A plain main() and not Google Benchmark fixtures: one engine run takes tens of seconds, the
// runs of both engines are interleaved (the machine is shared, speed drifts), and the result is a
// ratio of the two. Google Benchmark's DoNotOptimize/ClobberMemory keep the ceiling loop honest.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <tuple>

#include "core/errors.h"
#include "core/util.h"
#include "lesion/lesion.h"
#include "train/run.h"

using namespace unravel;
using torch::Tensor;

namespace {

struct ConvShape {
  int64_t cin, cout, h, w, stride;
  bool operator<(const ConvShape& o) const {
    return std::tie(cin, cout, h, w, stride) < std::tie(o.cin, o.cout, o.h, o.w, o.stride);
  }
};

// The distinct 3x3 convolutions of the residual branches, with their input size.
std::vector<ConvShape> conv3x3_shapes(models::Network& net) {
  std::set<ConvShape> shapes;
  for (int i = 1; i <= net->num_blocks(); ++i) {
    const auto& info = net->block_infos()[i - 1];
    int64_t h = info.in_shape[1], w = info.in_shape[2];
    for (const auto& child : net->block(i).named_children()) {
      auto* c = child.value()->as<torch::nn::Conv2d>();
      if (!c || child.key().find("shortcut") != std::string::npos) continue;
      const auto& wt = c->weight;
      const int64_t stride = c->options.stride()->at(0);
      if (wt.size(2) == 3) shapes.insert({wt.size(1), wt.size(0), h, w, stride});
      h = (h + 2 * 1 - wt.size(2)) / stride + 1;  // padding k/2
      w = (w + 2 * 1 - wt.size(3)) / stride + 1;
    }
  }
  return {shapes.begin(), shapes.end()};
}

// Best GFLOP/s of conv3x3 (+bias, as folded) on `batch` images, over >= min_s seconds.
double conv_gflops(const ConvShape& s, int64_t batch, bool channels_last, double min_s) {
  torch::InferenceMode guard;
  Tensor x = torch::randn({batch, s.cin, s.h, s.w});
  Tensor wt = torch::randn({s.cout, s.cin, 3, 3});
  Tensor b = torch::randn({s.cout});
  if (channels_last) {
    x = x.contiguous(at::MemoryFormat::ChannelsLast);
    wt = wt.contiguous(at::MemoryFormat::ChannelsLast);
  }
  const int64_t ho = (s.h - 1) / s.stride + 1, wo = (s.w - 1) / s.stride + 1;
  const double flops = 2.0 * batch * s.cout * s.cin * 9 * ho * wo;
  for (int i = 0; i < 2; ++i) benchmark::DoNotOptimize(torch::conv2d(x, wt, b, s.stride, 1));
  double best = 0, total = 0;
  while (total < min_s) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor y = torch::conv2d(x, wt, b, s.stride, 1);
    benchmark::DoNotOptimize(y.data_ptr());
    benchmark::ClobberMemory();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += t;
    best = std::max(best, flops / t / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_lesion: prefix-tree vs reference engine on a single-block lesion sweep"};
  std::string model = "preresnet56", data_spec = "fashion-mnist", json_path;
  int64_t images = 2000, batch_size = 250;
  int threads = 0, repeats = 1;
  bool channels_last = false, no_fold = false;
  app.add_option("--model", model, "network (random weights)")->capture_default_str();
  app.add_option("--data", data_spec, "test images (synthetic 1x28x28 if it cannot be read)")->capture_default_str();
  app.add_option("--images", images, "test images")->capture_default_str();
  app.add_option("--batch-size", batch_size, "images per batch")->capture_default_str();
  app.add_option("--threads", threads, "0: all cores")->capture_default_str();
  app.add_option("--repeats", repeats, "runs over all images (the best counts)")->capture_default_str();
  app.add_flag("--channels-last", channels_last, "channels_last weights and activations");
  app.add_flag("--no-fold", no_fold, "keep batch-norm unfolded");
  app.add_option("--json", json_path, "write the numbers as JSON");
  std::vector<int64_t> explore;
  app.add_option("--explore-batch-sizes", explore,
                 "first time the prefix engine at these batch sizes, NCHW and channels_last, interleaved")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);

  try {
    setup_compute(threads);
    // Test images: Fashion-MNIST, else a synthetic stand-in of the same shape.
    data::Split test;
    data::Normalizer norm;
    std::string source;
    try {
      auto ds = data::load_dataset(data::parse_data_spec(data_spec));
      test = data::take_subset(ds.test, images);
      norm = data::Normalizer::for_dataset(ds, ds.train);
      source = ds.spec.str();
    } catch (const UserError& e) {
      std::cerr << "bench_lesion: " << e.what() << "; using synthetic 1x28x28 images\n";
      torch::manual_seed(0);
      test.images = torch::randint(0, 256, {images, 1, 28, 28}, torch::kUInt8);
      test.labels = torch::randint(0, 10, {images}, torch::kInt64);
      norm = data::Normalizer::fit(test.images);
      source = "synthetic 1x28x28 (random)";
    }
    const auto shape = test.images.sizes();

    torch::manual_seed(1);
    models::Network net(models::NetworkOptions(model).in_channels(shape[1]).input_size(shape[2], shape[3]).num_classes(10));
    net->eval();
    const int n = net->num_blocks();
    auto lesions = lesion::single_deletions(net->default_plan(), net->block_infos());
    std::vector<Plan> plans{net->default_plan()};
    for (const auto& l : lesions) plans.push_back(l.plan);
    models::Network ev = unravel::make_eval_copy(net, !no_fold, channels_last);
    auto opts = [&](unravel::Engine e) {
      return unravel::EngineOptions().engine(e).batch_size(batch_size).channels_last(channels_last);
    };

    std::cout << fmt::format("bench_lesion: {} ({} blocks), {} plans, {} images of {}, batch {}, {} threads, {}{}\n",
                             model, n, plans.size(), test.size(), source, batch_size, at::get_num_threads(),
                             no_fold ? "unfolded" : "batch-norm folded", channels_last ? ", channels_last" : "");
    // warm-up: one batch through every plan with both engines
    {
      auto warm = data::take_subset(test, std::min<int64_t>(batch_size, test.size()));
      unravel::evaluate_plans(ev, plans, warm, norm, opts(unravel::Engine::Prefix));
      unravel::evaluate_plans(ev, plans, warm, norm, opts(unravel::Engine::Reference));
    }
    if (!explore.empty()) {
      // Same plans and images, batch size and memory format varied, 3 interleaved rounds (best).
      std::map<std::pair<int64_t, bool>, double> t;
      models::Network ev_cl = unravel::make_eval_copy(net, !no_fold, true);
      models::Network ev_nchw = unravel::make_eval_copy(net, !no_fold, false);
      for (int round = 0; round < 3; ++round)
        for (int64_t bs : explore)
          for (bool cl : {false, true}) {
            unravel::EngineStats st;
            unravel::evaluate_plans(cl ? ev_cl : ev_nchw, plans, test, norm,
                                   unravel::EngineOptions().batch_size(bs).channels_last(cl), &st);
            auto& v = t[{bs, cl}];
            v = round == 0 ? st.seconds : std::min(v, st.seconds);
          }
      std::cout << fmt::format("prefix engine, {} images: seconds (best of 3)\n{:>6} {:>8} {:>14}\n",
                               test.size(), "batch", "NCHW", "channels_last");
      for (int64_t bs : explore)
        std::cout << fmt::format("{:>6} {:>8.2f} {:>14.2f}\n", bs, t[{bs, false}], t[{bs, true}]);
      return 0;
    }
    // The engines take turns batch by batch (the one going first alternates), so that a burst of
    // load from other processes hits both alike; each engine's time is the sum over its batches,
    // and the median of the per-batch ratios is printed as a check against bursts.
    unravel::EngineStats best[2];
    std::vector<double> batch_ratios;
    std::vector<Metrics> results[2];
    for (int r = 0; r < repeats; ++r) {
      unravel::EngineStats sum[2];
      std::vector<Metrics> acc[2];
      int turn = 0;
      for (int64_t a = 0; a < test.size(); a += batch_size, ++turn) {
        data::Split chunk;
        const int64_t b = std::min<int64_t>(test.size(), a + batch_size);
        chunk.images = test.images.slice(0, a, b);
        chunk.labels = test.labels.slice(0, a, b);
        double sec[2] = {0, 0};
        for (int i = 0; i < 2; ++i) {
          const int e = (turn + i) % 2;
          unravel::EngineStats st;
          auto m = unravel::evaluate_plans(ev, plans, chunk, norm,
                                          opts(e == 0 ? unravel::Engine::Prefix : unravel::Engine::Reference), &st);
          if (acc[e].empty()) acc[e] = m;
          else for (size_t p = 0; p < m.size(); ++p) acc[e][p].merge(m[p]);
          sec[e] = st.seconds;
          auto& t = sum[e];
          t.images += st.images, t.batches += st.batches, t.stem_evaluations += st.stem_evaluations;
          t.residual_evaluations += st.residual_evaluations, t.shortcut_evaluations += st.shortcut_evaluations;
          t.head_evaluations += st.head_evaluations, t.flops += st.flops, t.seconds += st.seconds;
        }
        batch_ratios.push_back(sec[1] / sec[0]);
      }
      for (int e = 0; e < 2; ++e) {
        std::cerr << fmt::format("[bench] run {} {}: {:.2f} s\n", r + 1, e == 0 ? "prefix" : "reference", sum[e].seconds);
        if (r == 0 || sum[e].seconds < best[e].seconds) best[e] = sum[e];
        results[e] = acc[e];
      }
    }
    std::sort(batch_ratios.begin(), batch_ratios.end());
    const double median_ratio = batch_ratios[batch_ratios.size() / 2];
    bool same = true;
    for (size_t p = 0; p < plans.size(); ++p) same = same && results[0][p].correct == results[1][p].correct;

    // ceiling: the best 3x3 convolution of the network at this batch size
    double ceiling = 0;
    std::string ceiling_what;
    std::cout << "\nceiling: 3x3 convolutions of the network, batch " << batch_size << " (GFLOP/s, best of >= 0.5 s)\n";
    std::cout << fmt::format("  {:<26} {:>8} {:>14}\n", "conv", "NCHW", "channels_last");
    for (const auto& s : conv3x3_shapes(net)) {
      const double a = conv_gflops(s, batch_size, false, 0.5), b = conv_gflops(s, batch_size, true, 0.5);
      const std::string what = fmt::format("{}->{} @{}x{} /{}", s.cin, s.cout, s.h, s.w, s.stride);
      std::cout << fmt::format("  {:<26} {:>8.1f} {:>14.1f}\n", what, a, b);
      if (std::max(a, b) > ceiling) {
        ceiling = std::max(a, b);
        ceiling_what = what + (b > a ? " channels_last" : " NCHW");
      }
    }

    const double ratio = best[1].seconds / best[0].seconds;
    std::cout << fmt::format("\n{:<10} {:>9} {:>12} {:>11} {:>11} {:>9} {:>10}\n", "engine", "seconds",
                             "plan-img/s", "residual", "GFLOP", "GFLOP/s", "% ceiling");
    for (int e = 0; e < 2; ++e) {
      const auto& st = best[e];
      const double gf = st.flops / 1e9 / st.seconds;
      std::cout << fmt::format("{:<10} {:>9.2f} {:>12.0f} {:>11} {:>11.1f} {:>9.1f} {:>9.1f}%\n",
                               e == 0 ? "prefix" : "reference", st.seconds,
                               static_cast<double>(st.images * plans.size()) / st.seconds,
                               st.residual_evaluations, st.flops / 1e9, gf, 100.0 * gf / ceiling);
    }
    std::cout << fmt::format("\nratio reference / prefix: {:.2f}x (target >= 2.0x); median over {} batches {:.2f}x; "
                             "FLOP ratio {:.2f}x\n", ratio, batch_ratios.size(), median_ratio,
                             best[1].flops / best[0].flops);
    std::cout << fmt::format("ceiling: {:.1f} GFLOP/s ({})\n", ceiling, ceiling_what);
    std::cout << "correct counts per plan identical in both engines: " << (same ? "yes" : "NO") << "\n";
    std::cout << "(GFLOP/s count the direct-convolution FLOPs; oneDNN may use fewer, e.g. Winograd)\n";
    if (!json_path.empty()) {
      nlohmann::json j = {{"model", model}, {"blocks", n}, {"plans", plans.size()}, {"images", test.size()},
                          {"data", source}, {"batch_size", batch_size}, {"threads", at::get_num_threads()},
                          {"channels_last", channels_last}, {"fold_batchnorm", !no_fold},
                          {"prefix", best[0].to_json()}, {"reference", best[1].to_json()},
                          {"ratio", ratio}, {"median_batch_ratio", median_ratio}, {"ceiling_gflop_per_s", ceiling}, {"ceiling_conv", ceiling_what},
                          {"same_correct_counts", same}, {"build", build_info()}};
      write_json_atomic(json_path, j);
    }
    return same ? 0 : 1;
  } catch (const UserError& e) {
    std::cerr << "bench_lesion: error: " << e.what() << "\n";
    return 1;
  }
}
