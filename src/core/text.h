// Small text parsing shared by every option and spec parser: trimming, splitting, integers and
// numbers in a range, and KEY=VALUE option lists. Errors are UserErrors that name `what` (the
// option or file the text came from) and quote the text shortened to ~60 characters. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace unravel {

std::string_view trim(std::string_view s);  // without leading/trailing spaces, tabs, CR, LF
// Splits at every `sep`; empty pieces are kept (callers decide whether they are errors).
std::vector<std::string_view> split(std::string_view s, char sep);

// A whole-string decimal integer in [lo, hi]: "{what}: expected an integer in [lo, hi], got 'x'".
int64_t parse_int(std::string_view text, const std::string& what, int64_t lo, int64_t hi);
// A whole-string finite number in [lo, hi].
double parse_number(std::string_view text, const std::string& what, double lo, double hi);

// "a=1,b=x" -> {{"a","1"},{"b","x"}}. Empty items are skipped; an item without '=' or with an
// empty key is an error; a key given twice is an error.
std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view text, const std::string& what,
                                                                  char sep = ',');

}  // namespace unravel
