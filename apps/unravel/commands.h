// Each subcommand registers itself on the root CLI::App; main() only dispatches and turns
// UserError into one line on stderr and exit status 1.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <vector>
#include <string>

namespace unravel {
enum class Precision;       // core/precision.h
struct ExperimentInput;     // train/run.h
struct DistributedOptions;  // train/distributed_options.h
}

namespace unravel::cli {

void add_info_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_lesion_command(CLI::App& app);
void add_paths_command(CLI::App& app);
void add_gradients_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_repro_command(CLI::App& app);

// --run DIR | --model NAME (+ --shortcut) and --data: where an experiment command gets its
// network and data. --seed is left to the command (it seeds more than the weights).
void add_network_source_flags(CLI::App* c, ExperimentInput& in);

// "3x224x224" -> {3, 224, 224}; UserError naming `flag` otherwise.
std::vector<int64_t> parse_input_shape(const std::string& s, const std::string& flag = "--input");

// --threads N: one wording, one check (0 = automatic, see core/threads.h) for every command.
// `default_note` replaces the printed default where a command has its own (repro's presets).
CLI::Option* add_threads_flag(CLI::App* c, int& threads, const std::string& default_note = "");

// --precision fp32|bf16 (core/precision.h): for eval and lesion the evaluation copies (the default
// help); for train what `help` says (autocast).
CLI::Option* add_precision_flag(CLI::App* c, Precision& precision, const std::string& help = "");

// main() records its arguments: `train --nproc N` starts the other ranks with the same ones.
void set_command_line(int argc, char** argv);
// Starts ranks 1..nproc-1 as child processes (output in DIR/rank-R.log), then calls
// rank0(threads per rank, store) in this process. Threads (0 = all cores) are shared out among
// the ranks. A child that fails stops all ranks with one line naming its log; an exception
// from rank0 kills the children and is rethrown.
void launch_local_ranks(int nproc, int threads, const std::string& dir,
                        const std::function<void(int threads_per_rank, const std::string& store)>& rank0);

// --nproc N (local ranks), or --world-size/--rank/--store (one rank of a group started by hand).
// `work` says what the ranks share, e.g. "the mini-batches".
void add_data_parallel_flags(CLI::App* c, int& nproc, DistributedOptions& dist, const std::string& work);
// Runs body(threads) in this process: directly with nproc 1 (dist as given), else as rank 0 of
// nproc local ranks started by launch_local_ranks (dist set to theirs; logs and store in DIR).
void run_as_ranks(int nproc, int threads, DistributedOptions& dist, const std::string& dir,
                  const std::function<void(int threads)>& body);

}  // namespace unravel::cli
