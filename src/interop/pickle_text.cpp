// Text decoding for the pickle interpreter: strict UTF-8 validation, protocol 0's quoted STRING
// literals and raw-unicode-escape UNICODE arguments.
#include <cstring>

#include "interop/pickle_internal.h"

namespace unravel::interop::detail {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | cp >> 6);
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | cp >> 12);
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | cp >> 18);
    out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
    out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `n` hex digits at s[i]; -1 when malformed or cut short.
int64_t hex_at(std::string_view s, size_t i, size_t n) {
  if (i > s.size() || n > s.size() - i) return -1;
  int64_t v = 0;
  for (size_t k = 0; k < n; ++k) {
    const int d = hex_digit(s[i + k]);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  for (size_t i = 0, n = s.size(); i < n;) {
    const unsigned c = p[i];
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n - i) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (p[i + k] & 0x3F);
    }
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::optional<std::string> unquote_string(std::string_view s) {
  if (s.size() < 2 || (s.front() != '\'' && s.front() != '"') || s.back() != s.front()) return std::nullopt;
  s = s.substr(1, s.size() - 2);
  std::string out;
  static const char kFrom[] = "\\'\"abfnrtv", kTo[] = "\\'\"\a\b\f\n\r\t\v";
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    if (const char* p = c ? std::strchr(kFrom, c) : nullptr) {
      out += kTo[p - kFrom];
    } else if (c == 'x') {
      const int64_t v = hex_at(s, i + 1, 2);
      if (v < 0) return std::nullopt;
      out += static_cast<char>(v);
      i += 2;
    } else if (c >= '0' && c <= '7') {
      int v = 0;
      size_t k = 0;
      for (; k < 3 && i + k < s.size() && s[i + k] >= '0' && s[i + k] <= '7'; ++k) v = v * 8 + (s[i + k] - '0');
      out += static_cast<char>(v & 0xFF);
      i += k - 1;
    } else {
      out += '\\';
      out += c;
    }
  }
  return out;
}

std::optional<std::string> raw_unicode_escape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool escape = s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U');
    if (!escape) {
      append_utf8(out, static_cast<uint8_t>(s[i]));
      continue;
    }
    const size_t digits = s[i + 1] == 'u' ? 4 : 8;
    const int64_t cp = hex_at(s, i + 2, digits);
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
    append_utf8(out, static_cast<uint32_t>(cp));
    i += 1 + digits;
  }
  return out;
}

}  // namespace unravel::interop::detail
