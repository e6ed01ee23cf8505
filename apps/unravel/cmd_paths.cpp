// unravel paths: how many paths of each length a network has (E5), how many survive deleting
// blocks (E8), and which lengths one mini-batch of short-path training sees (E7). The arithmetic
// lives in src/paths/path_counts.h; this file resolves the network, prints and writes files.
#include <fmt/format.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "models/network.h"
#include "paths/path_counts.h"

namespace unravel::cli {

namespace {

struct PathsArgs {
  int blocks = 0;
  std::string model, run, json_path, csv_path;
  int deleted = 0;
  int active_blocks = 0;
  double mass = 0.95;
  bool all_rows = false;
};

int blocks_of_model(const std::string& name) {
  int n = 0;
  for (int b : models::ModelSpec::parse(name).blocks_per_stage) n += b;
  return n;
}

// The model of a run directory, from DIR/config.json (no checkpoint or libtorch needed).
std::string model_of_run(const std::string& dir) {
  const std::string cfg = dir + "/config.json";
  if (!path_exists(cfg)) throw UserError("--run " + dir + ": not a run directory (no config.json)");
  const nlohmann::json j = read_json_file(cfg);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_string())
    throw UserError(cfg + ": no \"model\" string field");
  return j["model"].get<std::string>();
}

// 10^l as d.dddde+N (for numbers too long to read or too large for a double).
std::string sci_from_log10(double l) {
  double exponent = std::floor(l);
  double mantissa = std::pow(10.0, l - exponent);
  if (mantissa >= 9.99995) {  // would print as 10.0000
    mantissa /= 10;
    exponent += 1;
  }
  return fmt::format("{:.4f}e+{}", mantissa, static_cast<long>(exponent));
}

// Exact count when it is short enough to read, else its scientific form.
std::string count_text(const paths::LengthRow& r) {
  if (!r.count.empty() && r.count.size() <= 20) return r.count;
  return sci_from_log10(r.log10_count);
}

// "2^54 = 18014398509481984", or "2^5000 ~ 1.4125e+1505" when the digits would fill the screen.
std::string paths_text(const std::string& exact, int exponent) {
  if (!exact.empty() && exact.size() <= 30) return fmt::format("2^{} = {}", exponent, exact);
  return fmt::format("2^{} ~ {}", exponent, sci_from_log10(exponent * std::log10(2.0)));
}

void print_table(const paths::PathDistribution& d, bool all_rows) {
  const int n = d.options.blocks, del = d.options.deleted, K = d.options.active_blocks;
  const char* extra = del > 0 ? "remaining" : K > 0 ? "trained" : nullptr;
  if (K > 0) {
    std::cout << fmt::format("short-path training: {} of {} blocks active per mini-batch\n", K, n);
  } else {
    std::cout << fmt::format("network of {} residual blocks{}\n", n,
                             del > 0 ? fmt::format(", {} deleted", del) : "");
  }
  std::cout << fmt::format("{:>6}  {:>20}  {:>12}", "length", "count", "share");
  if (extra) std::cout << fmt::format("  {:>12}", extra);
  std::cout << "\n";
  // Long tables only show the lengths that carry paths; files always hold every length.
  const double min_share = (all_rows || d.lengths.size() <= 201) ? -1.0 : 1e-15;
  int hidden = 0;
  for (const paths::LengthRow& r : d.lengths) {
    if (r.share < min_share) {
      ++hidden;
      continue;
    }
    std::cout << fmt::format("{:>6}  {:>20}  {:>12.6g}", r.length, count_text(r), r.share);
    if (extra) std::cout << fmt::format("  {:>12.6g}", r.kept_share);
    std::cout << "\n";
  }
  if (hidden > 0)
    std::cout << fmt::format("({} lengths with share below 1e-15 not shown; --all shows them)\n",
                             hidden);

  const auto [a, b] = d.range;
  if (K > 0) {
    std::cout << fmt::format("paths per mini-batch: {} (network: {})\n", paths_text(d.total, K),
                             paths_text(d.network_total, n));
    std::cout << "trained: share of the network's paths of this length present in one mini-batch, "
                 "C(K,k)/C(n,k)\n";
  } else {
    std::cout << fmt::format("total paths: {}\n", paths_text(d.total, n));
  }
  std::cout << fmt::format("mean length: {}\n", d.mean);
  std::cout << fmt::format("shortest range holding {}% of paths: lengths {}-{} ({:.6g}%)\n",
                           d.options.mass * 100, a, b, d.share_between(a, b) * 100);
  if (del > 0) {
    std::cout << fmt::format("remaining: share of the paths of this length left, C(n-d,k)/C(n,k)\n");
    std::cout << fmt::format("paths left after deleting {} blocks: {} (a share of 2^-{} = {:.6g})\n",
                             del, paths_text(d.remaining_total, n - del), del,
                             std::ldexp(1.0, -del));
    std::cout << fmt::format("remaining paths: mean length {}, shortest 95% range {}-{}\n",
                             d.remaining_mean, d.remaining_range95.first,
                             d.remaining_range95.second);
  }
}

std::string csv_text(const paths::PathDistribution& d) {
  const char* extra = d.options.deleted > 0        ? ",remaining_share"
                      : d.options.active_blocks > 0 ? ",trained_share"
                                                    : "";
  std::string out = fmt::format("length,count,share{}\n", extra);
  for (const paths::LengthRow& r : d.lengths) {
    out += fmt::format("{},{},{}", r.length, r.count, r.share);
    if (*extra) out += fmt::format(",{}", r.kept_share);
    out += "\n";
  }
  return out;
}

}  // namespace

void add_paths_command(CLI::App& app) {
  auto args = std::make_shared<PathsArgs>();
  auto* c = app.add_subcommand(
      "paths", "number and share of paths of each length (E5), paths left after deleting blocks "
               "(E8), lengths seen in short-path training (E7)");
  auto* blocks = c->add_option("--blocks", args->blocks, "number of residual blocks n");
  auto* model = c->add_option("--model", args->model, "model name whose blocks to count, e.g. preresnet110");
  auto* run = c->add_option("--run", args->run, "run directory (its config.json names the model)");
  c->add_option("--delete", args->deleted,
                "delete D blocks: share of the paths of each length left, C(n-D,k)/C(n,k)")
      ->capture_default_str();
  auto* active = c->add_option(
      "--active-blocks", args->active_blocks,
      "K active blocks per mini-batch: path lengths of one batch ~ Binomial(K, 1/2)");
  c->add_option("--mass", args->mass, "mass of the reported shortest range of lengths")
      ->capture_default_str();
  c->add_flag("--all", args->all_rows, "print every length (tables above 200 blocks hide shares < 1e-15)");
  c->add_option("--json", args->json_path,
                "write {n, deleted, lengths: [{length, count, share, ...}], mean, range95, ...}");
  c->add_option("--csv", args->csv_path,
                "write a row per length: length,count,share[,remaining_share with --delete | "
                ",trained_share with --active-blocks]; count is exact, empty above " +
                    std::to_string(paths::kMaxExactCountBlocks) + " blocks");
  c->callback([args, blocks, model, run, active] {
    const size_t sources = blocks->count() + model->count() + run->count();
    if (sources != 1) throw UserError("paths: give exactly one of --blocks N, --model NAME or --run DIR");
    if (active->count() > 0 && args->active_blocks < 1)
      throw UserError(fmt::format("--active-blocks must be at least 1 (got {})", args->active_blocks));
    int n = args->blocks;
    if (model->count() > 0) n = blocks_of_model(args->model);
    if (run->count() > 0) n = blocks_of_model(model_of_run(args->run));

    if (!args->json_path.empty()) check_output_path(args->json_path, "--json");
    if (!args->csv_path.empty()) check_output_path(args->csv_path, "--csv");
    paths::PathOptions options(n);
    options.deleted = args->deleted;
    options.active_blocks = args->active_blocks;
    options.mass = args->mass;
    const paths::PathDistribution d = paths::path_lengths(options);

    print_table(d, args->all_rows);
    if (!args->json_path.empty()) {
      nlohmann::json j = d.to_json();
      if (model->count() > 0) j["model"] = args->model;
      if (run->count() > 0) j["run"] = args->run;
      j["schema_version"] = kRunSchemaVersion;
      j["command"] = "paths";
      write_output_file(args->json_path, j.dump(2) + "\n", "--json");
    }
    if (!args->csv_path.empty()) write_output_file(args->csv_path, csv_text(d), "--csv");
  });
}

}  // namespace unravel::cli
