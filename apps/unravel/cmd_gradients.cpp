// unravel gradients: gradient per path length (E6) by the exact decomposition, by sampled paths
// (the paper's method) or by brute force. Parses flags and calls src/paths/gradients.h.
#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/util.h"
#include "paths/gradients.h"
#include "train/run.h"

namespace unravel::cli {
namespace {

struct GradientsArgs {
  ExperimentInput input;
  std::string method = "exact";
  int64_t batch_size = 128, batches = 1;
  std::string lengths;
  int64_t samples = 1000;
  double mass = 0.9;
  std::string bn = "eval";
  int sign_samples = 16;
  std::string engine = "auto";
  int threads = 0;
  std::string dtype = "float32";
  std::string device = "auto";
  bool quiet = false;
  std::string json, csv;
};

const char* kFooter = R"(
Definitions. The gradient is d loss / d h0: loss = cross-entropy averaged over the batch, h0 =
the input of block 1 (the stem output); norms are Frobenius norms over the whole batch tensor.
A path S is a set of blocks whose residual branch carries the gradient back (the other blocks:
their shortcut); the forward pass is always the intact network; length = |S|.
  exact   g_k = exact sum of the gradients of all paths of length k, from one forward pass and
          O(n^2) vector-Jacobian products; sum_k g_k must equal the ordinary gradient ("residual").
          Random signs per residual branch (and per sample with --bn eval) give
          E||g_k(eps)||^2 = sum over paths of ||g_S||^2: the mean squared single-path norm with
          its standard error over --sign-samples draws.
  sample  the paper's E6: --samples random paths per length k in --lengths; one backward each.
  brute   all 2^n paths (n <= 16), one gated backward each; the oracle of the tests.
Per length (JSON "lengths", CSV rows; null/empty where a method has no value):
  paths       number of paths of length k (exact decimal; C(n,k), 1 path for plain nets)
  norm        exact, brute: ||g_k||, norm of the summed gradient of all paths of length k
  mean, std   sample, brute: mean and std of single-path norms (exact: mean = rms, std null)
  rms         sqrt(mean_sq); mean_sq (+ mean_sq_se): mean squared single-path norm
  sum_sq      mean_sq x paths (+ sum_sq_se), the sum over all paths of ||g_S||^2
  total       mean x paths (the paper's Fig. 6c); exact: rms x paths (rms >= mean)
  share       total / sum over the reported lengths of total
Summary: residual, grad_norm, effective_range [a, b] = shortest range of lengths holding --mass
of sum_k total (over --lengths for sample), effective_share, seconds. With --batches N every
per-length field is the mean over N training batches (standard errors combined; residual: max).
Batch norm: --bn eval (default) uses the running statistics: a trained network's inference
behaviour, and every sample's gradient is its own. The paper does not say; its E6 ("feed a batch
forward") most likely ran in training mode, which --bn train reproduces (batch statistics; all
methods stay exact; running statistics are never modified).
Data: the training set of the run (else fashion-mnist), no augmentation, batches drawn by --seed.)";

// float32 by default: on CPU, float64 convolutions take a path ~15x slower (no oneDNN). The
// decomposition is exact in either; float64 brings the residual check from ~1e-6 to ~1e-15.
torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  throw UserError("--dtype '" + name + "': expected float32 or float64");
}

void parse_lengths(const std::string& text, paths::GradientOptions& o) {
  if (text.empty()) return;
  const auto colon = text.find(':');
  try {
    size_t used = 0;
    if (colon == std::string::npos) {
      o.min_length = o.max_length = std::stoi(text, &used);
      if (used != text.size()) throw std::invalid_argument("trailing");
    } else {
      o.min_length = std::stoi(text.substr(0, colon), &used);
      if (used != colon) throw std::invalid_argument("trailing");
      const std::string b = text.substr(colon + 1);
      o.max_length = std::stoi(b, &used);
      if (used != b.size()) throw std::invalid_argument("trailing");
    }
  } catch (const std::exception&) {
    throw UserError("--lengths '" + text + "': expected a:b or k (path lengths)");
  }
  if (o.min_length < 0 || o.max_length < o.min_length)
    throw UserError("--lengths '" + text + "': expected 0 <= a <= b");
}

void run_gradients(const GradientsArgs& a) {
  if (a.input.run_dir.empty() && a.input.model.empty())
    throw UserError("gradients: give --run DIR or --model NAME");
  const paths::GradientMethod method = paths::parse_gradient_method(a.method);
  if (a.batch_size < 1) throw UserError(fmt::format("--batch-size {}: expected >= 1", a.batch_size));
  if (a.batches < 1) throw UserError(fmt::format("--batches {}: expected >= 1", a.batches));
  if (a.samples < 1) throw UserError(fmt::format("--samples {}: expected >= 1", a.samples));
  if (a.sign_samples < 0)
    throw UserError(fmt::format("--sign-samples {}: expected >= 0", a.sign_samples));
  if (!(a.mass > 0 && a.mass <= 1)) throw UserError(fmt::format("--mass {}: expected (0, 1]", a.mass));
  paths::GradientOptions opts;
  opts.bn = paths::parse_bn_mode(a.bn);
  opts.engine = paths::parse_sample_engine(a.engine);
  if (opts.engine == paths::SampleEngine::Replicated && opts.bn == paths::BnMode::Train)
    throw UserError("--engine replicated needs --bn eval: batch statistics couple the replicas");
  opts.samples = a.samples;
  opts.sign_samples = a.sign_samples;
  opts.mass = a.mass;
  opts.progress = !a.quiet;
  parse_lengths(a.lengths, opts);
  const torch::ScalarType dtype = parse_dtype(a.dtype);
  const torch::Device device = parse_device(a.device);
  if (!a.json.empty()) check_output_path(a.json, "--json");
  if (!a.csv.empty()) check_output_path(a.csv, "--csv");
  setup_compute(a.threads);

  Experiment exp = load_experiment(a.input);
  models::Network net = exp.loaded.net;
  const int n = net->num_blocks();
  if (method == paths::GradientMethod::Brute && n > 16)
    throw UserError(fmt::format("--method brute: {} has {} blocks, at most 16 allowed "
                                "(use --method exact)", net->spec().name, n));
  if (opts.max_length > n)
    throw UserError(fmt::format("--lengths '{}': longest path of {} is {}", a.lengths,
                                net->spec().name, n));
  net->to(device, dtype);

  data::LoaderOptions lo;
  lo.batch_size = a.batch_size;
  lo.shuffle = true;
  lo.augment = false;
  lo.seed = a.input.seed;
  data::Loader loader(exp.dataset.train, exp.loaded.norm, lo, /*epoch=*/0);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<paths::GradientResult> per_batch;
  data::Batch batch;
  while (static_cast<int64_t>(per_batch.size()) < a.batches && loader.next(batch)) {
    paths::GradientOptions bo = opts;
    bo.seed = a.input.seed * 1000003ULL + per_batch.size();  // fresh sets and signs per batch
    if (!a.quiet)
      std::cerr << fmt::format("gradients: batch {}/{} ({} images)\n", per_batch.size() + 1,
                               a.batches, batch.images.size(0));
    per_batch.push_back(paths::gradients_by_method(method, net, batch.images.to(device, dtype),
                                                   batch.labels.to(device), bo));
  }
  if (per_batch.empty())
    throw UserError("--data '" + exp.loaded.data_spec + "': the training set is empty");
  paths::GradientResult r = paths::average_results(per_batch, opts.mass);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string dtype_name = dtype == torch::kFloat64 ? "float64" : "float32";
  std::cout << fmt::format("gradients: method {}, {} ({} blocks), bn {}, {} batch(es) of {}, {}\n",
                           r.method, net->spec().name, n, paths::bn_mode_name(r.bn), r.batches,
                           r.batch_size, dtype_name);
  std::cout << paths::format_table(r);
  std::cout << fmt::format("time: {}\n", format_duration(r.seconds));

  if (!a.json.empty()) {
    nlohmann::json j = provenance(exp, exp.dataset.train);
    j.update(paths::to_json(r));
    j["command"] = "gradients";
    j["split"] = "train";
    j["dtype"] = dtype_name;
    j["device"] = device.str();
    j["seed"] = a.input.seed;
    if (r.method == "sample") {
      j["samples"] = a.samples;
      j["lengths_range"] = {r.lengths.front().length, r.lengths.back().length};
    }
    if (r.method == "exact") j["sign_samples"] = a.sign_samples;
    write_output_file(a.json, j.dump(2) + "\n", "--json");
  }
  if (!a.csv.empty()) write_output_file(a.csv, paths::to_csv(r), "--csv");
}

}  // namespace

void add_gradients_command(CLI::App& app) {
  auto args = std::make_shared<GradientsArgs>();
  CLI::App* c = app.add_subcommand(
      "gradients", "Gradient per path length (E6): exact decomposition, sampled paths, brute force");
  c->footer(kFooter);
  add_network_source_flags(c, args->input);
  c->add_option("--seed", args->input.seed, "network seed (--model), batches, sampled sets, signs")
      ->capture_default_str();
  c->add_option("--method", args->method, "exact | sample | brute")->capture_default_str();
  c->add_option("--batch-size", args->batch_size, "images per batch")->capture_default_str();
  c->add_option("--batches", args->batches, "average per-length results over N batches")
      ->capture_default_str();
  c->add_option("--lengths", args->lengths, "sample: path lengths a:b (default 0:n)");
  c->add_option("--samples", args->samples, "sample: random paths per length")
      ->capture_default_str();
  c->add_option("--mass", args->mass, "share of the total held by the effective range")
      ->capture_default_str();
  c->add_option("--bn", args->bn, "batch norm: eval (running stats) | train (batch stats)")
      ->capture_default_str();
  c->add_option("--sign-samples", args->sign_samples,
                "exact: random-sign draws for the mean squared path norm (0 = none)")
      ->capture_default_str();
  c->add_option("--engine", args->engine,
                "sample: auto | chain (one forward, per-path VJP chains) | replicated "
                "(batch x R with per-sample gates; --bn eval)")
      ->capture_default_str();
  add_threads_flag(c, args->threads);
  c->add_option("--dtype", args->dtype,
                "float32 | float64 (float64: residual ~1e-15, ~15x slower on CPU)")
      ->capture_default_str();
  c->add_option("--device", args->device, "auto | cpu | cuda")->capture_default_str();
  c->add_flag("--quiet", args->quiet, "no progress lines on stderr");
  c->add_option("--json", args->json, "write the results as JSON");
  c->add_option("--csv", args->csv, "write a row per length as CSV");
  c->callback([args]() { run_gradients(*args); });
}

}  // namespace unravel::cli
