// Lesion studies: plan generation, the prefix-tree engine against the reference engine, deleted
// blocks, batch-norm folding and recalibration, reports. Small nets on 1x12x12 inputs.
// Sections: Kendall tau (brute force over pairs) and plan generation / blocks under a deleted
// step / batch-norm folding / the engines / batch-norm recalibration / the study and its reports
// (summary std: the sample std, n-1) / the command line / interrupted sweeps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "core/errors.h"
#include "core/util.h"
#include "lesion/lesion.h"
#include "testing.h"

using namespace unravel;
using unravel::testing::TempDir;
using namespace unravel::lesion;
using models::Network;
using models::NetworkOptions;
using torch::Tensor;

namespace {

Network make_net(const std::string& model, uint64_t seed = 1, const std::string& shortcut = "A") {
  torch::manual_seed(seed);
  Network net(NetworkOptions(model).in_channels(1).input_size(12, 12).num_classes(10).shortcut(shortcut));
  net->eval();
  return net;
}

// Non-trivial batch-norm: random running statistics and affine parameters.
void randomize_batchnorm(Network& net, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& m : net->modules(false)) {
    if (auto* b = m->as<torch::nn::BatchNorm2d>()) {
      const auto c = b->running_mean.size(0);
      b->running_mean.copy_(torch::rand({c}) - 0.5);
      b->running_var.copy_(torch::rand({c}) * 1.5 + 0.5);
      b->weight.copy_(torch::rand({c}) + 0.5);
      b->bias.copy_(torch::rand({c}) * 0.4 - 0.2);
    }
  }
}

// N random 1x12x12 images with random labels.
data::Split make_split(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  data::Split s;
  s.images = torch::randint(0, 256, {n, 1, 12, 12}, torch::kUInt8);
  s.labels = torch::randint(0, 10, {n}, torch::kInt64);
  return s;
}

std::vector<Plan> plans_of(const Plan& base, const std::vector<Lesion>& ls) {
  std::vector<Plan> out{base};
  for (const auto& l : ls) out.push_back(l.plan);
  return out;
}

using LogitMap = std::map<std::pair<size_t, int64_t>, Tensor>;

EngineOptions recording(Engine e, LogitMap& out) {
  return EngineOptions().engine(e).batch_size(32).on_logits(
      [&out](size_t p, int64_t first, const Tensor& l) { out[{p, first}] = l.clone(); });
}

// Both engines on the same folded copy: identical logits and correct counts for every plan.
void expect_engines_agree(Network& net, const std::vector<Plan>& plans, Precision precision = Precision::FP32) {
  const auto split = make_split(100, 5);  // 3 full batches of 32 and one of 4
  const auto norm = data::Normalizer::fit(split.images);
  Network ev = make_eval_copy(net, /*fold=*/true, /*channels_last=*/false, precision);
  LogitMap lp, lr;
  EngineStats sp, sr;
  auto mp = evaluate_plans(ev, plans, split, norm, recording(Engine::Prefix, lp), &sp);
  auto mr = evaluate_plans(ev, plans, split, norm, recording(Engine::Reference, lr), &sr);
  ASSERT_EQ(mp.size(), plans.size());
  ASSERT_EQ(lp.size(), plans.size() * 4);
  ASSERT_EQ(lr.size(), lp.size());
  for (size_t p = 0; p < plans.size(); ++p) {
    EXPECT_EQ(mp[p].correct, mr[p].correct) << "plan " << plans[p].str();
    EXPECT_EQ(mp[p].correct5, mr[p].correct5) << "plan " << plans[p].str();
    EXPECT_EQ(mp[p].n, 100);
    EXPECT_DOUBLE_EQ(mp[p].loss_sum, mr[p].loss_sum) << "plan " << plans[p].str();
  }
  for (const auto& kv : lp) {
    const Tensor& a = kv.second;
    const Tensor& b = lr.at(kv.first);
    EXPECT_TRUE(torch::equal(a, b)) << "plan " << plans[kv.first.first].str() << " batch at "
                                    << kv.first.second << ": max |diff| "
                                    << (a - b).abs().max().item<double>();
  }
  // The prefix engine computes strictly fewer block steps, the same number of heads.
  EXPECT_LT(sp.residual_evaluations, sr.residual_evaluations);
  EXPECT_LE(sp.head_evaluations, sr.head_evaluations);
  EXPECT_EQ(sp.stem_evaluations, 4);
  EXPECT_EQ(sr.stem_evaluations, 4 * static_cast<int64_t>(plans.size()));
}

// Kendall's tau-a straight from its definition, over the distinct blocks present in `order`:
// each block sits at the position of its first occurrence; a pair of blocks a < b is concordant
// when a comes first, discordant otherwise; tau = (C - D) / C(m, 2), and 1 for m < 2 blocks.
double kendall_tau_brute(const std::vector<int>& order) {
  std::map<int, size_t> first;  // block -> position of its first occurrence
  for (size_t i = 0; i < order.size(); ++i) first.emplace(order[i], i);
  std::vector<std::pair<int, size_t>> blocks(first.begin(), first.end());
  const size_t m = blocks.size();
  if (m < 2) return 1.0;
  long long concordant = 0, discordant = 0;
  for (size_t a = 0; a < m; ++a)
    for (size_t b = 0; b < m; ++b)
      if (blocks[a].first < blocks[b].first) (blocks[a].second < blocks[b].second ? concordant : discordant)++;
  EXPECT_EQ(concordant + discordant, static_cast<long long>(m * (m - 1) / 2));
  return static_cast<double>(concordant - discordant) / static_cast<double>(m * (m - 1) / 2);
}

}  // namespace

// ---- Kendall tau and plan generation ---------------------------------------------------------

TEST(LesionKendall, KnownValues) {
  for (int n : {2, 5, 27}) {
    std::vector<int> id(n), rev(n);
    for (int i = 0; i < n; ++i) id[i] = i + 1, rev[i] = n - i;
    EXPECT_DOUBLE_EQ(kendall_tau(id), 1.0);
    EXPECT_DOUBLE_EQ(kendall_tau(rev), -1.0);
    auto one = id;
    std::swap(one[n / 2 - 1], one[n / 2]);  // one adjacent swap: one discordant pair of C(n,2)
    EXPECT_NEAR(kendall_tau(one), 1.0 - 4.0 / (n * (n - 1.0)), 1e-12) << "n = " << n;
  }
  // Swapping the ends of 1..5: pairs (5,x) and (x,1) discordant: 7 of 10 -> (3 - 7) / 10.
  EXPECT_NEAR(kendall_tau({5, 2, 3, 4, 1}), -0.4, 1e-12);
  EXPECT_NEAR(kendall_tau_brute({5, 2, 3, 4, 1}), -0.4, 1e-12);  // the oracle agrees by hand
}

// Random orders of random subsets of 1..n with repeated blocks: kendall_tau equals the count of
// concordant and discordant pairs of first occurrences. Repeats and absent blocks change nothing.
TEST(LesionKendall, EqualsBruteForcePairCountOnRandomOrdersWithRepeats) {
  std::mt19937 rng(2016);
  int nontrivial = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<int> order;
    for (int b = 1; b <= n; ++b)
      if (rng() % 4 != 0) order.push_back(b);  // about a quarter of the blocks absent
    std::shuffle(order.begin(), order.end(), rng);
    const int repeats = static_cast<int>(rng() % 4);
    for (int r = 0; r < repeats && !order.empty(); ++r)  // a repeat anywhere after the original
      order.insert(order.begin() + static_cast<long>(rng() % (order.size() + 1)), order[rng() % order.size()]);
    const double want = kendall_tau_brute(order);
    nontrivial += std::abs(want) < 1.0;
    EXPECT_NEAR(kendall_tau(order), want, 1e-12) << "order " << format_index_list(order);
  }
  EXPECT_GT(nontrivial, 200);  // the orders were not all (anti-)sorted
  // the first occurrence decides: 2,1,2 has 2 before 1; 1,2,1 has 1 before 2
  EXPECT_DOUBLE_EQ(kendall_tau({2, 1, 2}), -1.0);
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 1}), 1.0);
}

TEST(LesionSweeps, KRange) {
  EXPECT_EQ(parse_k_range("1:4", "--x"), std::make_pair(1, 4));
  EXPECT_EQ(parse_k_range("3", "--x"), std::make_pair(3, 3));
  for (const char* bad : {"0:3", "4:1", "a", "1:", ""}) {
    try {
      parse_k_range(bad, "--delete-random");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("--delete-random"), std::string::npos) << e.what();
    }
  }
}

TEST(LesionSweeps, SingleDeletions) {
  Network net = make_net("preresnet14");  // 6 blocks
  auto ls = single_deletions(net->default_plan(), net->block_infos());
  ASSERT_EQ(ls.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ls[i].edit.str(), "delete=" + std::to_string(i + 1));
    EXPECT_EQ(ls[i].blocks, std::vector<int>{i + 1});
    EXPECT_EQ(ls[i].kind, "delete");
    EXPECT_EQ(ls[i].k, 1);
    EXPECT_EQ(ls[i].plan.deleted_blocks(), std::vector<int>{i + 1});
  }
}

TEST(LesionSweeps, RebaseKeepsResidualScales) {
  Network net = make_net("preresnet14");
  net->set_residual_scales({1.0, 0.9, 0.8, 0.7, 0.6, 0.5});
  auto ls = single_deletions(net->default_plan(), net->block_infos());
  EXPECT_EQ(ls[2].edit.str(), "delete=3");
  EXPECT_DOUBLE_EQ(ls[2].plan.steps()[1].residual_scale, 0.9);
  EXPECT_TRUE(ls[2].plan.steps()[2].deleted);
  // swapped blocks carry their own scale to the new position
  Plan e = Plan::intact(6).swap(5, 6);
  Plan r = rebase(e, net->default_plan());
  EXPECT_EQ(r.steps()[4].block, 6);
  EXPECT_DOUBLE_EQ(r.steps()[4].residual_scale, 0.5);
  // a scale given in a plans file sets that block's scale, as `unravel eval --plan` does
  auto custom = plans_from_text("scale=2:0.5\n", "f", net->default_plan(), net->block_infos());
  EXPECT_DOUBLE_EQ(custom[0].plan.steps()[1].residual_scale, 0.5);
  EXPECT_DOUBLE_EQ(custom[0].plan.steps()[2].residual_scale, 0.8);
}

TEST(LesionSweeps, RandomDeletionsSeededAndValid) {
  Network net = make_net("preresnet20");  // 9 blocks
  const auto base = net->default_plan();
  auto a = random_deletions(base, net->block_infos(), 1, 4, 5, 42);
  auto b = random_deletions(base, net->block_infos(), 1, 4, 5, 42);
  auto c = random_deletions(base, net->block_infos(), 1, 4, 5, 43);
  ASSERT_EQ(a.size(), 20u);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].blocks, b[i].blocks);
    EXPECT_EQ(a[i].edit, b[i].edit);
    differ += a[i].blocks != c[i].blocks;
    const int k = 1 + static_cast<int>(i) / 5;
    EXPECT_EQ(a[i].k, k);
    ASSERT_EQ(static_cast<int>(a[i].blocks.size()), k);
    EXPECT_TRUE(std::is_sorted(a[i].blocks.begin(), a[i].blocks.end()));
    EXPECT_EQ(std::set<int>(a[i].blocks.begin(), a[i].blocks.end()).size(), a[i].blocks.size());
    EXPECT_EQ(a[i].plan.deleted_blocks(), a[i].blocks);
  }
  EXPECT_GT(differ, 10);  // another seed gives other sets
  // every block is drawn eventually (uniform draw over 1..9)
  auto many = random_deletions(base, net->block_infos(), 1, 1, 200, 1);
  std::set<int> seen;
  for (const auto& l : many) seen.insert(l.blocks[0]);
  EXPECT_EQ(seen.size(), 9u);
  EXPECT_THROW(random_deletions(base, net->block_infos(), 1, 10, 1, 1), UserError);
}

TEST(LesionSweeps, RandomSwapsSameShapeDisjoint) {
  Network net = make_net("preresnet20");  // stages of 3: blocks 4 and 7 downsample
  const auto& info = net->block_infos();
  auto ls = random_swaps(net->default_plan(), info, 1, 3, 6, 9);
  ASSERT_EQ(ls.size(), 18u);
  for (const auto& l : ls) {
    ASSERT_EQ(static_cast<int>(l.pairs.size()), l.k);
    std::set<int> used;
    for (auto [a, b] : l.pairs) {
      EXPECT_NE(a, b);
      EXPECT_EQ(info[a - 1].in_shape, info[b - 1].in_shape);
      EXPECT_EQ(info[a - 1].out_shape, info[b - 1].out_shape);
      EXPECT_TRUE(used.insert(a).second && used.insert(b).second) << "pairs not disjoint";
      EXPECT_FALSE(info[a - 1].downsample);
    }
    auto ord = l.plan.order();
    for (auto [a, b] : l.pairs) {
      EXPECT_EQ(ord[a - 1], b);
      EXPECT_EQ(ord[b - 1], a);
    }
    EXPECT_DOUBLE_EQ(l.kendall_tau, kendall_tau(ord));
    EXPECT_LT(l.kendall_tau, 1.0);
  }
  // non-downsampling groups {1,2,3}, {5,6}, {8,9}: at most 3 disjoint pairs
  EXPECT_EQ(shape_groups(info), (std::vector<std::vector<int>>{{1, 2, 3}, {4}, {5, 6}, {7}, {8, 9}}));
  EXPECT_EQ(disjoint_swap_pairs(info), 3);  // what repro sizes E4 by, too
  try {
    random_swaps(net->default_plan(), info, 4, 4, 1, 0);
    ADD_FAILURE() << "4 swaps accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("3 disjoint pairs"), std::string::npos) << e.what();
  }
}

TEST(LesionSweeps, RandomDuplicatesReplaceWithSameShape) {
  Network net = make_net("preresnet20");
  const auto& info = net->block_infos();
  // shape groups {1,2,3} {4} {5,6} {7} {8,9}: at most 2 + 1 + 1 = 4 replaced positions
  auto ls = random_duplicates(net->default_plan(), info, 1, 4, 8, 3);
  ASSERT_EQ(ls.size(), 32u);
  for (const auto& l : ls) {
    auto ord = l.plan.order();
    ASSERT_EQ(ord.size(), 9u);  // depth kept
    ASSERT_EQ(static_cast<int>(l.pairs.size()), l.k);
    for (auto [pos, src] : l.pairs) {
      EXPECT_NE(pos, src);
      EXPECT_EQ(ord[pos - 1], src);
      EXPECT_EQ(ord[src - 1], src) << "the copied block runs at its own place too";
      EXPECT_EQ(info[pos - 1].in_shape, info[src - 1].in_shape);
      EXPECT_EQ(info[pos - 1].out_shape, info[src - 1].out_shape);
    }
    int changed = 0;
    for (int i = 0; i < 9; ++i) changed += ord[i] != i + 1;
    EXPECT_EQ(changed, l.k);
  }
  // the same seed gives the same replacements
  auto again = random_duplicates(net->default_plan(), info, 1, 4, 8, 3);
  for (size_t i = 0; i < ls.size(); ++i) EXPECT_EQ(ls[i].pairs, again[i].pairs);
  EXPECT_THROW(random_duplicates(net->default_plan(), info, 5, 5, 1, 3), UserError);
  // at k = 1 every block with a same-shape partner is drawn
  std::set<int> seen;
  for (const auto& l : random_duplicates(net->default_plan(), info, 1, 1, 100, 5)) seen.insert(l.blocks[0]);
  EXPECT_EQ(seen, (std::set<int>{1, 2, 3, 5, 6, 8, 9}));
}

TEST(LesionSweeps, GenerateIsReproducibleAndIndependentPerSweep) {
  Network net = make_net("preresnet20");
  LesionOptions o;
  o.delete_random = "1:3";
  o.samples = 4;
  o.seed = 11;
  auto a = generate_lesions(o, net->default_plan(), net->block_infos());
  o.single = true;
  o.swap_random = "1:2";
  auto b = generate_lesions(o, net->default_plan(), net->block_infos());
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 9u + 12u + 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].edit, b[9 + i].edit);  // unchanged by --single/--swap
  LesionOptions none;
  try {
    generate_lesions(none, net->default_plan(), net->block_infos());
    ADD_FAILURE();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--single"), std::string::npos);
  }
}

// A plans file means what `unravel eval --plan` means: clauses applied to the default plan, so
// on a net with test-time scales (stochastic depth) a lesion's printed plan reads back to itself
// and an explicit scale sets the scale rather than multiplying the trained one.
TEST(LesionSweeps, PlansFileTextMeansWhatEvalMeans) {
  Network net = make_net("preresnet20");
  net->set_residual_scales({0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1});
  const Plan base = net->default_plan();
  auto single = single_deletions(base, net->block_infos());
  const std::string printed = single[2].plan.str();  // delete=3 plus every trained scale
  auto back = plans_from_text(printed + "\nscale=1:0.5 delete=2\n", "p.txt", base, net->block_infos());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].plan, single[2].plan) << printed;
  EXPECT_EQ(back[1].plan, Plan::parse("scale=1:0.5 delete=2", base));
  EXPECT_DOUBLE_EQ(back[1].plan.steps()[0].residual_scale, 0.5);  // set, not 0.5 x 0.9
  EXPECT_DOUBLE_EQ(back[1].plan.steps()[3].residual_scale, 0.6);  // trained scale kept
}

TEST(LesionSweeps, PlansFile) {
  Network net = make_net("preresnet20");
  const std::string text =
      "# my lesions\n"
      "delete=3,5\n"
      "\n"
      "   order=1,3,2,4-9   # a swap by hand\n"
      "swap=8:9\n";
  auto ls = plans_from_text(text, "p.txt", net->default_plan(), net->block_infos());
  ASSERT_EQ(ls.size(), 3u);
  EXPECT_EQ(ls[0].line, 2);
  EXPECT_EQ(ls[0].kind, "custom");
  EXPECT_EQ(ls[0].blocks, (std::vector<int>{3, 5}));
  EXPECT_EQ(ls[0].k, 2);
  EXPECT_EQ(ls[1].line, 4);
  EXPECT_EQ(ls[1].plan.order(), (std::vector<int>{1, 3, 2, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(ls[1].k, 2);
  EXPECT_NEAR(ls[1].kendall_tau, 1.0 - 4.0 / 72.0, 1e-12);
  EXPECT_EQ(ls[2].plan.order()[7], 9);

  auto expect_error = [&](const std::string& t, const std::string& part) {
    try {
      plans_from_text(t, "p.txt", net->default_plan(), net->block_infos());
      ADD_FAILURE() << "accepted " << t;
    } catch (const UserError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(part), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    }
  };
  expect_error("delete=1\ndelete=12\n", "p.txt:2:");
  expect_error("delete=1\n\n  frobnicate=3\n", "p.txt:3:");
  // block 3 (16x12x12) and block 4 (16x12x12 -> 32x6x6) have different shapes
  expect_error("swap=3:4\n", "same shape");
  expect_error("# nothing\n\n", "no plans");
  try {
    plans_from_file("/no/such/file", net->default_plan(), net->block_infos());
    ADD_FAILURE();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/file"), std::string::npos) << e.what();
  }
}

// ---- blocks under a deleted step -------------------------------------------------------------

TEST(LesionBlocks, DeletedBlockOutputsItsShortcut) {
  torch::NoGradGuard ng;
  for (const std::string model : {"preresnet14", "resnet14", "plain14"}) {
    Network net = make_net(model);
    randomize_batchnorm(net, 3);
    torch::manual_seed(4);
    for (int i = 1; i <= net->num_blocks(); ++i) {
      auto& b = net->block(i);
      const auto& info = net->block_infos()[i - 1];
      Tensor in = torch::randn({3, info.in_shape[0], info.in_shape[1], info.in_shape[2]});
      Step del{i};
      del.deleted = true;
      Tensor y = b.run(in, del);
      // what the deleted block must give, written out: option A shortcut, then post
      Tensor s = in;
      if (info.downsample) {
        s = in.slice(2, 0, in.size(2), 2).slice(3, 0, in.size(3), 2);
        s = torch::cat({s, torch::zeros({3, info.out_shape[0] - info.in_shape[0], s.size(2), s.size(3)})}, 1);
      }
      if (b.post_is_relu()) s = torch::relu(s);
      EXPECT_TRUE(torch::equal(y, s)) << model << " block " << i;
      EXPECT_TRUE(torch::equal(y, b.post(b.shortcut(in)))) << model << " block " << i;
      // and differs from the intact block
      EXPECT_FALSE(torch::allclose(y, b.run(in, Step{i}))) << model << " block " << i;
    }
  }
}

// ---- batch-norm folding ----------------------------------------------------------------------

TEST(LesionFold, FoldedMatchesUnfolded) {
  torch::NoGradGuard ng;
  for (auto [model, sc] : std::vector<std::pair<std::string, std::string>>{
           {"resnet8", "A"}, {"resnet14", "B"}, {"preresnet14", "A"}, {"preresnet8", "B"}, {"plain14", "A"}}) {
    Network net = make_net(model, 2, sc);
    randomize_batchnorm(net, 7);
    Network folded = make_eval_copy(net, /*fold=*/true);
    torch::manual_seed(8);
    Tensor x = torch::randn({16, 1, 12, 12});
    Tensor a = net->forward(x), b = folded->forward(x);
    EXPECT_TRUE(a.abs().max().item<double>() > 1e-3) << model;
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-5) << model << sc;
    // folding changed the weights (it did something)
    auto pn = net->named_parameters();
    auto pf = folded->named_parameters();
    EXPECT_FALSE(torch::equal(pn["blocks.1.conv1.weight"], pf["blocks.1.conv1.weight"])) << model;
    // and the same under a lesion plan
    Plan p = Plan::intact(net->num_blocks()).remove({2});
    EXPECT_LT((net->forward(x, p) - folded->forward(x, p)).abs().max().item<double>(), 1e-5) << model;
  }
}

// ---- the engines -----------------------------------------------------------------------------

TEST(LesionEngine, EnginesAgreeOnAllSweeps) {
  for (const std::string model : {"preresnet20", "resnet20"}) {  // 9 blocks, 3 same-shape pairs
    Network net = make_net(model, 5, model == "resnet20" ? "B" : "A");
    randomize_batchnorm(net, 6);
    LesionOptions o;
    o.single = true;
    o.delete_random = "1:3";
    o.swap_random = "1:2";
    o.duplicate_random = "1:2";
    o.samples = 3;
    o.seed = 4;
    auto ls = generate_lesions(o, net->default_plan(), net->block_infos());
    ASSERT_EQ(ls.size(), 9u + 9u + 6u + 6u);
    SCOPED_TRACE(model);
    expect_engines_agree(net, plans_of(net->default_plan(), ls));
  }
}

// A channels_last (or bf16) evaluation copy keeps every activation in channels_last, also behind a
// stem of one input channel, whose convolution cannot tell the two formats apart and answered in
// NCHW: each block then added an NCHW shortcut to a channels_last residual, several times slower
// (the bf16 sweep ran 1.46x slower for it). The float32 NCHW copy stays NCHW.
TEST(LesionEngine, ChannelsLastCopyKeepsItsFormatBehindAOneChannelStem) {
  Network net = make_net("preresnet14", 5);
  auto is_cl = [](const torch::Tensor& t) { return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous(); };
  torch::InferenceMode guard;
  for (Precision prec : {Precision::FP32, Precision::BF16}) {
    for (bool channels_last : {false, true}) {
      SCOPED_TRACE(std::string(precision_name(prec)) + (channels_last ? " channels_last" : " NCHW"));
      Network ev = make_eval_copy(net, /*fold=*/true, channels_last, prec);
      const bool want_cl = channels_last || prec == Precision::BF16;
      auto x = torch::randn({4, 1, 12, 12}).to(prec == Precision::BF16 ? torch::kBFloat16 : torch::kFloat);
      if (want_cl) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      torch::Tensor h = ev->stem(x);
      EXPECT_EQ(is_cl(h), want_cl) << "stem";
      if (!want_cl) {
        EXPECT_TRUE(h.is_contiguous()) << "stem";
      }
      const Plan plan = ev->default_plan();
      for (const Step& s : plan.steps()) {
        h = ev->block(s.block).run(h, s);
        EXPECT_EQ(is_cl(h), want_cl) << "block " << s.block;
      }
    }
  }
}

// --precision bf16: bfloat16 weights and activations. Both engines still agree bit for bit on the
// same copy, and the logits stay within bfloat16's precision of the float32 forward of the
// original (an independent path: unfolded, float32, NCHW) without being equal to it.
TEST(LesionEngine, Bfloat16CopyAgreesAcrossEnginesAndNearFloat32) {
  Network net = make_net("preresnet14", 5);
  randomize_batchnorm(net, 6);
  auto plans = plans_of(net->default_plan(), single_deletions(net->default_plan(), net->block_infos()));
  expect_engines_agree(net, plans, Precision::BF16);

  Network ev = make_eval_copy(net, /*fold=*/true, /*channels_last=*/false, Precision::BF16);
  for (const auto& p : ev->parameters()) ASSERT_EQ(p.scalar_type(), torch::kBFloat16);
  int folded_biases = 0;  // registered buffers, so Module::to() converts them with the weights
  for (const auto& b : ev->named_buffers())
    if (b.key().find("folded_bias") != std::string::npos) {
      ++folded_biases;
      EXPECT_EQ(b.value().scalar_type(), torch::kBFloat16) << b.key();
    }
  EXPECT_EQ(folded_biases, 6) << "preresnet14: conv1/bn2 of each of its 6 blocks";
  const auto split = make_split(40, 2);
  const auto norm = data::Normalizer::fit(split.images);
  LogitMap lb;
  evaluate_plans(ev, plans, split, norm, recording(Engine::Prefix, lb));
  torch::NoGradGuard ng;
  double worst = 0, scale = 0;
  for (const auto& kv : lb) {
    ASSERT_EQ(kv.second.scalar_type(), torch::kFloat32) << "logits reach the metrics as float32";
    const int64_t a = kv.first.second;
    Tensor x = norm.apply(split.images.slice(0, a, std::min<int64_t>(a + 32, 40)));
    Tensor ref = net->forward(x, plans[kv.first.first]);
    worst = std::max(worst, (ref - kv.second).abs().max().item<double>());
    scale = std::max(scale, ref.abs().max().item<double>());
  }
  EXPECT_GT(worst, 0.0) << "bfloat16 arithmetic should round somewhere";
  EXPECT_LT(worst, 0.03 * (1.0 + scale)) << "largest logit " << scale;
  EXPECT_EQ(parse_precision("bf16"), Precision::BF16);
  EXPECT_THROW(parse_precision("fp16"), UserError);
}

TEST(LesionEngine, PrefixMatchesUnfoldedForward) {
  Network net = make_net("preresnet14", 5);
  randomize_batchnorm(net, 6);
  auto ls = single_deletions(net->default_plan(), net->block_infos());
  auto plans = plans_of(net->default_plan(), ls);
  const auto split = make_split(40, 2);
  const auto norm = data::Normalizer::fit(split.images);
  Network ev = make_eval_copy(net, true);
  LogitMap lp;
  evaluate_plans(ev, plans, split, norm, recording(Engine::Prefix, lp));
  torch::NoGradGuard ng;
  for (const auto& kv : lp) {
    const int64_t a = kv.first.second;
    Tensor x = norm.apply(split.images.slice(0, a, std::min<int64_t>(a + 32, 40)));
    Tensor ref = net->forward(x, plans[kv.first.first]);
    EXPECT_LT((ref - kv.second).abs().max().item<double>(), 1e-4) << plans[kv.first.first].str();
  }
  // a deletion changes the logits
  EXPECT_FALSE(torch::allclose(lp.at({0, 0}), lp.at({3, 0})));
}

TEST(LesionEngine, TrieSharesPrefixes) {
  // Single sweep of n blocks plus the baseline: the intact chain (n residual steps), and for the
  // deletion of block i one deleted step and the n - i blocks after it, so
  //   residual steps = n + sum_i (n - i) = n + n(n-1)/2,  deleted steps = n,  heads = n + 1,
  // against n + n(n-1) = n^2 residual steps for one full forward per plan.
  for (const std::string model : {"preresnet14", "preresnet20"}) {
    Network net = make_net(model);
    const int n = net->num_blocks();
    auto plans = plans_of(net->default_plan(), single_deletions(net->default_plan(), net->block_infos()));
    PlanTrie trie(plans);
    EXPECT_EQ(trie.residual_steps(), n + n * (n - 1) / 2) << model;
    EXPECT_EQ(trie.deleted_steps(), n);
    EXPECT_EQ(trie.leaves(), n + 1);
    EXPECT_EQ(trie.max_depth(), n);

    const auto split = make_split(70, 3);  // 3 batches of 32
    const auto norm = data::Normalizer::fit(split.images);
    Network ev = make_eval_copy(net, true);
    EngineStats sp, sr;
    evaluate_plans(ev, plans, split, norm, EngineOptions().batch_size(32), &sp);
    evaluate_plans(ev, plans, split, norm, EngineOptions().batch_size(32).engine(Engine::Reference), &sr);
    EXPECT_EQ(sp.batches, 3);
    EXPECT_EQ(sp.residual_evaluations, 3 * (n + n * (n - 1) / 2));
    EXPECT_EQ(sr.residual_evaluations, 3 * n * n);
    EXPECT_EQ(sp.shortcut_evaluations, 3 * n);
    EXPECT_EQ(sr.shortcut_evaluations, 3 * n);
    EXPECT_EQ(sp.head_evaluations, 3 * (n + 1));
    EXPECT_GT(sr.flops, 1.5 * sp.flops);
  }
  // equal plans end on one node; a plan that is a prefix of nothing shares nothing it should not
  PlanTrie t({Plan::intact(4), Plan::intact(4), Plan::intact(4).remove({4})});
  EXPECT_EQ(t.leaves(), 2);
  EXPECT_EQ(t.residual_steps(), 4);
  EXPECT_EQ(t.deleted_steps(), 1);
  EXPECT_EQ(t.nodes()[4].plans, (std::vector<size_t>{0, 1}));
}

TEST(LesionEngine, FlopModel) {
  Network net = make_net("preresnet14");  // blocks of 2 3x3 convs; 16 -> 32 -> 64 channels
  auto fm = count_flops(net);
  const double hw = 12 * 12;
  EXPECT_DOUBLE_EQ(fm.stem, 2.0 * 16 * 1 * 9 * hw);
  EXPECT_DOUBLE_EQ(fm.residual[1], 2 * 2.0 * 16 * 16 * 9 * hw);
  EXPECT_DOUBLE_EQ(fm.residual[3], 2.0 * 32 * 16 * 9 * 36 + 2.0 * 32 * 32 * 9 * 36);  // stride 2 to 6x6
  EXPECT_DOUBLE_EQ(fm.shortcut[3], 0.0);  // option A
  EXPECT_DOUBLE_EQ(fm.head, 2.0 * 64 * 10);
  Network b = make_net("resnet14", 1, "B");
  EXPECT_DOUBLE_EQ(count_flops(b).shortcut[3], 2.0 * 32 * 16 * 36);
}

// ---- batch-norm recalibration ----------------------------------------------------------------

TEST(LesionRecalibrate, CumulativeAverageUnderThePlan) {
  Network net = make_net("resnet8", 3);  // stem conv -> BN; 3 blocks
  randomize_batchnorm(net, 1);
  const auto train = make_split(96, 9);
  const auto norm = data::Normalizer::fit(train.images);
  auto batches = recalibration_batches(train, norm, 3, 32, 5);
  ASSERT_EQ(batches.size(), 3u);
  auto again = recalibration_batches(train, norm, 3, 32, 5);
  EXPECT_TRUE(torch::equal(batches[2], again[2]));
  EXPECT_EQ(recalibration_batches(train, norm, 5, 32, 5).size(), 5u);  // wraps into a second epoch

  Plan p = Plan::intact(3).remove({2});
  Network cal = recalibrated_copy(net, p, batches);
  EXPECT_FALSE(cal->is_training());
  auto bufs = cal->named_buffers();
  auto params = net->named_parameters();
  // stem BN: mean of the per-batch means of the stem convolution's output
  torch::NoGradGuard ng;
  Tensor expect = torch::zeros({16});
  for (const auto& x : batches)
    expect += torch::conv2d(x, params["stem.conv.weight"], {}, 1, 1).mean({0, 2, 3}) / 3.0;
  EXPECT_LT((bufs["stem.bn.running_mean"] - expect).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(bufs["stem.bn.num_batches_tracked"].item<int64_t>(), 3);
  // block 2 never ran: its statistics stay reset; block 3 ran
  EXPECT_TRUE(torch::equal(bufs["blocks.2.bn1.running_mean"], torch::zeros({32})));
  EXPECT_TRUE(torch::equal(bufs["blocks.2.bn1.running_var"], torch::ones({32})));
  EXPECT_GT(bufs["blocks.3.bn1.running_mean"].abs().max().item<double>(), 1e-3);
  // the original is untouched
  EXPECT_FALSE(torch::equal(net->named_buffers()["stem.bn.running_mean"], bufs["stem.bn.running_mean"]));
}

// ---- the study and its reports ---------------------------------------------------------------

TEST(LesionStudy, JsonCsvAndRecalibration) {
  Network net = make_net("preresnet14", 8);
  randomize_batchnorm(net, 2);
  const auto test = make_split(64, 1), train = make_split(64, 2);
  const auto norm = data::Normalizer::fit(train.images);
  LesionOptions o;
  o.single = true;
  o.delete_random = "2:3";
  o.samples = 2;
  o.recalibrate_bn = 2;
  o.recalibrate_batch_size = 16;
  o.engine.batch_size(32);
  auto ls = generate_lesions(o, net->default_plan(), net->block_infos());
  auto r = run_lesion(net, ls, test, train, norm, o);
  ASSERT_EQ(r.metrics.size(), 10u);
  ASSERT_EQ(r.recalibrated.size(), 10u);
  auto j = to_json(r, net->block_infos(), o);
  EXPECT_EQ(j["baseline"]["n"], 64);
  EXPECT_EQ(j["engine"], "prefix");
  EXPECT_EQ(j["blocks"].size(), 6u);
  EXPECT_EQ(j["blocks"][2]["downsample"], true);
  EXPECT_EQ(j["plans"][0]["plan"], "delete=1");
  EXPECT_EQ(j["plans"][0]["blocks"], nlohmann::json::array({1}));
  EXPECT_EQ(j["plans"][0]["correct"], r.metrics[0].correct);
  EXPECT_TRUE(j["plans"][7]["recalibrated"].contains("top1_error"));
  EXPECT_EQ(j["plans"][7]["k"], 2);
  EXPECT_EQ(j["plans"][8]["k"], 3);
  for (size_t i = 0; i < ls.size(); ++i)  // every plan's tau: the pair count of its order
    EXPECT_DOUBLE_EQ(j["plans"][i]["kendall_tau"].get<double>(), kendall_tau_brute(ls[i].plan.order())) << i;
  // summary: single sweep, then k = 2 and k = 3 of the random sweep
  ASSERT_EQ(j["summary"].size(), 3u);
  const auto& s2 = j["summary"][1];
  EXPECT_EQ(s2["k"], 2);
  EXPECT_EQ(s2["count"], 2);
  const double e6 = r.metrics[6].top1_error(), e7 = r.metrics[7].top1_error();
  EXPECT_DOUBLE_EQ(s2["mean"].get<double>(), 0.5 * (e6 + e7));
  // the summary reports the sample std (n - 1): |a - b| / sqrt(2) for two values, not the
  // population std |a - b| / 2
  const double sample_std = std::abs(e6 - e7) / std::sqrt(2.0), population_std = std::abs(e6 - e7) / 2;
  EXPECT_NEAR(s2["std"].get<double>(), sample_std, 1e-12);
  if (e6 != e7) {
    EXPECT_GT(std::abs(s2["std"].get<double>() - population_std), 1e-6);
  }
  EXPECT_DOUBLE_EQ(s2["min"].get<double>(), std::min(e6, e7));

  const std::string csv = to_csv(r);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "plan,kind,k,blocks,top1_error,top5_error,loss,correct,n,kendall_tau,recal_top1_error,recal_correct");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 12);
  EXPECT_NE(csv.find("\nintact,intact,0,,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\ndelete=1,delete,1,1,"), std::string::npos) << csv;
  const std::string del = ls[6].edit.str();  // e.g. "delete=2,5": quoted for its comma
  EXPECT_NE(csv.find("\n\"" + del + "\",delete,2,"), std::string::npos) << csv;

  const std::string table = to_table(r, net->block_infos());
  EXPECT_NE(table.find("single-block deletion"), std::string::npos);
  EXPECT_NE(table.find("delete-random"), std::string::npos);
}

// ---- the command line -------------------------------------------------------------------------

TEST(LesionCli, MissingPlansFileIsOneLine) {
  if (!path_exists(unravel::testing::unravel_bin())) GTEST_SKIP() << "the unravel program is not built (UNRAVEL_BIN)";
  unravel::testing::expect_user_error(
      unravel::testing::run_unravel("lesion --model preresnet8 --data synthetic:train=64,test=32,size=12,channels=1"
                           " --plans /no/such/file --quiet"),
      "/no/such/file", "lesion --plans /no/such/file");
  unravel::testing::expect_user_error(
      unravel::testing::run_unravel("lesion --model preresnet8 --data synthetic:train=64,test=32,size=12,channels=1"
                                    " --single --precision fp16 --quiet"),
      "--precision", "lesion --precision fp16");
}

TEST(LesionCli, SingleSweepWritesJsonAndCsv) {
  if (!path_exists(unravel::testing::unravel_bin())) GTEST_SKIP() << "the unravel program is not built (UNRAVEL_BIN)";
  TempDir tmp("lesion_cli");
  const std::string dir = tmp.str() + "/";
  const unravel::testing::CommandResult r = unravel::testing::run_unravel(
      "lesion --model preresnet14 --data synthetic:train=64,test=48,size=12,channels=1"
      " --single --swap-random 1 --samples 2 --threads 1 --quiet --json " + dir +
      "lesion_cli.json --csv " + dir + "lesion_cli.csv");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = read_json_file(dir + "lesion_cli.json");
  EXPECT_EQ(j["model"], "preresnet14");
  EXPECT_EQ(j["baseline"]["n"], 48);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["engine"], "prefix");
  EXPECT_EQ(j["precision"], "fp32");
  // 6 single deletions, then 2 samples of one swap: blocks 1 and 2 are the only same-shape pair
  ASSERT_EQ(j["plans"].size(), 8u);
  EXPECT_EQ(j["plans"][5]["plan"], "delete=6");
  EXPECT_EQ(j["plans"][5]["stage"], 3);
  EXPECT_EQ(j["plans"][6]["kind"], "swap");
  EXPECT_EQ(j["plans"][6]["pairs"], nlohmann::json::parse("[[1, 2]]"));
  EXPECT_NEAR(j["plans"][6]["kendall_tau"].get<double>(), 1.0 - 4.0 / 30.0, 1e-12);
  int64_t sum = 0;
  for (const auto& p : j["plans"]) sum += p["n"].get<int64_t>();
  EXPECT_EQ(sum, 8 * 48);
  const std::string csv = read_text_file(dir + "lesion_cli.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 10);
}

// An interrupted sweep continues from its progress file: the engine skips the batches already
// counted, recalibration skips the plans already done, and the result equals an uninterrupted
// run exactly (the same counts, the same summed loss). A file written for another sweep (other
// weights) is not used. The file is gone when the sweep is done.
TEST(LesionStudy, InterruptedSweepResumes) {
  Network net = make_net("preresnet14", 9);
  randomize_batchnorm(net, 4);
  const auto test = make_split(96, 3), train = make_split(64, 4);
  const auto norm = data::Normalizer::fit(train.images);
  LesionOptions o;
  o.single = true;
  o.recalibrate_bn = 1;
  o.recalibrate_batch_size = 16;
  o.engine.batch_size(16);  // 6 batches
  const auto ls = generate_lesions(o, net->default_plan(), net->block_infos());
  const LesionResult whole = run_lesion(net, ls, test, train, norm, o);

  TempDir tmp("lesion_progress");
  const std::string file = tmp.file("progress.json");
  struct Stop {};
  LesionOptions p = o;
  p.progress_file = file;
  p.progress_interval_s = 0;  // write after every batch
  int batches_seen = 0;
  p.engine.on_logits([&](size_t plan, int64_t first, const Tensor&) {
    if (plan == 0 && ++batches_seen == 4) throw Stop{};  // interrupted in batch 4
  });
  EXPECT_THROW(run_lesion(net, ls, test, train, norm, p), Stop);
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_EQ(read_json_file(file)["engine_done"], 48);  // 3 batches of 16 were counted

  batches_seen = 0;
  std::vector<int64_t> firsts;
  p.engine.on_logits([&](size_t plan, int64_t first, const Tensor&) {
    if (plan == 0) firsts.push_back(first);
  });
  const LesionResult resumed = run_lesion(net, ls, test, train, norm, p);
  EXPECT_EQ(firsts, (std::vector<int64_t>{48, 64, 80}));  // only the batches left
  EXPECT_FALSE(std::filesystem::exists(file));
  auto same = [](const Metrics& a, const Metrics& b) {
    return a.n == b.n && a.correct == b.correct && a.correct5 == b.correct5 && a.loss_sum == b.loss_sum &&
           a.class_correct == b.class_correct;
  };
  EXPECT_TRUE(same(resumed.baseline, whole.baseline));
  ASSERT_EQ(resumed.metrics.size(), whole.metrics.size());
  for (size_t i = 0; i < whole.metrics.size(); ++i) {
    EXPECT_TRUE(same(resumed.metrics[i], whole.metrics[i])) << i;
    EXPECT_TRUE(same(resumed.recalibrated[i], whole.recalibrated[i])) << i;
  }

  // Recalibrated plans recorded in the file are taken from it: a file that says plan
  // "delete=2" recalibrated to 7 correct of 96 is believed (same key), and nothing else changes.
  p.engine.on_logits(nullptr);
  {
    LesionOptions q = p;
    int n = 0;
    q.engine.on_logits([&](size_t, int64_t, const Tensor&) {
      if (++n == 2 * 7) throw Stop{};  // stop in the engine's second batch (7 plans a batch)
    });
    EXPECT_THROW(run_lesion(net, ls, test, train, norm, q), Stop);
  }
  auto j = read_json_file(file);
  Metrics fake(10);
  fake.n = 96, fake.correct = 7;
  j["recalibrated"]["delete=2"] = fake.counts();
  write_json_atomic(file, j);
  const LesionResult trusted = run_lesion(net, ls, test, train, norm, p);
  EXPECT_EQ(trusted.recalibrated[1].correct, 7);
  EXPECT_TRUE(same(trusted.recalibrated[0], whole.recalibrated[0]));
  EXPECT_TRUE(same(trusted.metrics[3], whole.metrics[3]));

  // other weights: the file is not used
  {
    LesionOptions q = p;
    int n = 0;
    q.engine.on_logits([&](size_t, int64_t, const Tensor&) {
      if (++n == 2 * 7) throw Stop{};
    });
    EXPECT_THROW(run_lesion(net, ls, test, train, norm, q), Stop);
  }
  Network other = make_net("preresnet14", 10);
  ::testing::internal::CaptureStderr();
  const LesionResult fresh = run_lesion(other, ls, test, train, norm, p);
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("another sweep"), std::string::npos);
  EXPECT_EQ(fresh.baseline.n, 96);
  EXPECT_FALSE(std::filesystem::exists(file));
}
