// Execution plans: text round trips, edits, validation messages, Kendall tau, hostile plan text
// (short errors, bounded work) and a brute-force oracle for random plans.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <time.h>

#include <functional>
#include <random>

#include "core/errors.h"
#include "core/plan.h"
#include "testing.h"

using namespace unravel;
namespace ut = unravel::testing;

namespace {

// Three stages of two blocks; blocks 3 and 5 downsample.
std::vector<BlockInfo> six_blocks() {
  std::vector<BlockInfo> b(6);
  Shape s1{16, 8, 8}, s2{32, 4, 4}, s3{64, 2, 2};
  Shape in[6] = {s1, s1, s1, s2, s2, s3}, out[6] = {s1, s1, s2, s2, s3, s3};
  for (int i = 0; i < 6; ++i) {
    b[i].index = i + 1;
    b[i].in_shape = in[i];
    b[i].out_shape = out[i];
    b[i].downsample = in[i] != out[i];
  }
  return b;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Plan, IntactPrintsAndParses) {
  Plan p = Plan::intact(6);
  EXPECT_TRUE(p.is_intact());
  EXPECT_EQ(p.str(), "intact");
  EXPECT_EQ(Plan::parse("intact", 6), p);
  EXPECT_EQ(p.order(), (std::vector<int>{1, 2, 3, 4, 5, 6}));
}

TEST(Plan, DeleteSwapDuplicateRoundTrip) {
  Plan p = Plan::parse("delete=3,1", 6);
  EXPECT_EQ(p.deleted_blocks(), (std::vector<int>{1, 3}));
  EXPECT_EQ(p.str(), "delete=1,3");
  EXPECT_EQ(Plan::parse(p.str(), 6), p);

  Plan s = Plan::parse("swap=1:2", 6);
  EXPECT_EQ(s.order(), (std::vector<int>{2, 1, 3, 4, 5, 6}));
  EXPECT_EQ(s.str(), "order=2,1,3-6");
  EXPECT_EQ(Plan::parse(s.str(), 6), s);

  Plan d = Plan::parse("duplicate=4", 6);
  EXPECT_EQ(d.order(), (std::vector<int>{1, 2, 3, 4, 4, 5, 6}));
  EXPECT_EQ(Plan::parse(d.str(), 6), d);

  Plan all = Plan::parse("order=6-1;delete=2 scale=3:0.25 gate=4:residual,5:shortcut", 6);
  EXPECT_EQ(all.order(), (std::vector<int>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(all.steps()[3].residual_scale, 0.25);  // block 3 at position 4
  EXPECT_EQ(all.steps()[2].gate, Gate::ResidualOnly);
  EXPECT_EQ(all.steps()[1].gate, Gate::ShortcutOnly);
  EXPECT_EQ(Plan::parse(all.str(), 6), all);
  EXPECT_NE(all.hash(), Plan::intact(6).hash());
}

TEST(Plan, EditsOnABaseKeepItsScales) {
  Plan base = Plan::intact(4).scale(1, 0.75).scale(4, 0.25);
  Plan p = Plan::parse("delete=2 swap=3:4", base);
  EXPECT_EQ(p.order(), (std::vector<int>{1, 2, 4, 3}));
  EXPECT_EQ(p.steps()[0].residual_scale, 0.75);
  EXPECT_EQ(p.steps()[2].residual_scale, 0.25);  // block 4 moved with its scale
  EXPECT_TRUE(p.steps()[1].deleted);
  EXPECT_EQ(Plan::parse(p.str(), 4), p);
}

TEST(Plan, IndexLists) {
  EXPECT_EQ(parse_index_list("3,17,20-22", "x"), (std::vector<int>{3, 17, 20, 21, 22}));
  EXPECT_EQ(format_index_list({1, 2, 3, 5, 7, 8}), "1-3,5,7,8");
  EXPECT_NE(error_of([] { parse_index_list("3,,4", "--delete"); }).find("--delete"), std::string::npos);
  EXPECT_EQ(parse_index_list("5-2", "x"), (std::vector<int>{5, 4, 3, 2}));  // descending range
  EXPECT_NE(error_of([] { parse_index_list("2-x", "--delete"); }).find("--delete"), std::string::npos);
}

TEST(Plan, BadTextNamesTheProblem) {
  EXPECT_NE(error_of([] { Plan::parse("delete=7", 6); }).find("block 7 is out of range"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("delete=0", 6); }).find("out of range"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("remove=3", 6); }).find("unknown clause 'remove'"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("delete=x", 6); }).find("'x' is not an integer"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("swap=1", 6); }).find("A:B"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("gate=1:sideways", 6); }).find("sideways"), std::string::npos);
  EXPECT_NE(error_of([] { Plan::parse("", 6); }).find("empty plan"), std::string::npos);
}

TEST(Plan, ValidateShapes) {
  auto blocks = six_blocks();
  EXPECT_NO_THROW(Plan::intact(6).validate(blocks));
  EXPECT_NO_THROW(Plan::parse("delete=3,5", 6).validate(blocks));  // deleted downsampling keeps its shortcut
  EXPECT_NO_THROW(Plan::parse("swap=1:2", 6).validate(blocks));
  EXPECT_NO_THROW(Plan::parse("duplicate=2", 6).validate(blocks));
  std::string e = error_of([&] { Plan::parse("swap=2:4", 6).validate(blocks); });
  EXPECT_NE(e.find("block 4 expects input 32x4x4"), std::string::npos) << e;
  e = error_of([&] { Plan::parse("duplicate=3", 6).validate(blocks); });
  EXPECT_NE(e.find("same shape"), std::string::npos) << e;
  e = error_of([&] { Plan::parse("order=1-4", 6).validate(blocks); });
  EXPECT_NE(e.find("head expects"), std::string::npos) << e;
  e = error_of([&] { Plan::intact(5).validate(blocks); });
  EXPECT_NE(e.find("5 blocks"), std::string::npos) << e;
}

TEST(Plan, KendallTau) {
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 3, 4, 5}), 1.0);
  EXPECT_DOUBLE_EQ(kendall_tau({5, 4, 3, 2, 1}), -1.0);
  const int n = 6;
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 4, 3, 5, 6}), 1.0 - 4.0 / (n * (n - 1)));
  // one swap of blocks two apart: pairs (2,4),(2,3),(3,4) discordant of 15
  EXPECT_DOUBLE_EQ(kendall_tau({1, 4, 3, 2, 5, 6}), (12.0 - 3.0) / 15.0);
}

// ---- hostile plan text ----------------------------------------------------------------------

namespace {

// "delete=" + "1-100001,1-100001,..." (n_items items)
std::string repeated(const std::string& head, const std::string& item, std::size_t n_items) {
  std::string s = head;
  for (std::size_t i = 0; i < n_items; ++i) s += (i ? "," : "") + item;
  return s;
}

// CPU seconds of the calling thread: the work a parse does, which neither other processes on a
// busy machine nor a sanitizer's own threads can stretch (wall time is never asserted).
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The error of Plan::parse(text, n), checked to be one short line; `seconds` gets the CPU time.
std::string hostile_error(const std::string& text, int n, double* seconds = nullptr) {
  const double t0 = thread_cpu_seconds();
  std::string e = error_of([&] { Plan::parse(text, n); });
  const double dt = thread_cpu_seconds() - t0;
  if (seconds) *seconds = dt;
  EXPECT_NE(e, "(no error)");
  EXPECT_LT(e.size(), 200u) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  EXPECT_LT(dt, 1.0) << "took " << dt << " CPU s: " << e;  // the unbounded versions took 13 s to minutes
  return e;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(PlanHostile, HugeRangesAreCheckedBeforeExpansion) {
  const std::string text = repeated("delete=", "1-100001", 2004);  // 18 KB, 200 million indices
  ASSERT_GT(text.size(), 18000u);
  const std::string e = hostile_error(text, 20);
  EXPECT_TRUE(has(e, "block 100001 is out of range (the network has blocks 1-20)")) << e;
  EXPECT_TRUE(has(e, "plan clause 'delete=1-100001,1-100001")) << e;
  EXPECT_TRUE(has(e, "(" + std::to_string(text.size()) + " chars)")) << e;  // the middle elided
  // one range of a million indices in a list
  EXPECT_TRUE(has(error_of([] { parse_index_list("1-1000000", "--lengths"); }),
                  "--lengths: the list expands to more than 100000 indices"));
  IndexListLimits lim;
  lim.lo = 1;
  lim.hi = 6;
  lim.max_items = 10;
  EXPECT_EQ(error_of([&] { parse_index_list("2,1-1000000", "--delete", lim); }),
            "--delete: 1000000 is out of range (1 to 6)");
  EXPECT_EQ(error_of([&] { parse_index_list("1-6,1-6", "--delete", lim); }),
            "--delete: the list expands to more than 10 indices");
  EXPECT_EQ(parse_index_list("1-6,6-3", "x", lim), (std::vector<int>{1, 2, 3, 4, 5, 6, 6, 5, 4, 3}));
}

TEST(PlanHostile, StepsAreCappedBeforeExpansion) {
  EXPECT_EQ(Plan::max_steps(6), 64u);
  EXPECT_EQ(Plan::max_steps(1000), 4000u);
  // a million requested steps: 1000 ranges of 1000 blocks (12 KB of text)
  std::string e = hostile_error(repeated("order=", "1-1000", 1000), 1000);
  EXPECT_TRUE(has(e, "the plan would have more than 4000 steps")) << e;
  EXPECT_TRUE(has(e, "plan clause 'order=1-1000,1-1000")) << e;
  e = hostile_error(repeated("duplicate=", "1", 59), 6);  // 6 + 59 > 64
  EXPECT_TRUE(has(e, "more than 64 steps")) << e;
  EXPECT_EQ(Plan::parse(repeated("duplicate=", "1", 58), 6).steps().size(), 64u);  // the limit itself
  e = hostile_error(repeated("order=", "1-6", 10) + " duplicate=1,2,3,4 duplicate=5", 6);  // 60, 64, 65
  EXPECT_EQ(e, "plan clause 'duplicate=5': the plan would have more than 64 steps (the limit is 4 x the 6 "
               "blocks, at least 64)");
}

TEST(PlanHostile, LongDuplicateListsTakeLinearTime) {
  // 64 KB of "duplicate=1,1,...": refused at once on a small network...
  const std::string text = repeated("duplicate=", "1", 32760);
  ASSERT_LE(text.size(), kMaxPlanTextBytes);
  EXPECT_TRUE(has(hostile_error(text, 20), "more than 80 steps"));
  // ...and accepted on a network large enough: 32760 inserts at the front of a 12000-step plan
  // (the quadratic version moved ~30 GB of steps).
  const double t0 = thread_cpu_seconds();
  const Plan p = Plan::parse(text, 12000);
  EXPECT_LT(thread_cpu_seconds() - t0, ut::cpu_budget(1.0)) << "CPU seconds";
  ASSERT_EQ(p.steps().size(), 12000u + 32760u);
  EXPECT_EQ(p.steps()[32760].block, 1);
  EXPECT_EQ(p.steps()[32761].block, 2);
  EXPECT_EQ(p.steps().back().block, 12000);
  // many swaps and scales of a big plan
  const Plan q = Plan::parse(repeated("swap=", "1:9999", 5001) + " " + repeated("scale=", "5:0.5", 3000), 10000);
  EXPECT_EQ(q.steps()[0].block, 9999);  // an odd number of swaps
  EXPECT_EQ(q.steps()[4].residual_scale, 0.5);
}

TEST(PlanHostile, TextLimitsAndControlBytes) {
  std::string e = hostile_error(std::string(1 << 20, 'x'), 6);  // a 1 MB junk line
  EXPECT_EQ(e, "plan text is 1048576 bytes, more than the limit of 65536 bytes");
  e = hostile_error(std::string("delete=3\0swap=1:2", 17), 6);
  EXPECT_EQ(e, "plan text: control byte 0x00 at byte offset 8 (a plan is printable text)");
  EXPECT_TRUE(has(hostile_error("delete=3\x1b[2J", 6), "control byte 0x1b at byte offset 8"));
  EXPECT_TRUE(has(hostile_error("delete=3\x7f", 6), "control byte 0x7f"));
  // tab, CR and LF separate clauses as spaces do (plan files written on Windows)
  EXPECT_EQ(Plan::parse("delete=3\tswap=1:2\r\n", 6), Plan::parse("delete=3 swap=1:2", 6));
  // a long junk clause, a long unknown name and a long item are quoted short
  e = hostile_error(std::string(60000, 'y'), 6);
  EXPECT_TRUE(has(e, "should be NAME=VALUE")) << e;
  EXPECT_TRUE(has(e, "(60000 chars)")) << e;
  EXPECT_TRUE(has(hostile_error(std::string(5000, 'k') + "=3", 6), "unknown clause 'kkkk"));
  EXPECT_TRUE(has(hostile_error("delete=" + std::string(5000, '7'), 6), "is not an integer"));
  EXPECT_TRUE(has(hostile_error("scale=1:" + std::string(5000, '7') + "x", 6), "is not a number"));
  EXPECT_TRUE(has(hostile_error("gate=1:" + std::string(5000, 'q'), 6), "is not one of both"));
}

TEST(PlanHostile, EmptyValuesAreRefusedAlike) {
  for (const std::string key : {"delete", "order", "swap", "duplicate", "scale", "gate"}) {
    EXPECT_EQ(hostile_error(key + "=", 6), "plan clause '" + key + "=': empty value (give at least one item)");
    EXPECT_EQ(hostile_error("intact " + key + "=;", 6),
              "plan clause '" + key + "=': empty value (give at least one item)");
  }
  for (const std::string text : {"", " ", " ; \t\n;"})
    EXPECT_EQ(hostile_error(text, 6), "empty plan: use 'intact' for the unedited network");
  EXPECT_TRUE(has(hostile_error("delete=3,", 6), "item 2 of 2 is empty"));
  EXPECT_TRUE(has(hostile_error("swap=1:2,,3:4", 6), "item 2 of 3 is empty"));
  EXPECT_TRUE(has(hostile_error("scale=1:", 6), "'' is not a number"));
}

TEST(PlanHostile, MemoryStaysSmall) {
  // After all the hostile texts above (and here), the process never held much memory: the
  // unbounded version needed 2 GB for the first one.
  hostile_error(repeated("delete=", "1-100001", 2004), 20);
  hostile_error(repeated("order=", "1-1000", 1000), 1000);
  rusage ru{};
  ASSERT_EQ(getrusage(RUSAGE_SELF, &ru), 0);
  EXPECT_LT(ru.ru_maxrss, 200 * 1024) << "peak RSS " << ru.ru_maxrss << " KiB";
}

// ---- random plans against a brute-force oracle --------------------------------------------

namespace {

// The documented meaning of each clause, applied item by item to a vector of steps (as the
// first version of Plan did); false when an item names a block that does not run.
bool oracle_apply(std::vector<Step>& st, const std::string& key, const std::vector<std::pair<int, std::string>>& items) {
  auto first = [&](int b) {
    for (std::size_t i = 0; i < st.size(); ++i)
      if (st[i].block == b) return static_cast<long>(i);
    return -1L;
  };
  for (const auto& [b, v] : items) {
    if (key == "delete") {
      for (auto& s : st) s.deleted |= s.block == b;
    } else if (key == "duplicate") {
      if (first(b) < 0) return false;
      st.insert(st.begin() + first(b) + 1, st[first(b)]);
    } else if (key == "swap") {
      const int c = std::stoi(v);
      if (first(b) < 0 || first(c) < 0) return false;
      std::swap(st[first(b)], st[first(c)]);
    } else if (key == "scale" || key == "gate") {
      for (auto& s : st)
        if (s.block == b) {
          if (key == "scale") s.residual_scale = std::stod(v);
          else s.gate = v == "none" ? Gate::None : v == "residual" ? Gate::ResidualOnly : v == "shortcut" ? Gate::ShortcutOnly : Gate::Both;
        }
    }
  }
  if (key == "order") {
    std::vector<Step> next;
    for (const auto& [b, v] : items) {
      Step s = first(b) >= 0 ? st[first(b)] : Step{};
      s.block = b;
      next.push_back(s);
    }
    st = next;
  }
  return true;
}

// One random clause: its text and its items, ranges expanded.
std::pair<std::string, std::vector<std::pair<int, std::string>>> random_clause(std::mt19937& rng, int n,
                                                                               std::string& key) {
  const char* keys[] = {"delete", "order", "swap", "duplicate", "scale", "gate"};
  const char* scales[] = {"0", "0.5", "0.25", "-1", "1e-3", "0.33333333333333331", "2", "1"};
  const char* gates[] = {"both", "residual", "shortcut", "none"};
  key = keys[rng() % 6];
  auto blk = [&] { return 1 + static_cast<int>(rng() % n); };
  std::vector<std::pair<int, std::string>> items;
  std::string text = key + "=";
  const int count = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < count; ++i) {
    text += i ? "," : "";
    const int a = blk();
    if (key == "swap" || key == "scale" || key == "gate") {
      const std::string v = key == "swap" ? std::to_string(blk()) : key == "scale" ? scales[rng() % 8] : gates[rng() % 4];
      text += std::to_string(a) + ":" + v;
      items.push_back({a, v});
    } else if (rng() % 3 == 0) {  // a range, either direction
      const int b = blk();
      text += std::to_string(a) + "-" + std::to_string(b);
      for (int x = a;; x += b >= a ? 1 : -1) {
        items.push_back({x, ""});
        if (x == b) break;
      }
    } else {
      text += std::to_string(a);
      items.push_back({a, ""});
    }
  }
  return {text, items};
}

}  // namespace

TEST(PlanProperty, RandomPlansMatchTheOracleAndRoundTrip) {
  std::mt19937 rng(20161205);
  const char* seps[] = {" ", ";", "\t", " ; "};
  int accepted = 0, refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<Step> oracle = Plan::intact(n).steps();
    bool ok = true;
    std::string text;
    const int clauses = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < clauses; ++c) {
      std::string key;
      auto [clause, items] = random_clause(rng, n, key);
      text += (c ? seps[rng() % 4] : "") + clause;
      if (ok) ok = oracle_apply(oracle, key, items) && oracle.size() <= Plan::max_steps(n);
    }
    SCOPED_TRACE("n=" + std::to_string(n) + " plan: " + text);
    if (!ok) {
      EXPECT_NE(error_of([&] { Plan::parse(text, n); }), "(no error)");
      ++refused;
      continue;
    }
    const Plan p = Plan::parse(text, n);
    ASSERT_EQ(p.steps(), oracle);
    const Plan back = Plan::parse(p.str(), n);
    ASSERT_EQ(back, p) << p.str();
    ASSERT_EQ(back.str(), p.str());
    ++accepted;
  }
  EXPECT_GT(accepted, 1500);  // both outcomes are exercised
  EXPECT_GT(refused, 100);
}
