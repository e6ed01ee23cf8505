// Parsing and small statistics over the experiment JSONs of the report (see results.h).
#include "report/results.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "core/errors.h"

namespace unravel::report {

std::string pct(double percent) { return fmt::format("{:.2f}%", percent); }

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw UserError(where + ": " + what);
}

std::string field(const std::string& where, const std::string& key) {
  return where + "." + key;
}

int require_int(const json& j, const std::string& key, const std::string& where) {
  const double v = require_number(j, key, where);
  if (v != std::floor(v) || std::fabs(v) > 1e9)
    fail(field(where, key), "expected an integer, got " + require(j, key, where).dump());
  return static_cast<int>(v);
}

int optional_int(const json& j, const std::string& key, const std::string& where, int fallback) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  return require_int(j, key, where);
}

const json& require_array(const json& j, const std::string& key, const std::string& where) {
  const json& a = require(j, key, where);
  if (!a.is_array()) fail(field(where, key), "expected an array, got " + std::string(a.type_name()));
  return a;
}

const json& require_object_at(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "expected an object, got " + std::string(j.type_name()));
  return j;
}

// f(element, name) for each element of the array j[key], each checked to be an object; `name`
// ("where.key[i]") names it in error messages.
template <class F>
void for_each_object(const json& j, const std::string& key, const std::string& where, F f) {
  const json& a = require_array(j, key, where);
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string w = where + "." + key + "[" + std::to_string(i) + "]";
    f(require_object_at(a[i], w), w);
  }
}

std::optional<std::pair<int, int>> optional_range(const json& j, const std::string& key,
                                                  const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& r = j.at(key);
  if (!r.is_array() || r.size() != 2 || !r[0].is_number() || !r[1].is_number())
    fail(field(where, key), "expected [first, last], got " + r.dump());
  return std::make_pair(r[0].get<int>(), r[1].get<int>());
}

std::string optional_string(const json& j, const std::string& key, const std::string& where,
                            const std::string& fallback) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_string()) fail(field(where, key), "expected a string");
  return j.at(key).get<std::string>();
}

}  // namespace

// ---- checked field access ------------------------------------------------------------------

const json& require(const json& j, const std::string& key, const std::string& where) {
  if (!j.is_object()) fail(where, "expected an object, got " + std::string(j.type_name()));
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail(where, "missing field \"" + key + "\"");
  return *it;
}

double require_number(const json& j, const std::string& key, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_number()) fail(field(where, key), "expected a number, got " + v.dump());
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(field(where, key), "not a finite number");
  return d;
}

std::optional<double> optional_number(const json& j, const std::string& key,
                                      const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return require_number(j, key, where);
}

std::optional<double> optional_count(const json& j, const std::string& key,
                                     const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    const bool digits = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (!digits) fail(field(where, key), "expected a decimal integer, got \"" + s + "\"");
    return std::strtod(s.c_str(), nullptr);  // exact up to 2^53, then the nearest double
  }
  fail(field(where, key), "expected a decimal string or a number, got " + v.dump());
}

double error_percent(const json& j, const std::string& where, const std::string& key) {
  const double v = require_number(j, key, where);
  if (v < 0) fail(field(where, key), "negative error " + std::to_string(v));
  const auto correct = optional_number(j, "correct", where);
  const auto n = optional_number(j, "n", where);
  if (correct && n && *n > 0) {
    const double frac = 1.0 - *correct / *n;
    return std::fabs(v - 100.0 * frac) < std::fabs(v - frac) ? v : 100.0 * v;
  }
  if (v > 100) fail(field(where, key), "error above 100%: " + std::to_string(v));
  return v <= 1.0 ? 100.0 * v : v;
}

// ---- lesion --------------------------------------------------------------------------------

LesionStudy parse_lesion(const json& j, const std::string& where) {
  require_object_at(j, where);
  LesionStudy out;
  out.model = optional_string(j, "model", where, "");
  if (j.contains("blocks") && !j.at("blocks").is_null()) {
    for_each_object(j, "blocks", where, [&](const json& bj, const std::string& w) {
      BlockMark b;
      b.index = require_int(bj, "index", w);
      b.stage = optional_int(bj, "stage", w, 0);
      if (bj.contains("downsample")) {
        if (!bj["downsample"].is_boolean()) fail(w + ".downsample", "expected true/false");
        b.downsample = bj["downsample"].get<bool>();
      }
      out.blocks.push_back(b);
    });
  }
  out.baseline = error_percent(require(j, "baseline", where), field(where, "baseline"));
  for_each_object(j, "plans", where, [&](const json& pj, const std::string& w) {
    LesionPlan p;
    p.plan = optional_string(pj, "plan", w, "");
    const std::string inferred = p.plan.rfind("delete", 0) == 0 ? "delete" : "custom";
    p.kind = optional_string(pj, "kind", w, inferred);
    if (pj.contains("blocks") && !pj.at("blocks").is_null()) {
      const json& bl = require_array(pj, "blocks", w);
      for (const json& b : bl) {
        if (!b.is_number_integer()) fail(w + ".blocks", "expected integers, got " + b.dump());
        p.blocks.push_back(b.get<int>());
      }
    }
    p.k = optional_int(pj, "k", w, static_cast<int>(p.blocks.size()));
    p.error = error_percent(pj, w);
    p.kendall_tau = optional_number(pj, "kendall_tau", w);
    out.plans.push_back(std::move(p));
  });
  return out;
}

std::vector<std::pair<int, double>> LesionStudy::single_deletions() const {
  std::vector<std::pair<int, double>> out;
  for (const LesionPlan& p : plans)
    if (p.kind == "delete" && p.blocks.size() == 1) out.emplace_back(p.blocks[0], p.error);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<ErrorStats> LesionStudy::stats_by_k(const std::string& kind) const {
  std::map<int, std::vector<const LesionPlan*>> groups;
  for (const LesionPlan& p : plans)
    if (p.kind == kind) groups[p.k].push_back(&p);
  std::vector<ErrorStats> out;
  for (const auto& [k, ps] : groups) {
    ErrorStats s;
    s.k = k;
    s.count = static_cast<int>(ps.size());
    std::vector<double> errs, taus;
    for (const LesionPlan* p : ps) {
      errs.push_back(p->error);
      if (p->kendall_tau) taus.push_back(*p->kendall_tau);
    }
    s.mean = mean(errs);
    s.std = sample_std(errs);
    s.min = *std::min_element(errs.begin(), errs.end());
    s.max = *std::max_element(errs.begin(), errs.end());
    s.median = median(errs);
    s.has_tau = !taus.empty();
    s.mean_tau = mean(taus);  // 0 when none
    out.push_back(s);
  }
  return out;
}

std::vector<int> LesionStudy::downsampling_blocks() const {
  std::vector<int> out;
  for (const BlockMark& b : blocks)
    if (b.downsample) out.push_back(b.index);
  return out;
}

// ---- paths ---------------------------------------------------------------------------------

LengthShares parse_paths(const json& j, const std::string& where) {
  require_object_at(j, where);
  LengthShares out;
  out.n = require_int(j, "n", where);
  if (out.n < 0 || out.n > paths::kMaxBlocks)
    fail(field(where, "n"), "must lie in 0.." + std::to_string(paths::kMaxBlocks));
  out.deleted = optional_int(j, "deleted", where, 0);
  if (out.deleted < 0 || out.deleted > out.n)
    fail(field(where, "deleted"), "must lie in 0.." + std::to_string(out.n));
  double weighted = 0;
  for_each_object(j, "lengths", where, [&](const json& lj, const std::string& w) {
    PathLength l;
    l.length = require_int(lj, "length", w);
    l.share = require_number(lj, "share", w);
    l.count = optional_count(lj, "count", w);
    l.remaining_share = optional_number(lj, "remaining_share", w);
    weighted += l.length * l.share;
    out.lengths.push_back(l);
  });
  std::sort(out.lengths.begin(), out.lengths.end(),
            [](const PathLength& a, const PathLength& b) { return a.length < b.length; });
  out.mean = optional_number(j, "mean", where).value_or(weighted);
  out.range95 = optional_range(j, "range95", where);
  return out;
}

double LengthShares::share_between(int lo, int hi) const {
  double s = 0;
  for (const PathLength& l : lengths)
    if (l.length >= lo && l.length <= hi) s += l.share;
  return s;
}

double LengthShares::remaining_at(int x) const {
  for (const PathLength& l : lengths)
    if (l.length == x && l.remaining_share) return *l.remaining_share;
  if (x < 0 || x > n - deleted) return 0.0;
  if (deleted == 0) return 1.0;  // also n = 0, which paths:: does not take
  return paths::remaining_share(n, deleted, x);  // parse_paths checked 0 <= deleted <= n <= kMaxBlocks
}

// ---- gradients -----------------------------------------------------------------------------

namespace {

// C(n, k) as the nearest double, for tables that leave out "paths": paths' exact counts up to
// paths::kMaxExactCountBlocks blocks (the row is made on first use), exp(log C) above (inf where
// it overflows); 0 for k outside 0..n.
class PathCounts {
 public:
  explicit PathCounts(int n) : n_(n) {}
  double at(int k) {
    if (k < 0 || k > n_) return 0.0;
    if (n_ > paths::kMaxExactCountBlocks) return std::exp(paths::log_binomial(n_, k));
    if (row_.empty())
      for (const paths::BigUint& c : paths::binomial_row(n_))
        row_.push_back(std::strtod(c.to_string().c_str(), nullptr));  // correctly rounded
    return row_[static_cast<size_t>(k)];
  }

 private:
  int n_;
  std::vector<double> row_;
};

}  // namespace

std::optional<double> GradLength::contribution() const {
  if (total) return total;
  if (mean) return *mean * paths;
  return norm;
}

Gradients parse_gradients(const json& j, const std::string& where) {
  require_object_at(j, where);
  Gradients out;
  const json& method = require(j, "method", where);
  if (!method.is_string()) fail(field(where, "method"), "expected a string");
  out.method = method.get<std::string>();
  out.n = require_int(j, "n", where);
  PathCounts counts(out.n);
  for_each_object(j, "lengths", where, [&](const json& lj, const std::string& w) {
    GradLength g;
    g.length = require_int(lj, "length", w);
    const auto given = optional_count(lj, "paths", w);
    g.paths = given ? *given : counts.at(g.length);
    g.norm = optional_number(lj, "norm", w);
    g.mean = optional_number(lj, "mean", w);
    g.std = optional_number(lj, "std", w);
    g.total = optional_number(lj, "total", w);
    out.lengths.push_back(g);
  });
  std::sort(out.lengths.begin(), out.lengths.end(),
            [](const GradLength& a, const GradLength& b) { return a.length < b.length; });
  out.residual = optional_number(j, "residual", where);
  out.effective_range = optional_range(j, "effective_range", where);
  out.seconds = optional_number(j, "seconds", where);
  return out;
}

// ---- short-path training -------------------------------------------------------------------

ShortPathTraining parse_short_path_training(const json& j, const std::string& where) {
  require_object_at(j, where);
  ShortPathTraining out;
  out.n = optional_int(j, "n", where, 0);
  out.active_blocks = optional_int(j, "active_blocks", where, 0);
  out.normal = error_percent(require(j, "normal", where), field(where, "normal"));
  out.short_paths = error_percent(require(j, "short", where), field(where, "short"));
  return out;
}

// ---- training curves -----------------------------------------------------------------------

std::vector<EpochPoint> parse_epochs(const std::string& jsonl, const std::string& where) {
  std::vector<EpochPoint> out;
  std::istringstream in(jsonl);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string w = where + ":" + std::to_string(lineno);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error&) {
      fail(w, "invalid JSON line");
    }
    if (!j.is_object() || j.value("type", std::string()) != "epoch") continue;
    EpochPoint p;
    p.epoch = require_number(j, "epoch", w);
    p.train_loss = optional_number(j, "train_loss", w);
    if (!p.train_loss) p.train_loss = optional_number(j, "loss", w);
    for (const char* key : {"test_error", "test_top1_error", "top1_error"}) {
      if (j.contains(key) && !j.at(key).is_null()) {
        p.test_error = error_percent(j, w, key);
        break;
      }
    }
    if (!p.test_error && j.contains("test") && j.at("test").is_object() &&
        j.at("test").contains("top1_error"))
      p.test_error = error_percent(j.at("test"), w + ".test");
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(),
            [](const EpochPoint& a, const EpochPoint& b) { return a.epoch < b.epoch; });
  return out;
}

}  // namespace unravel::report
