// Flags shared by several subcommands.
#include <fmt/format.h>

#include "commands.h"
#include "core/errors.h"
#include "core/precision.h"
#include "core/text.h"
#include "core/util.h"
#include "train/distributed_options.h"
#include "train/run.h"

namespace unravel::cli {

std::vector<int64_t> parse_input_shape(const std::string& s, const std::string& flag) {
  const auto parts = split(s, 'x');
  if (parts.size() != 3) throw UserError(fmt::format("{} '{}' should be CxHxW, e.g. 3x224x224", flag, elide_middle(s)));
  std::vector<int64_t> v;
  for (auto p : parts) v.push_back(parse_int(p, flag + " " + elide_middle(s), 1, 8192));
  return v;
}

void add_network_source_flags(CLI::App* c, ExperimentInput& in) {
  c->add_option("--run", in.run_dir, "trained run directory");
  c->add_option("--model", in.model, "randomly initialised network of this name instead of --run (with --seed)");
  c->add_option("--shortcut", in.shortcut, "shortcut type of a --model network: A or B (default: A for CIFAR-style families, B for ImageNet ones)");
  c->add_option("--data", in.data_spec, "data set (default: the run's, else fashion-mnist)");
}

CLI::Option* add_threads_flag(CLI::App* c, int& threads, const std::string& default_note) {
  auto* opt = c->add_option("--threads", threads,
                            "compute threads; 0 = automatic: all cores minus those other processes keep busy, "
                            "re-measured every 2 s" + default_note);
  opt->check(CLI::Validator(
      [](std::string& v) -> std::string {
        try {
          size_t used = 0;
          const long n = std::stol(v, &used);
          if (used == v.size() && n >= 0 && n <= 4096) return "";
        } catch (const std::exception&) {
        }
        return "must be 0 (automatic) or a number of threads up to 4096, got '" + v + "'";
      },
      "N"));
  if (default_note.empty()) opt->capture_default_str();
  return opt;
}

CLI::Option* add_precision_flag(CLI::App* c, Precision& precision, const std::string& help) {
  return c
      ->add_option_function<std::string>(
          "--precision", [&precision](const std::string& v) { precision = parse_precision(v); },
          help.empty() ? "fp32 (default) or bf16: bfloat16 weights and activations, channels_last (faster on CPUs "
                         "with AVX512_BF16 and on GPUs; ~3 significant digits, so a few images may change class)"
                       : help)
      ->default_str("fp32");
}

void add_data_parallel_flags(CLI::App* c, int& nproc, DistributedOptions& dist, const std::string& work) {
  c->add_option("--nproc", nproc,
                "data-parallel: N processes on this machine share " + work + " (c10d Gloo); --threads are shared out")
      ->capture_default_str();
  c->add_option("--world-size", dist.world_size, "data-parallel: processes in all, each started with its --rank")
      ->capture_default_str();
  c->add_option("--rank", dist.rank, "data-parallel: this process, 0..world-size-1 (rank 0 writes the results)")
      ->capture_default_str();
  c->add_option("--store", dist.store, "data-parallel: where ranks meet, file:PATH (shared, new) or tcp:HOST:PORT");
}

void run_as_ranks(int nproc, int threads, DistributedOptions& dist, const std::string& dir,
                  const std::function<void(int threads)>& body) {
  if (nproc == 1) return body(threads);
  if (dist.world_size != 1 || dist.rank != 0 || !dist.store.empty())
    throw UserError("--nproc starts its own ranks: drop --world-size, --rank and --store");
  launch_local_ranks(nproc, threads, dir, [&](int per_rank, const std::string& store) {
    dist.world_size = nproc;
    dist.rank = 0;
    dist.store = store;
    body(per_rank);
  });
}

}  // namespace unravel::cli
