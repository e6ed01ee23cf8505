// The paper's reproduction as a table of steps: train the pre-activation ResNet, its plain
// control, a stochastic-depth twin and a short-path (k of n blocks) twin, and run E1 and E3-E9
// on them. Each step names its inputs, so an unchanged step is reused from DIR/steps.
#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "core/util.h"
#include "models/network.h"
#include "paths/path_counts.h"
#include "repro/steps.h"
#include "train/run.h"

namespace unravel::repro {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Rough cost of each step in seconds of one thread, from the rates measured with the quick preset:
// used only for the "about X left" of the progress lines, rescaled by the speed observed so far.
struct CostModel {
  double pixels = 1;                  ///< image pixels / 784 (Fashion-MNIST)
  double train_image_block = 1.9e-4;  ///< training, per image and block
  double eval_image_block = 4.0e-5;   ///< folded inference, per image and block
  double grad_image_block = 2.5e-5;   ///< backward chains (suffixes shared), per image and block
};

int blocks_of(const std::string& model) {
  int n = 0;
  for (int b : models::ModelSpec::parse(model).blocks_per_stage) n += b;
  return n;
}

void train_step(Context& ctx, StepRunner& runner, const std::string& role) {
  runner.announce();
  const auto t0 = Clock::now();
  RunSpec& run = ctx.runs.at(role);
  const int before = RunDirectory(run.train.out).read_summary().value("epochs", 0);
  const TrainSummary s = train(run.train);
  const std::string status = before >= run.train.epochs ? "cached" : (before > 0 ? "resumed" : "trained");
  ctx.fingerprints[role] = ctx.fingerprint(run);
  ctx.config["runs"][role]["test_error"] = s.test_error;
  runner.finish(status, seconds_since(t0), s.json.value("train_seconds", 0.0));
}

lesion::LesionOptions single_options() {
  lesion::LesionOptions lo;
  lo.single = true;
  return lo;
}

// E7: the short-path net under both test-time rules, each with the statistics batch norm gathered
// in training (on random subsets of blocks) and re-estimated under the rule's plan; the normal
// net as the reference, re-estimated alike.
json short_path_training(Context& ctx) {
  const RunDirectory normal_dir(ctx.runs.at("resnet").train.out), short_dir(ctx.runs.at("short").train.out);
  const json normal = normal_dir.read_summary(), shorter = short_dir.read_summary();
  if (!shorter.contains("active_test_error") || !shorter["active_test_error"].is_object())
    throw UserError(short_dir.summary_path() + ": no \"active_test_error\" (not a short-path run)");
  const int n = ctx.sizes.n;
  Plan all = Plan::intact(n), scaled = Plan::intact(n);
  for (Step& st : scaled.steps()) st.residual_scale = static_cast<double>(ctx.sizes.active_blocks) / n;
  auto conventions = [&](const RunSpec& run, const std::vector<Plan>& plans) {
    std::vector<lesion::Lesion> lesions;
    for (const Plan& p : plans) {
      lesion::Lesion l;
      l.sweep = "plans";
      l.kind = "custom";
      l.edit = p;
      l.plan = p;
      lesions.push_back(l);
    }
    LoadedNetwork loaded = load_run(run.train.out);
    loaded.net->to(ctx.device);
    lesion::LesionOptions lo;
    lo.recalibrate_bn = ctx.preset.recalibrate_batches;
    lo.seed = ctx.opts.seed;
    if (!ctx.opts.quiet) lo.engine.progress("E7 " + run.role);
    return lesion::run_lesion(loaded.net, lesions, ctx.test, ctx.train, loaded.norm, lo);
  };
  const lesion::LesionResult s = conventions(ctx.runs.at("short"), {scaled, all});
  const lesion::LesionResult r = conventions(ctx.runs.at("resnet"), {});
  const json rules = {
      {"scaled", {{"running", s.metrics[0].top1_error()}, {"recalibrated", s.recalibrated[0].top1_error()}}},
      {"all", {{"running", s.metrics[1].top1_error()}, {"recalibrated", s.recalibrated[1].top1_error()}}}};
  const std::string rule = ctx.preset.e7_rule, stats = ctx.preset.e7_recalibrate ? "recalibrated" : "running";
  return {{"n", n},
          {"active_blocks", ctx.sizes.active_blocks},
          {"epochs", ctx.preset.epochs},
          {"test_n", ctx.test.size()},
          {"normal",
           {{"top1_error", r.baseline.top1_error()},
            {"recalibrated_top1_error", r.baseline_recalibrated->top1_error()},
            {"model", ctx.preset.model}}},
          {"short",
           {{"top1_error", rules[rule][stats]}, {"convention", rule}, {"statistics", stats}, {"model", ctx.preset.model}}},
          {"conventions", {{"scaled", rules["scaled"]["running"]}, {"all", rules["all"]["running"]}}},
          {"rules", rules},
          {"recalibrate_batches", ctx.preset.recalibrate_batches},
          {"default_convention", rule},
          {"default_statistics", stats},
          {"train_seconds",
           {{"normal", normal.value("train_seconds", 0.0)}, {"short", shorter.value("train_seconds", 0.0)}}}};
}

// The four networks of the paper, all with the preset's schedule.
void add_runs(Context& ctx) {
  const Preset& p = ctx.preset;
  TrainOptions base;
  base.data = ctx.data_spec;
  base.epochs = p.epochs;
  base.batch_size = p.batch_size;
  base.lr = p.lr;
  base.milestones = p.milestones;
  base.warmup_epochs = p.warmup_epochs;
  base.train_subset = p.train_subset;
  base.test_subset = p.test_subset;
  base.seed = ctx.opts.seed;
  base.threads = ctx.opts.threads == -1 ? p.threads : ctx.opts.threads;
  base.device = ctx.opts.device;
  base.quiet = ctx.opts.quiet;
  auto add = [&](const std::string& role, const std::string& model, const std::string& name) -> RunSpec& {
    RunSpec r{role, name, base};
    r.train.model = model;
    r.train.out = ctx.dir + "/runs/" + name;
    return ctx.runs.emplace(role, std::move(r)).first->second;
  };
  const std::string plain = p.plain_model.empty() ? "plain" + std::to_string(models::ModelSpec::parse(p.model).depth)
                                                  : p.plain_model;
  add("resnet", p.model, p.model);
  add("plain", plain, plain).train.lr = p.plain_lr;
  add("stochastic", p.model, fmt::format("{}-sd{}", p.model, ctx.sizes.stochastic_depth)).train.stochastic_depth =
      ctx.sizes.stochastic_depth;
  add("short", p.model, fmt::format("{}-k{}", p.model, ctx.sizes.active_blocks)).train.active_blocks =
      ctx.sizes.active_blocks;
  for (const auto& [role, r] : ctx.runs)
    ctx.config["runs"][role] = {{"dir", "runs/" + r.name}, {"options", r.train.to_json()}};
}

}  // namespace

std::vector<StepDef> paper_steps(Context& ctx) {
  add_runs(ctx);
  const Preset& p = ctx.preset;
  const int n = ctx.sizes.n, plain_n = blocks_of(ctx.runs.at("plain").train.model);
  CostModel cost;
  cost.pixels = static_cast<double>(ctx.dataset.height * ctx.dataset.width) / 784.0;
  const double px = cost.pixels, tr = static_cast<double>(ctx.train.size()) * p.epochs * px;
  const double te = static_cast<double>(ctx.test.size()) * px, ste = static_cast<double>(ctx.sweep_test.size()) * px;
  const double gb = static_cast<double>(p.grad_batch) * px;
  auto train_cost = [&](double blocks, int evals) {
    return tr * blocks * cost.train_image_block + evals * p.epochs * te * n * cost.eval_image_block;
  };
  auto single_cost = [&](int blocks) { return te * (blocks * (blocks + 1) / 2.0 + blocks) * cost.eval_image_block; };
  auto paths_inputs = [n](json extra) {
    extra["n"] = n;
    return extra;
  };
  const std::string dk = fmt::format("1:{}", ctx.sizes.delete_k_max), sk = fmt::format("1:{}", ctx.sizes.swap_k_max);
  const lesion::LesionOptions single = single_options();
  lesion::LesionOptions del, swap;
  del.delete_random = dk;
  del.samples = p.lesion_samples;
  swap.swap_random = sk;
  swap.samples = p.lesion_samples;
  std::vector<StepDef> steps = {
      {"E5", fmt::format("path lengths of {} blocks", n), 0,
       [=](Context& c, StepRunner& r) {
         c.results["E5"] = r.cached_or_compute(paths_inputs({}), [&] { return paths::path_lengths(paths::PathOptions(n)).to_json(); });
       }},
      {"E8", "paths left after deleting blocks", 0,
       [=](Context& c, StepRunner& r) {
         c.results["E8"] = r.cached_or_compute(paths_inputs({{"deleted", c.sizes.deleted}, {"x", c.sizes.x}}), [&] {
           json list = json::array();
           for (int d : c.sizes.deleted) {
             paths::PathOptions po(n);
             po.deleted = d;
             list.push_back(paths::path_lengths(po).to_json());
           }
           return json{{"n", n}, {"x", c.sizes.x}, {"deleted", list}};
         });
       }},
      {"train.resnet", "train " + ctx.runs.at("resnet").name, train_cost(n, 1),
       [](Context& c, StepRunner& r) { train_step(c, r, "resnet"); }},
      {"E1.resnet", fmt::format("delete each of {} blocks of {}", n, p.model), single_cost(n),
       lesion_step("E1", "resnet", "resnet", {{"sweep", "single"}}, single, false)},
      {"E3", fmt::format("delete k = 1..{} random blocks, {} sets per k", ctx.sizes.delete_k_max, p.lesion_samples),
       ste * ctx.sizes.delete_k_max * p.lesion_samples * 0.8 * n * cost.eval_image_block,
       lesion_step("E3", "", "resnet", {{"delete_random", dk}, {"samples", p.lesion_samples}}, del, true)},
      {"E4", fmt::format("k = 1..{} random swaps, {} orders per k", ctx.sizes.swap_k_max, p.lesion_samples),
       ste * std::max(ctx.sizes.swap_k_max, 0) * p.lesion_samples * n * cost.eval_image_block,
       lesion_step("E4", "", "resnet", {{"swap_random", sk}, {"samples", p.lesion_samples}}, swap, true)},
  };
  for (const std::string method : {"sample", "exact"}) {
    const double c = method == "sample" ? (n + 1.0) * p.grad_samples * gb * n * 0.5 * cost.grad_image_block
                                        : n * (n + 1) / 2.0 * gb * (1 + p.sign_samples / 2.0) * cost.grad_image_block;
    steps.push_back({"E6." + method,
                     method == "sample" ? fmt::format("{} sampled paths per length, batch {}", p.grad_samples, p.grad_batch)
                                        : std::string("exact gradient per path length, same batch"),
                     c, [method](Context& ctx2, StepRunner& r) {
                       const Preset& pp = ctx2.preset;
                       const json in = ctx2.run_inputs(
                           "resnet", {{"method", method}, {"batch", pp.grad_batch}, {"bn", "eval"},
                                      {"train_images", ctx2.train.size()},
                                      {"samples", method == "sample" ? pp.grad_samples : 0},
                                      {"sign_samples", method == "exact" ? pp.sign_samples : 0}});
                       ctx2.results["E6"][method] =
                           r.cached_or_compute(in, [&] { return ctx2.gradient_study(ctx2.runs.at("resnet"), method); });
                     }});
  }
  steps.push_back({"train.plain", "train " + ctx.runs.at("plain").name, train_cost(plain_n, 1),
                   [](Context& c, StepRunner& r) { train_step(c, r, "plain"); }});
  steps.push_back({"E1.plain", fmt::format("delete each of {} blocks of {}", plain_n, ctx.runs.at("plain").train.model),
                   single_cost(plain_n), lesion_step("E1", "plain", "plain", {{"sweep", "single"}}, single, false)});
  steps.push_back({"train.stochastic", "train " + ctx.runs.at("stochastic").name,
                   train_cost(n * (1 + ctx.sizes.stochastic_depth) / 2, 1),
                   [](Context& c, StepRunner& r) { train_step(c, r, "stochastic"); }});
  steps.push_back({"E9.stochastic", "delete each block of the stochastic-depth net", single_cost(n),
                   [single](Context& c, StepRunner& r) {
                     lesion_step("E9", "stochastic", "stochastic", {{"sweep", "single"}}, single, false)(c, r);
                     c.results["E9"]["resnet"] = c.results["E1"]["resnet"];  // the normal net: E1's sweep
                   }});
  steps.push_back({"train.short", "train " + ctx.runs.at("short").name, train_cost(ctx.sizes.active_blocks + 1, 3),
                   [](Context& c, StepRunner& r) { train_step(c, r, "short"); }});
  steps.push_back({"E7", "short-path training against normal training, test-time rules, batch-norm re-estimated",
                   4 * (p.recalibrate_batches * 128.0 * px + te) * n * cost.eval_image_block,
                   [](Context& c, StepRunner& r) {
                     c.results["E7"] = r.cached_or_compute(
                         {{"resnet", c.fingerprints.at("resnet")}, {"short", c.fingerprints.at("short")},
                          {"test_n", c.test.size()}, {"train_images", c.train.size()}, {"seed", c.opts.seed},
                          {"recalibrate_batches", c.preset.recalibrate_batches}, {"rule", c.preset.e7_rule},
                          {"recalibrate", c.preset.e7_recalibrate}},
                         [&] { return short_path_training(c); });
                   }});
  if (ctx.sizes.swap_k_max == 0)
    steps.erase(std::remove_if(steps.begin(), steps.end(), [](const StepDef& s) { return s.id == "E4"; }), steps.end());
  return steps;
}

}  // namespace unravel::repro
