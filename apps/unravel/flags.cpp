// Flags shared by several subcommands.
#include "commands.h"
#include "train/run.h"

namespace unravel::cli {

void add_network_source_flags(CLI::App* c, ExperimentInput& in) {
  c->add_option("--run", in.run_dir, "trained run directory");
  c->add_option("--model", in.model, "randomly initialised network of this name instead of --run (with --seed)");
  c->add_option("--shortcut", in.shortcut, "shortcut type of a --model network: A or B")->capture_default_str();
  c->add_option("--data", in.data_spec, "data set (default: the run's, else fashion-mnist)");
}

}  // namespace unravel::cli
