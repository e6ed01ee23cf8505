// E2 as a table of steps: import a pretrained network (torchvision's, or one exported by
// unravel) into DIR/runs/imported, then delete every block alone (E2, the paper's ImageNet
// lesion study), delete k random blocks (E3), swap k random pairs (E4) and decompose the
// gradient per path length exactly (E6) on the images of --data.
#include <fmt/format.h>

#include "core/errors.h"
#include "core/hash.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "paths/path_counts.h"
#include "pytorch/exchange.h"
#include "repro/steps.h"

namespace unravel::repro {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Imports --weights once; a later invocation reuses the import when the file is unchanged.
void import_step(Context& ctx, StepRunner& runner) {
  runner.announce();
  const auto t0 = Clock::now();
  RunSpec& run = ctx.runs.at("imported");
  const RunDirectory rd(run.train.out);
  const std::string fp = file_fingerprint(ctx.opts.weights);
  std::string status = "imported";
  if (rd.has_config()) {
    const RunConfig c = rd.read_config();
    if (c.source.value("fingerprint", std::string()) != fp || c.model != ctx.opts.arch)
      throw UserError(fmt::format("{} holds an import of another file or architecture: use another --out",
                                  run.train.out));
    status = "cached";
  } else {
    pytorch::ImportOptions io;
    io.weights = ctx.opts.weights;
    io.arch = ctx.opts.arch;
    io.out = run.train.out;
    io.input = {ctx.dataset.channels, ctx.dataset.height, ctx.dataset.width};
    const pytorch::ImportResult r = pytorch::import_network(io);
    ctx.config["import"] = {{"format", r.format}, {"tensors", r.tensors}};
  }
  ctx.fingerprints["imported"] = ctx.fingerprint(run);
  ctx.config["runs"]["imported"] = {{"dir", "runs/" + run.name}, {"weights", ctx.opts.weights},
                                    {"arch", ctx.opts.arch}, {"fingerprint", fp}};
  runner.finish(status, seconds_since(t0), 0);
}

}  // namespace

std::vector<StepDef> imagenet_steps(Context& ctx) {
  RunSpec run;
  run.role = "imported";
  run.name = "imported";
  run.train.out = ctx.dir + "/runs/imported";
  ctx.runs.emplace("imported", run);
  const Preset& p = ctx.preset;
  const int n = ctx.sizes.n;
  // Cost per image and block of a 224x224 bottleneck net on 2 CPU cores (inference), for the ETA.
  const double per = 0.0007 * static_cast<double>(ctx.dataset.height * ctx.dataset.width) / (224.0 * 224.0);
  const double te = static_cast<double>(ctx.test.size()), ste = static_cast<double>(ctx.sweep_test.size());
  const std::string dk = fmt::format("1:{}", ctx.sizes.delete_k_max), sk = fmt::format("1:{}", ctx.sizes.swap_k_max);
  lesion::LesionOptions single, del, swap;
  single.single = true;
  del.delete_random = dk;
  del.samples = p.lesion_samples;
  swap.swap_random = sk;
  swap.samples = p.lesion_samples;
  std::vector<StepDef> steps = {
      {"import", fmt::format("import {} from {}", ctx.opts.arch, ctx.opts.weights), 5, import_step},
      {"E5", fmt::format("path lengths of {} blocks", n), 0,
       [n](Context& c, StepRunner& r) {
         c.results["E5"] = r.cached_or_compute({{"n", n}}, [&] { return paths::path_lengths(paths::PathOptions(n)).to_json(); });
       }},
      {"E2", fmt::format("delete each of {} blocks of {} on {} images", n, ctx.opts.arch, ctx.test.size()),
       te * (n * (n + 1) / 2.0 + n) * per, lesion_step("E2", "", "imported", {{"sweep", "single"}}, single, false)},
      {"E3", fmt::format("delete k = 1..{} random blocks, {} sets per k", ctx.sizes.delete_k_max, p.lesion_samples),
       ste * ctx.sizes.delete_k_max * p.lesion_samples * 0.8 * n * per,
       lesion_step("E3", "", "imported", {{"delete_random", dk}, {"samples", p.lesion_samples}}, del, true)},
      {"E4", fmt::format("k = 1..{} random swaps, {} orders per k", ctx.sizes.swap_k_max, p.lesion_samples),
       ste * ctx.sizes.swap_k_max * p.lesion_samples * n * per,
       lesion_step("E4", "", "imported", {{"swap_random", sk}, {"samples", p.lesion_samples}}, swap, true)},
      {"E6.exact", fmt::format("exact gradient per path length, batch {}", p.grad_batch),
       n * (n + 1) / 2.0 * p.grad_batch * (1 + p.sign_samples / 2.0) * 3 * per,
       [](Context& c, StepRunner& r) {
         const json in = c.run_inputs("imported", {{"method", "exact"}, {"batch", c.preset.grad_batch}, {"bn", "eval"},
                                                   {"train_images", c.train.size()},
                                                   {"sign_samples", c.preset.sign_samples}});
         c.results["E6"]["exact"] = r.cached_or_compute(in, [&] { return c.gradient_study(c.runs.at("imported"), "exact"); });
       }},
  };
  if (ctx.sizes.swap_k_max == 0)
    steps.erase(std::remove_if(steps.begin(), steps.end(), [](const StepDef& s) { return s.id == "E4"; }), steps.end());
  return steps;
}

}  // namespace unravel::repro
