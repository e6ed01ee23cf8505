// What every fuzz harness needs besides its parser: how a finding is reported (one line on
// stderr, then abort, so that the driver keeps the input), the check that a user error is one
// short line, and writing the fixture files a harness reads.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/errors.h"

namespace unravel::fuzz {

// A finding: "HARNESS: WHAT: DETAIL" (detail cut to 300 characters), then abort.
[[noreturn]] inline void report_bug(const char* harness, const std::string& what, const std::string& detail) {
  std::fprintf(stderr, "%s: %s: %.300s\n", harness, what.c_str(), detail.c_str());
  std::abort();
}

// A user error must be one line of at most 400 characters.
inline void check_one_line(const char* harness, const UserError& e) {
  const std::string m = e.what();
  if (m.empty() || m.size() > 400 || m.find('\n') != std::string::npos)
    report_bug(harness, "error is not one short line", m);
}

inline void write_file_bytes(const std::string& path, const char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
}

}  // namespace unravel::fuzz
