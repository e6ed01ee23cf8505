// Execution plans: text round trips, edits, validation messages, Kendall tau.
#include <gtest/gtest.h>

#include "core/errors.h"
#include "core/plan.h"

using namespace unravel;

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
