// User-facing errors: one line that names the bad file, flag or value. The program prints
// what() and exits 1; anything else reaching main is a bug and exits 2.
#pragma once
#include <stdexcept>
#include <string>

namespace unravel {

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message) : std::runtime_error(message) {}
};

// A collective operation of data-parallel work failed: most likely another rank stopped, and
// that rank's own error is the one to report when it is known (see apps/unravel/launch.cpp).
class PeerError : public UserError {
 public:
  explicit PeerError(const std::string& message) : UserError(message) {}
};

}  // namespace unravel
