// unravel: train residual networks and take them apart as ensembles of paths.
#include <torch/torch.h>

#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "commands.h"
#include "core/errors.h"
#include "core/exit_status.h"
#include "core/util.h"
#include "train/distributed.h"

namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The rule of core/errors.h for the exception being handled: a UserError is the user's (exit 1);
// so is running out of memory (the batch size or network asked for too much); any other c10::Error
// of libtorch, or any other exception, is a bug (exit 2, "internal error"). Bad input that libtorch
// would reject is checked where it is read and thrown as a UserError, so it never lands here.
unravel::ExitReport report_current_exception() {
  using unravel::Failure;
  try {
    throw;
  } catch (const unravel::UserError& e) {
    return unravel::exit_report(Failure::User, e.what());
  } catch (const c10::OutOfMemoryError& e) {
    return unravel::exit_report(Failure::User, "out of memory (a smaller --batch-size may fit): " +
                                                   unravel::elide_middle(first_line(e.what_without_backtrace()), 150));
  } catch (const c10::Error& e) {
    return unravel::exit_report(Failure::Internal, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return unravel::exit_report(Failure::Internal, e.what());
  } catch (...) {
    return unravel::exit_report(Failure::Internal, "an exception that is not a std::exception");
  }
}

}  // namespace

int main(int argc, char** argv) {
  unravel::cli::set_command_line(argc, argv);
  CLI::App app{"unravel: train residual networks and take them apart as ensembles of paths"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    const auto b = unravel::build_info();
    return fmt::format("unravel {} (git {})\nlibtorch {}, data-parallel (c10d Gloo): {}, CUDA: {}",
                       b["unravel"].get<std::string>(), b["git_commit"].get<std::string>(), TORCH_VERSION,
                       unravel::Communicator::available() ? "yes" : "no",
                       torch::cuda::is_available() ? "available" : "not available");
  });
  unravel::cli::add_info_command(app);
  unravel::cli::add_train_command(app);
  unravel::cli::add_eval_command(app);
  unravel::cli::add_lesion_command(app);
  unravel::cli::add_paths_command(app);
  unravel::cli::add_gradients_command(app);
  unravel::cli::add_report_command(app);
  unravel::cli::add_repro_command(app);
  unravel::cli::add_import_command(app);
  unravel::cli::add_export_command(app);
  unravel::cli::add_data_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "unravel: error: " << first_line(e.what()) << " (see --help)\n";
    return 1;
  } catch (...) {
    const unravel::ExitReport r = report_current_exception();
    std::cerr << "unravel: " << r.line << "\n";
    return r.status;
  }
  return 0;
}
