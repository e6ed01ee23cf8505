// Trimming, splitting, bounded integers and numbers, KEY=VALUE lists (see text.h).
#include "core/text.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/errors.h"
#include "core/util.h"

namespace unravel {

std::string_view trim(std::string_view s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  const auto b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

int64_t parse_int(std::string_view text, const std::string& what, int64_t lo, int64_t hi) {
  const std::string t(trim(text));
  char* end = nullptr;
  errno = 0;
  const long long v = t.empty() ? 0 : std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    throw UserError(fmt::format("{}: expected an integer in [{}, {}], got '{}'", what, lo, hi, elide_middle(t)));
  return v;
}

double parse_number(std::string_view text, const std::string& what, double lo, double hi) {
  const std::string t(trim(text));
  char* end = nullptr;
  errno = 0;
  const double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v) || v < lo || v > hi)
    throw UserError(fmt::format("{}: expected a number in [{}, {}], got '{}'", what, lo, hi, elide_middle(t)));
  return v;
}

std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view text, const std::string& what,
                                                                  char sep) {
  std::vector<std::pair<std::string, std::string>> out;
  std::set<std::string> seen;
  for (std::string_view item : split(text, sep)) {
    item = trim(item);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || trim(item.substr(0, eq)).empty())
      throw UserError(fmt::format("{}: option '{}' is not KEY=VALUE", what, elide_middle(item)));
    std::string key(trim(item.substr(0, eq)));
    if (!seen.insert(key).second) throw UserError(fmt::format("{}: option '{}' is given twice", what, key));
    out.emplace_back(std::move(key), std::string(trim(item.substr(eq + 1))));
  }
  return out;
}

}  // namespace unravel
