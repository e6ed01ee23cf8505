// Each subcommand registers itself on the root CLI::App; main() only dispatches and turns
// UserError into one line on stderr and exit status 1.
#pragma once
#include <CLI/CLI.hpp>

namespace unravel {
struct ExperimentInput;  // train/run.h
}

namespace unravel::cli {

void add_info_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_lesion_command(CLI::App& app);
void add_paths_command(CLI::App& app);
void add_gradients_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_repro_command(CLI::App& app);

// --run DIR | --model NAME (+ --shortcut) and --data: where an experiment command gets its
// network and data. --seed is left to the command (it seeds more than the weights).
void add_network_source_flags(CLI::App* c, ExperimentInput& in);

}  // namespace unravel::cli
