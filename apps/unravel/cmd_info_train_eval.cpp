// unravel info / train / eval: the block table, training into a run directory, and test-set
// evaluation of a trained run under any plan.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <iostream>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_dir.h"
#include "core/text.h"
#include "core/threads.h"
#include "core/util.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/trainer.h"

namespace unravel::cli {

using json = nlohmann::json;

namespace {

json block_table_json(models::Network& net) {
  json blocks = json::array();
  for (const auto& b : net->block_infos()) {
    int64_t params = 0;
    for (const auto& p : net->block(b.index).parameters()) params += p.numel();
    blocks.push_back({{"index", b.index}, {"stage", b.stage}, {"downsample", b.downsample},
                      {"in_shape", b.in_shape}, {"out_shape", b.out_shape}, {"kind", b.kind},
                      {"parameters", params}});
  }
  return blocks;
}

// Plan edits of eval, applied to the network's default plan in the order --plan, --order,
// --swap, --duplicate, --delete. A flag given with nothing in it is refused (as --plan 'delete='
// is), before any work.
struct PlanFlags {
  struct Flag {
    const char* name;     ///< "--delete"
    const char* clause;   ///< its plan clause, "" for --plan (plan text itself)
    const char* help;
    const char* example;  ///< a good value, for the error of an empty one
  };
  static constexpr std::array<Flag, 5> kFlags{{
      {"--plan", "", "plan text, e.g. 'delete=3,17 swap=4:5' (clauses: delete, order, swap, duplicate, scale, gate)",
       "intact"},
      {"--order", "order", "order in which blocks run, e.g. 1-3,5,4,6-9 (repeats duplicate)", "1-3,5,4"},
      {"--swap", "swap", "pairs of same-shape blocks to exchange, e.g. 4:5,7:8", "4:5"},
      {"--duplicate", "duplicate", "blocks that run twice in a row, e.g. 4", "4"},
      {"--delete", "delete", "blocks that run their shortcut only, e.g. 3,17 or 5-9", "3,17"}}};
  std::array<std::string, kFlags.size()> values;
  std::array<CLI::Option*, kFlags.size()> options{};

  void add(CLI::App* c) {
    for (size_t i = 0; i < kFlags.size(); ++i) options[i] = c->add_option(kFlags[i].name, values[i], kFlags[i].help);
  }
  // The plan text of the given flags ("" when none is given); UserError naming the flag for an
  // empty value, or a list flag whose items hold spaces, ';' or '=' (another clause).
  std::string text() const {
    std::string text;
    for (size_t i = 0; i < kFlags.size(); ++i) {
      const Flag& f = kFlags[i];
      if (options[i] == nullptr || options[i]->count() == 0) continue;
      const std::string_view v = trim(values[i]);
      if (v.empty())
        throw UserError(*f.clause ? fmt::format("{}: empty value (give at least one item, e.g. {})", f.name, f.example)
                                  : "--plan: empty plan text (use 'intact' for the unedited network)");
      if (!*f.clause) {
        text += std::string(v) + " ";
        continue;
      }
      std::string items;
      for (std::string_view item : split(v, ',')) {
        item = trim(item);
        if (item.find_first_of(" \t\r\n;=") != std::string_view::npos)
          throw UserError(fmt::format("{} '{}': give one comma-separated list, e.g. {} (no spaces, ';' or '=')",
                                      f.name, elide_middle(values[i], 40), f.example));
        items += (items.empty() ? "" : ",") + std::string(item);
      }
      text += std::string(f.clause) + "=" + items + " ";
    }
    return text;
  }
  Plan build(const Plan& base) const {
    const std::string t = text();
    return t.empty() ? base : Plan::parse(t, base);
  }
};

// The train flags and the TrainOptions::to_json keys they set. On a directory that holds a
// training run, the options whose flag is not given are the run's own (DIR/config.json).
constexpr std::pair<const char*, const char*> kTrainFlags[] = {
    {"--model", "model"}, {"--data", "data"}, {"--epochs", "epochs"}, {"--batch-size", "batch_size"},
    {"--lr", "lr"}, {"--momentum", "momentum"}, {"--nesterov", "nesterov"}, {"--weight-decay", "weight_decay"},
    {"--schedule", "schedule"}, {"--milestones", "milestones"}, {"--gamma", "gamma"}, {"--warmup", "warmup_epochs"},
    {"--shortcut", "shortcut"}, {"--stochastic-depth", "stochastic_depth"}, {"--sd-mode", "sd_mode"},
    {"--active-blocks", "active_blocks"}, {"--active-test", "active_test"}, {"--no-augment", "augment"},
    {"--train-subset", "train_subset"}, {"--test-subset", "test_subset"}, {"--val-split", "val_split"},
    {"--seed", "seed"}, {"--log-every", "log_every"}, {"--precision", "precision"}};

// Resume by directory: `train --out DIR` continues the run in DIR with its options; flags given
// here replace them and the trainer checks those against the run as always. Where a flag comes
// from (this machine: --device, --quiet, --stop-after, the ranks) stays as given. --threads, when
// not given, is the count the run was trained with (at most this machine's cores): the number of
// threads changes the order in which convolutions sum, so only the same count continues a run
// bit for bit as if it had never stopped.
// Returns whether the run was taken up by its directory alone: options came from the file and no
// flag of kTrainFlags but --epochs was given.
bool options_from_run_directory(const CLI::App& c, TrainOptions& o) {
  const RunDirectory rd(o.out);
  if (o.out.empty() || !rd.has_config()) return false;
  const RunConfig previous = rd.read_config();
  if (previous.command != "train") return false;  // the trainer refuses the directory with its own line
  json merged = o.to_json();
  int taken = 0, given = 0;
  for (const auto& [flag, key] : kTrainFlags) {
    const auto it = previous.options.find(key);
    const bool here = c.get_option(flag)->count() > 0;
    given += here && std::string(flag) != "--epochs";
    if (here || it == previous.options.end()) continue;
    try {
      TrainOptions::from_json(json{{key, *it}});
    } catch (const json::exception&) {
      throw UserError(fmt::format("{}: option \"{}\" is {}, not a value of {}", rd.config_path(), key,
                                  elide_middle(it->dump(), 40), flag));
    }
    merged[key] = *it;
    ++taken;
  }
  TrainOptions r = TrainOptions::from_json(merged);
  r.out = o.out;
  r.threads = o.threads;
  if (c.get_option("--threads")->count() == 0 && previous.threads > 0 && previous.world_size == 1)
    r.threads = std::min(previous.threads, available_cores());
  r.device = o.device;
  r.quiet = o.quiet;
  r.stop_after = o.stop_after;
  r.dist = o.dist;
  o = r;
  return taken > 0 && given == 0;
}

}  // namespace

void add_info_command(CLI::App& app) {
  struct Opts {
    std::string model, run, input = "1x28x28", shortcut, json_path;
    int64_t classes = 10;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("info", "print the block table of a model: index, stage, shapes, downsampling");
  c->add_option("--model", o->model, "model name: resnetN, preresnetN, plainN (N = 6n+2), resnet50/101/152/200, preresnet50/...");
  c->add_option("--run", o->run, "a run directory (its model and input shape)");
  c->add_option("--input", o->input, "input shape CxHxW for --model")->capture_default_str();
  c->add_option("--classes", o->classes, "number of classes for --model")->capture_default_str();
  c->add_option("--shortcut", o->shortcut, "A (parameter-free) or B (1x1 conv + BN); default: A for CIFAR-style families, B for ImageNet ones");
  c->add_option("--json", o->json_path, "write {model, num_parameters, blocks: [...]} to FILE");
  c->callback([o] {
    if (o->model.empty() == o->run.empty()) throw UserError("info: give exactly one of --model NAME or --run DIR");
    models::Network net{nullptr};
    if (!o->run.empty()) {
      net = load_run(o->run).net;
    } else {
      auto in = parse_input_shape(o->input);
      net = models::Network(models::NetworkOptions(o->model).in_channels(in[0]).input_size(in[1], in[2])
                                .num_classes(o->classes).shortcut(o->shortcut));
    }
    json j = {{"schema_version", kRunSchemaVersion},
              {"model", net->spec().name},
              {"shortcut", net->options().shortcut_},
              {"input", {net->options().in_channels_, net->options().height_, net->options().width_}},
              {"num_classes", net->options().num_classes_},
              {"num_blocks", net->num_blocks()},
              {"num_parameters", net->num_parameters()},
              {"blocks", block_table_json(net)}};
    std::cout << fmt::format("{}: {} blocks, {} parameters, input {}x{}x{}, shortcut {}\n", net->spec().name,
                             net->num_blocks(), net->num_parameters(), net->options().in_channels_,
                             net->options().height_, net->options().width_, net->options().shortcut_);
    std::cout << fmt::format("{:>5} {:>5}  {:<18} {:>10} {:>10} {:>10}  {}\n", "block", "stage", "kind", "in", "out",
                             "params", "downsample");
    for (const auto& b : j["blocks"])
      std::cout << fmt::format("{:>5} {:>5}  {:<18} {:>10} {:>10} {:>10}  {}\n", b["index"].get<int>(),
                               b["stage"].get<int>(), b["kind"].get<std::string>(),
                               shape_string(b["in_shape"].get<Shape>()), shape_string(b["out_shape"].get<Shape>()),
                               b["parameters"].get<int64_t>(), b["downsample"].get<bool>() ? "yes" : "");
    if (!o->json_path.empty()) write_output_file(o->json_path, j.dump(2) + "\n", "--json");
  });
}

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto milestones = std::make_shared<std::string>("0.5,0.75");
  auto* c = app.add_subcommand("train", "train a network into a run directory (the same command resumes it)");
  c->add_option("--model", o->model, "model name (see `unravel info --help`)")->capture_default_str();
  c->add_option("--data", o->data, "fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:OPTS]")->capture_default_str();
  c->add_option("--out", o->out, "run directory: config.json, metrics.jsonl, checkpoint.pt, summary.json")->required();
  c->add_option("--epochs", o->epochs, "total epochs; rerun with a larger value to continue")->capture_default_str();
  c->add_option("--batch-size", o->batch_size, "mini-batch size")->capture_default_str();
  c->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  c->add_option("--momentum", o->momentum, "SGD momentum")->capture_default_str();
  c->add_flag("--nesterov", o->nesterov, "Nesterov momentum");
  c->add_option("--weight-decay", o->weight_decay, "L2 weight decay")->capture_default_str();
  c->add_option_function<std::string>(
       "--schedule", [o](const std::string& v) { o->schedule = parse_schedule(v, "--schedule"); },
       "step | cosine | constant")
      ->default_str(name(o->schedule));
  c->add_option("--milestones", *milestones, "step schedule: fractions of the run where lr is multiplied by --gamma")->capture_default_str();
  c->add_option("--gamma", o->gamma, "step schedule factor")->capture_default_str();
  c->add_option("--warmup", o->warmup_epochs, "epochs of linear warm-up from lr/10")->capture_default_str();
  c->add_option("--shortcut", o->shortcut, "A (subsample + zero channels) or B (1x1 conv + BN); default: A for CIFAR-style families, B for ImageNet ones");
  c->add_option("--stochastic-depth", o->stochastic_depth,
                "p_L of stochastic depth (survival decays linearly to p_L; residuals scaled by p_l at test time); 0 = off")->capture_default_str();
  c->add_option_function<std::string>(
       "--sd-mode", [o](const std::string& v) { o->sd_mode = parse_sd_mode(v, "--sd-mode"); },
       "stochastic depth draws: batch (one per mini-batch) or sample (per image)")
      ->default_str(name(o->sd_mode));
  c->add_option("--active-blocks", o->active_blocks,
                "short-path training (E7): exactly K random blocks run per mini-batch, the others are skipped")->capture_default_str();
  c->add_option_function<std::string>(
       "--active-test", [o](const std::string& v) { o->active_test = parse_active_test(v, "--active-test"); },
       "test time after --active-blocks: scaled (residuals x K/n, the expectation seen in training; default) or all")
      ->default_str(name(o->active_test));
  c->add_flag("--no-augment", [o](int64_t) { o->augment = false; }, "no random crop / flip");
  c->add_option("--train-subset", o->train_subset, "use the first N training images (0 = all)")->capture_default_str();
  c->add_option("--test-subset", o->test_subset, "evaluate on the first N test images (0 = all)")->capture_default_str();
  c->add_option("--val-split", o->val_split, "hold out N training images for validation (best epoch by validation)")->capture_default_str();
  c->add_option("--seed", o->seed, "seed of init, order, augmentation and sampled plans")->capture_default_str();
  add_threads_flag(c, o->threads);
  c->add_option("--device", o->device, "auto | cpu | cuda")->capture_default_str();
  add_precision_flag(c, o->precision,
                     "fp32 (default) or bf16: the forward under autocast, as torch.autocast: convolutions and the "
                     "classifier in bfloat16, float32 weights, batch norm, momentum and loss (faster on CPUs with "
                     "AVX512_BF16 and on GPUs; the loss curve differs from fp32's in the 3rd digit)");
  c->add_option("--log-every", o->log_every, "steps between metrics.jsonl step records")->capture_default_str();
  c->add_flag("--quiet", o->quiet, "no progress lines");
  c->add_option("--stop-after", o->stop_after, "train this many epochs now and stop; the same command resumes")->capture_default_str();
  auto nproc = std::make_shared<int>(1);
  add_data_parallel_flags(c, *nproc, o->dist, "the mini-batches");
  c->footer(R"(Data-parallel training: --batch-size is the global mini-batch; each rank takes a contiguous
shard of it, gradients are averaged over ranks (c10d Gloo all-reduce), batch-norm statistics are
per shard during training and averaged over ranks before each evaluation. With the same seed the
ranks see the same batches, augmentation and sampled plans as one process would; only the
batch-norm batch statistics differ. --nproc N on one machine; across machines start one process
per rank with --world-size, --rank and --store tcp:HOST:PORT (HOST: the machine of rank 0).)");
  c->callback([c, o, milestones, nproc] {
    o->milestones.clear();
    for (const auto& part : CLI::detail::split(*milestones, ',')) {
      try {
        size_t used = 0;
        o->milestones.push_back(std::stod(part, &used));
        if (used != part.size()) throw std::invalid_argument(part);
      } catch (const std::exception&) {
        throw UserError(fmt::format("--milestones '{}' should be fractions like 0.5,0.75", *milestones));
      }
    }
    if (options_from_run_directory(*c, *o) && !o->quiet && o->dist.rank == 0)
      std::cerr << fmt::format("[train] {}: the run's own options (config.json): {} on {}, {} epochs, {} thread{}{}\n",
                               o->out, o->model, elide_middle(o->data), o->epochs, o->threads,
                               o->threads == 1 ? "" : "s",
                               c->get_option("--threads")->count() ? "" : " as trained (--threads to change)");
    TrainSummary s;
    run_as_ranks(*nproc, o->threads, o->dist, o->out, [&](int threads) {
      o->threads = threads;
      s = train(*o);
    });
    if (o->dist.rank != 0) return;  // rank 0 reports
    std::cout << fmt::format("{}: {} epochs, test error {:.2f}%{}\n", o->out, s.epochs_done, 100.0 * s.test_error,
                             s.best_val_epoch > 0 ? fmt::format(", best validation error {:.2f}% (epoch {})",
                                                                100.0 * s.best_val_error, s.best_val_epoch)
                                                  : "");
  });
}

void add_eval_command(CLI::App& app) {
  struct Opts {
    std::string run, data, json_path, logits_path, device = "auto";
    int64_t test_subset = 0, batch_size = 500;
    int threads = 0;
    Precision precision = Precision::FP32;
    PlanFlags plan;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("eval", "test error of a trained run, optionally under a plan (deleted/reordered blocks)");
  c->add_option("--run", o->run, "run directory")->required();
  c->add_option("--data", o->data, "data set (default: the run's)");
  c->add_option("--test-subset", o->test_subset, "first N test images (0 = all)")->capture_default_str();
  c->add_option("--batch-size", o->batch_size, "images per forward")->capture_default_str();
  add_threads_flag(c, o->threads);
  c->add_option("--device", o->device, "auto | cpu | cuda")->capture_default_str();
  c->add_option("--json", o->json_path,
                "write {top1_error, top5_error, loss, correct, n, per_class_error, plan} to FILE");
  add_precision_flag(c, o->precision);
  c->add_option("--logits", o->logits_path,
                "write the logits as a PyTorch file: torch.load(FILE) gives {\"logits\": N x K float32, "
                "\"labels\": N int64}, in test-set order");
  o->plan.add(c);
  c->callback([o] {
    o->plan.text();  // flags given empty fail before any work
    for (const auto& [flag, path] : {std::pair<std::string, std::string>{"--json", o->json_path}, {"--logits", o->logits_path}})
      if (!path.empty()) check_output_path(path, flag);
    setup_compute(o->threads);
    if (o->batch_size < 1) throw UserError("--batch-size must be >= 1");
    ExperimentInput in;
    in.run_dir = o->run;
    in.data_spec = o->data;
    Experiment ex = load_experiment(in);
    auto& net = ex.loaded.net;
    Plan plan = o->plan.build(net->default_plan());
    plan.validate(net->block_infos());
    EvalOptions eo;
    eo.batch_size = o->batch_size;
    eo.precision = o->precision;
    net->to(parse_device(o->device));
    auto split = data::take_subset(ex.dataset.test, o->test_subset);
    std::vector<torch::Tensor> logits;
    if (!o->logits_path.empty())
      eo.on_logits = [&logits](int64_t, const torch::Tensor& l) { logits.push_back(l.to(torch::kCPU, torch::kFloat32)); };
    Metrics m = evaluate(net, plan, split, ex.loaded.norm, eo);
    json j = provenance(ex, split);
    j.update(m.to_json());
    j["command"] = "eval";
    j["plan"] = plan.str();
    j["precision"] = precision_name(o->precision);
    std::cout << fmt::format("plan {}: top-1 error {:.2f}% ({} of {} correct), top-5 error {:.2f}%, loss {:.4f}{}\n",
                             plan.str(), 100.0 * m.top1_error(), m.correct, m.n, 100.0 * m.top5_error(), m.loss(),
                             j["skipped_files"].get<int64_t>() > 0
                                 ? fmt::format(" ({} unreadable files skipped)", j["skipped_files"].get<int64_t>())
                                 : "");
    auto pce = m.per_class_error();
    for (size_t k = 0; k < pce.size(); ++k)
      std::cout << fmt::format("  class {:>2} {:<12} error {:6.2f}%\n", k,
                               k < ex.dataset.class_names.size() ? ex.dataset.class_names[k] : "", 100.0 * pce[k]);
    if (!o->json_path.empty()) write_output_file(o->json_path, j.dump(2) + "\n", "--json");
    if (!o->logits_path.empty()) {
      TensorMap t{{"logits", logits.empty() ? torch::empty({0, net->options().num_classes_}) : torch::cat(logits)},
                  {"labels", split.labels}};
      save_tensors_atomic(o->logits_path, t);
    }
  });
}

}  // namespace unravel::cli
