// Fuzz harness of the plan text form (core/plan.h): Plan::parse on networks of 1, 6 and 54 blocks
// and on a base plan with residual scales, then str(), a re-parse that must give an equal plan,
// hash() and validate() against a block table. Errors must be one short line (UserError).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "harness.h"
#include "core/errors.h"
#include "core/plan.h"

namespace {

using unravel::Plan;

// A broken invariant of our code: print it and abort (the driver keeps the input).
constexpr const char* kHarness = "fuzz_plan";

[[noreturn]] void bug(const std::string& what, const std::string& detail) {
  unravel::fuzz::report_bug(kHarness, what, detail);
}

void check_message(const unravel::UserError& e) { unravel::fuzz::check_one_line(kHarness, e); }

// Three stages of n/3 blocks (16x12x12 -> 32x6x6 -> 64x3x3); n = 1: one block.
std::vector<unravel::BlockInfo> block_table(int n) {
  std::vector<unravel::BlockInfo> blocks;
  const int per_stage = n >= 3 ? n / 3 : n;
  unravel::Shape cur = {16, 12, 12};
  for (int i = 1; i <= n; ++i) {
    unravel::BlockInfo b;
    b.index = i;
    b.stage = 1 + (i - 1) / per_stage;
    b.in_shape = cur;
    b.downsample = i > 1 && (i - 1) % per_stage == 0;
    if (b.downsample) cur = {cur[0] * 2, cur[1] / 2, cur[2] / 2};
    b.out_shape = cur;
    b.kind = "preact-basic";
    blocks.push_back(b);
  }
  return blocks;
}

// str() must read back to the same plan, on the intact base of the same size.
void round_trip(const Plan& p, const std::vector<unravel::BlockInfo>& blocks) {
  const std::string text = p.str();
  Plan again;
  try {
    again = Plan::parse(text, p.n_blocks());
  } catch (const unravel::UserError& e) {
    bug("str() does not parse", text + " -> " + e.what());
  }
  if (again != p) bug("parse(str()) differs", text + " -> " + again.str());
  if (again.hash() != p.hash()) bug("equal plans hash differently", text);
  volatile size_t sink = p.deleted_blocks().size() + p.order().size() + p.is_intact();
  (void)sink;
  try {
    p.validate(blocks);
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  static const std::vector<unravel::BlockInfo> tables[] = {block_table(1), block_table(6), block_table(54)};
  for (const auto& blocks : tables) {
    try {
      round_trip(Plan::parse(text, static_cast<int>(blocks.size())), blocks);
    } catch (const unravel::UserError& e) {
      check_message(e);
    }
  }
  // A base with test-time residual scales (a stochastic-depth net) and one deleted block.
  static const Plan base = [] {
    Plan p = Plan::intact(6);
    for (int b = 1; b <= 6; ++b) p.scale(b, 1.0 - b / 12.0);
    p.remove({4});
    return p;
  }();
  try {
    round_trip(Plan::parse(text, base), tables[1]);
  } catch (const unravel::UserError& e) {
    check_message(e);
  }
  return 0;
}
