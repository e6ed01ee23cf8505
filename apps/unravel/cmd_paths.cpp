// unravel paths (being written)
#include "commands.h"
namespace unravel::cli {
void add_paths_command(CLI::App& app) {}
}  // namespace unravel::cli
