// unravel gradients (being written)
#include "commands.h"
namespace unravel::cli {
void add_gradients_command(CLI::App& app) {}
}  // namespace unravel::cli
