// unravel report (being written)
#include "commands.h"
namespace unravel::cli {
void add_report_command(CLI::App& app) {}
}  // namespace unravel::cli
namespace unravel::cli {
void add_repro_command(CLI::App& app) {}
}  // namespace unravel::cli
