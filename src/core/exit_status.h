// How the program ends when an exception reaches main, by the rule of core/errors.h: a user error
// exits 1, anything else is a bug and exits 2 as an "internal error". Either way one line on stderr.
// Torch-free: apps/unravel/main.cpp decides which libtorch errors (c10::Error) are which.
#pragma once
#include <cstddef>
#include <string>

namespace unravel {

enum class Failure {
  User,      ///< bad input, options or resources the user chose: exit status 1
  Internal,  ///< anything else (a bug in unravel or libtorch): exit status 2
};

constexpr std::size_t kMaxErrorLine = 200;  ///< characters of an internal error's message printed

struct ExitReport {
  int status = 0;    ///< 1 (Failure::User) or 2 (Failure::Internal)
  std::string line;  ///< "error: MESSAGE" or "internal error: MESSAGE", without a newline
};

// The exit status and the line to print for an exception whose what() is `what`: its first line;
// for an internal error cut to kMaxErrorLine characters (at a UTF-8 character boundary) with "..."
// (libtorch's messages can run to pages of context and backtrace).
inline ExitReport exit_report(Failure failure, const std::string& what) {
  std::string message = what.substr(0, what.find_first_of("\r\n"));
  if (failure == Failure::Internal && message.size() > kMaxErrorLine) {
    std::size_t cut = kMaxErrorLine - 3;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;  // a continuation byte
    message = message.substr(0, cut) + "...";
  }
  if (message.empty()) message = "(no message)";
  if (failure == Failure::User) return {1, "error: " + message};
  return {2, "internal error: " + message};
}

}  // namespace unravel
