// unravel lesion (being written)
#include "commands.h"
namespace unravel::cli {
void add_lesion_command(CLI::App& app) {}
}  // namespace unravel::cli
