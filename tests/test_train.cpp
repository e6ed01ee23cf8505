// Training: schedules, the statistics of sampled plans, metrics, exact resumption, NaN stop,
// and checkpoints refused by a different architecture.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/errors.h"
#include "core/util.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/trainer.h"
#include "testing.h"

using namespace unravel;
namespace fs = std::filesystem;
namespace ut = unravel::testing;

namespace {

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / fmt::format("unravel_test_train_{}_{}", name, ::getpid());
  fs::remove_all(d);
  return d.string();
}

TrainOptions tiny(const std::string& out) {
  TrainOptions o;
  o.model = "preresnet8";
  o.data = "synthetic:train=192,test=64,size=8,channels=1";
  o.out = out;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 0.05;
  o.threads = 1;
  o.quiet = true;
  o.seed = 7;
  return o;
}

}  // namespace

TEST(Train, LearningRateSchedules) {
  TrainOptions o;
  o.epochs = 100;
  o.lr = 0.1;
  EXPECT_DOUBLE_EQ(learning_rate(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(o, 49.9), 0.1);
  EXPECT_NEAR(learning_rate(o, 50), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(o, 75), 0.001, 1e-15);
  o.schedule = Schedule::Cosine;
  EXPECT_NEAR(learning_rate(o, 50), 0.05, 1e-15);
  EXPECT_NEAR(learning_rate(o, 100), 0.0, 1e-15);
  o.schedule = Schedule::Constant;
  o.warmup_epochs = 2;
  EXPECT_NEAR(learning_rate(o, 0), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(o, 1), 0.055, 1e-15);
  EXPECT_NEAR(learning_rate(o, 2), 0.1, 1e-15);
}

TEST(Train, SurvivalProbabilitiesDecayLinearly) {
  auto p = survival_probabilities(54, 0.5);
  ASSERT_EQ(p.size(), 54u);
  EXPECT_NEAR(p[0], 1.0 - 0.5 / 54, 1e-15);
  EXPECT_NEAR(p[26], 0.75, 1e-15);
  EXPECT_NEAR(p[53], 0.5, 1e-15);
  auto s = test_time_scales([] { TrainOptions o; o.stochastic_depth = 0.5; return o; }(), 54);
  EXPECT_EQ(s, p);
  auto k = test_time_scales([] { TrainOptions o; o.active_blocks = 23; return o; }(), 54);
  EXPECT_NEAR(k[10], 23.0 / 54, 1e-15);
  EXPECT_TRUE(test_time_scales([] { TrainOptions o; o.active_blocks = 23; o.active_test = ActiveTest::All; return o; }(), 54).empty());
}

// Keep rates of stochastic depth match p_l; k-of-n plans have exactly k active blocks, each
// block active with rate k/n. Tolerance: 4.5 binomial standard deviations.
TEST(Train, SampledPlanStatistics) {
  const int n = 12, draws = 20000;
  Rng rng(5);
  std::vector<int> kept(n, 0);
  for (int d = 0; d < draws; ++d) {
    Plan p = sample_stochastic_depth(n, 0.5, rng);
    for (const auto& s : p.steps()) kept[s.block - 1] += !s.deleted;
  }
  auto prob = survival_probabilities(n, 0.5);
  for (int l = 0; l < n; ++l) {
    double sd = std::sqrt(draws * prob[l] * (1 - prob[l]));
    EXPECT_NEAR(kept[l], draws * prob[l], 4.5 * sd + 1) << "block " << l + 1;
  }
  const int k = 5;
  std::vector<int> active(n, 0);
  for (int d = 0; d < draws; ++d) {
    Plan p = sample_active_blocks(n, k, rng);
    int on = 0;
    for (const auto& s : p.steps()) {
      on += !s.deleted;
      active[s.block - 1] += !s.deleted;
    }
    ASSERT_EQ(on, k);
  }
  const double q = static_cast<double>(k) / n, sd = std::sqrt(draws * q * (1 - q));
  for (int l = 0; l < n; ++l) EXPECT_NEAR(active[l], draws * q, 4.5 * sd) << "block " << l + 1;
  EXPECT_THROW(sample_active_blocks(n, n + 1, rng), UserError);
}

TEST(Train, MetricsByHand) {
  Metrics m(3);
  // logits (4, 3): predictions 0, 2, 1, 1; labels 0, 1, 1, 2
  auto logits = torch::tensor({{3.0, 1.0, 0.0}, {0.0, 1.0, 2.0}, {0.0, 5.0, 1.0}, {1.0, 2.0, 0.0}});
  auto labels = torch::tensor({0, 1, 1, 2}, torch::kInt64);
  m.add(logits, labels);
  EXPECT_EQ(m.n, 4);
  EXPECT_EQ(m.correct, 2);
  EXPECT_DOUBLE_EQ(m.top1_error(), 0.5);
  EXPECT_EQ(m.per_class_error(), (std::vector<double>{0.0, 0.5, 1.0}));
  double want = 0;
  auto ls = torch::log_softmax(logits.to(torch::kFloat64), 1);
  for (int i = 0; i < 4; ++i) want -= ls[i][labels[i].item<int64_t>()].item<double>();
  EXPECT_NEAR(m.loss(), want / 4, 1e-12);
  EXPECT_EQ(m.correct5, 4);  // 3 classes: top-5 holds everything
}

// An interrupted run resumed from its checkpoint ends with the same weights, bit for bit, as an
// uninterrupted one (CPU, one thread, fixed seed), and metrics.jsonl has each epoch once.
TEST(Train, ResumeGivesTheSameWeights) {
  const std::string a = temp_dir("a"), b = temp_dir("b");
  TrainOptions oa = tiny(a);
  oa.stochastic_depth = 0.5;  // sampled plans must replay too
  train(oa);
  TrainOptions ob = oa;
  ob.out = b;
  ob.stop_after = 1;  // interrupted after epoch 1
  EXPECT_EQ(train(ob).epochs_done, 1);
  ob.stop_after = 0;
  auto s = train(ob);
  EXPECT_EQ(s.epochs_done, 2);
  auto ta = load_tensors(a + "/checkpoint.pt"), tb = load_tensors(b + "/checkpoint.pt");
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [k, v] : ta) {
    ASSERT_TRUE(tb.count(k)) << k;
    EXPECT_TRUE(torch::equal(v, tb.at(k))) << k;
  }
  std::ifstream in(b + "/metrics.jsonl");
  std::string line;
  std::vector<int> epochs;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "epoch") epochs.push_back(j["epoch"].get<int>());
  }
  EXPECT_EQ(epochs, (std::vector<int>{1, 2}));
  auto cfg = read_json_file(b + "/config.json");
  EXPECT_EQ(cfg["options"]["seed"], 7);
  EXPECT_TRUE(cfg["versions"].contains("git_commit"));
  EXPECT_TRUE(cfg["versions"].contains("libtorch"));
  auto sum = read_json_file(b + "/summary.json");
  EXPECT_EQ(sum["epochs"], 2);
  // the loaded run evaluates to the error summary.json reports
  auto loaded = load_run(b);
  auto ds = data::load_dataset(data::parse_data_spec(loaded.data_spec));
  Metrics m = evaluate(loaded.net, loaded.net->default_plan(), ds.test, loaded.norm);
  EXPECT_DOUBLE_EQ(m.top1_error(), sum["test_error"].get<double>());
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(Train, ADifferentRunInTheSameDirectoryIsRefused) {
  const std::string d = temp_dir("refuse");
  TrainOptions o = tiny(d);
  o.epochs = 1;
  train(o);
  o.model = "resnet8";
  try {
    train(o);
    ADD_FAILURE() << "expected a refusal";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("model"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Train, NanLossStopsWithAClearMessage) {
  const std::string d = temp_dir("nan");
  TrainOptions o = tiny(d);
  o.lr = 1e38;  // weights overflow to inf after the first step
  o.weight_decay = 0;
  try {
    train(o);
    ADD_FAILURE() << "expected the run to stop";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("loss became"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(path_exists(d + "/checkpoint.pt"));  // no epoch finished: nothing bad was saved
  fs::remove_all(d);
}

TEST(Train, CheckpointOfAnotherArchitectureIsRefused) {
  const std::string d = temp_dir("arch");
  TrainOptions o = tiny(d);
  o.epochs = 1;
  train(o);
  auto cfg = read_json_file(d + "/config.json");
  cfg["model"] = "preresnet14";
  write_json_atomic(d + "/config.json", cfg);
  try {
    load_run(d);
    ADD_FAILURE() << "expected a refusal";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("different architecture"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checkpoint.pt"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Train, ShortPathTrainingReportsBothConventions) {
  const std::string d = temp_dir("active");
  TrainOptions o = tiny(d);
  o.model = "preresnet14";
  o.epochs = 1;
  o.active_blocks = 2;
  auto s = train(o);
  ASSERT_TRUE(s.json.contains("active_test_error"));
  EXPECT_EQ(s.json["active_test_error"]["default"], "scaled");
  EXPECT_DOUBLE_EQ(s.json["active_test_error"]["scaled"].get<double>(), s.test_error);
  auto cfg = read_json_file(d + "/config.json");
  EXPECT_NEAR(cfg["residual_scales"][0].get<double>(), 2.0 / 6, 1e-15);
  fs::remove_all(d);
}

// --precision bf16: recorded in config.json, part of what defines the run, float32 master weights
// that stay close to those of the same run in fp32 without being equal to them (the forward did
// run in bf16; tests/test_pytorch.cpp checks one step against torch.autocast).
TEST(Train, Bf16RunKeepsFloat32WeightsNearTheFp32Run) {
  const std::string a = temp_dir("fp32"), b = temp_dir("bf16");
  TrainOptions oa = tiny(a);
  oa.epochs = 1;
  TrainOptions ob = oa;
  ob.out = b;
  ob.precision = Precision::BF16;
  train(oa);
  train(ob);
  EXPECT_EQ(read_json_file(b + "/config.json")["options"]["precision"], "bf16");
  EXPECT_EQ(read_json_file(a + "/config.json")["options"]["precision"], "fp32");
  auto ta = load_tensors(a + "/checkpoint.pt"), tb = load_tensors(b + "/checkpoint.pt");
  double largest = 0, worst = 0;
  for (const auto& [k, v] : ta) {
    if (k.rfind("param.", 0) != 0) continue;
    ASSERT_EQ(tb.at(k).scalar_type(), torch::kFloat) << k;
    largest = std::max(largest, v.abs().max().item<double>());
    worst = std::max(worst, (v - tb.at(k)).abs().max().item<double>());
  }
  EXPECT_GT(worst, 1e-6);             // bf16 changed the steps
  EXPECT_LT(worst, 0.02 * largest);   // but only a little: 6 steps of the same run
  ob.epochs = 2;
  ob.precision = Precision::FP32;     // continuing in another precision is another run
  ut::expect_thrown_user_error([&] { train(ob); }, {"precision=\"bf16\"", b});
  fs::remove_all(a);
  fs::remove_all(b);
}

// ---- data-parallel training ------------------------------------------------------------------

TEST(Distributed, ShardsCoverTheBatchInOrder) {
  for (int world : {1, 2, 3, 5})
    for (int64_t global : {0, 1, 4, 7, 128}) {
      int64_t next = 0, smallest = global, largest = 0;
      for (int r = 0; r < world; ++r) {
        auto [a, b] = shard_range(global, r, world);
        EXPECT_EQ(a, next);
        next = b;
        smallest = std::min(smallest, b - a);
        largest = std::max(largest, b - a);
      }
      EXPECT_EQ(next, global);
      EXPECT_LE(largest - smallest, 1);
    }
}

TEST(Distributed, BadOptionsNameTheFlag) {
  auto message = [](DistributedOptions o) {
    try {
      check_distributed_options(o);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message({0, 0, ""}).find("--world-size"), std::string::npos);
  EXPECT_NE(message({2, 2, "file:/tmp/x"}).find("--rank 2"), std::string::npos);
  EXPECT_NE(message({2, 0, ""}).find("--store"), std::string::npos);
  EXPECT_NE(message({2, 0, "tcp:host"}).find("tcp:HOST:PORT"), std::string::npos);
  EXPECT_NE(message({2, 0, "tcp:host:99999"}).find("--store"), std::string::npos);
  EXPECT_NE(message({2, 0, "file:/no/such/dir/store"}).find("/no/such/dir"), std::string::npos);
  EXPECT_EQ(message({2, 1, "tcp:localhost:29500"}), "");
  EXPECT_EQ(message({1, 0, ""}), "");
}

// Two ranks (threads of this process, a real Gloo group over a file store), each with the same
// small batch-norm-free network and its shard of a batch of 7: after sync_gradients both hold
// the gradient of the mean loss over all 7 images, as computed in one piece, and the summed
// statistics. A parameter no rank used stays without a gradient; one that only the rank with a
// non-empty shard used gets its gradient on both.
TEST(Distributed, SyncedGradientsAreTheFullBatchGradient) {
  if (!Communicator::available()) GTEST_SKIP() << "built without c10d Gloo";
  torch::manual_seed(3);
  const auto x = torch::randn({7, 5}, torch::kFloat64), y = torch::randint(0, 3, {7});
  const auto w1 = torch::randn({4, 5}, torch::kFloat64), w2 = torch::randn({3, 4}, torch::kFloat64);
  auto forward = [](const torch::Tensor& xs, const torch::Tensor& a, const torch::Tensor& b) {
    return torch::matmul(torch::tanh(torch::matmul(xs, a.t())), b.t());
  };
  // The reference: the whole batch in one piece.
  auto r1 = w1.clone().requires_grad_(), r2 = w2.clone().requires_grad_();
  torch::nn::functional::cross_entropy(forward(x, r1, r2), y).backward();

  for (int64_t global : {7, 1}) {  // 1: rank 0's shard is empty
    const std::string store = temp_dir(fmt::format("store{}", global));
    std::vector<torch::Tensor> got1(2), got2(2), unused(2);
    std::vector<std::vector<double>> stats(2);
    std::vector<std::string> errors(2);
    auto rank = [&](int r) {
      try {
        Communicator comm({2, r, "file:" + store, 60});
        auto p1 = w1.clone().requires_grad_(), p2 = w2.clone().requires_grad_(),
             p3 = torch::zeros({2}, torch::kFloat64).requires_grad_();  // never used
        const auto [a, b] = shard_range(global, r, 2);
        stats[r] = {0.0, static_cast<double>(b - a)};
        if (b > a) {
          auto loss = torch::nn::functional::cross_entropy(forward(x.slice(0, a, b), p1, p2), y.slice(0, a, b));
          stats[r][0] = loss.item<double>() * static_cast<double>(b - a);
          loss.backward();
        }
        sync_gradients(comm, {p1, p2, p3}, b - a, global, stats[r]);
        got1[r] = p1.grad();
        got2[r] = p2.grad();
        unused[r] = p3.grad();
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    };
    std::thread t0(rank, 0), t1(rank, 1);
    t0.join();
    t1.join();
    ASSERT_EQ(errors[0], "");
    ASSERT_EQ(errors[1], "");
    torch::Tensor e1, e2;
    double loss_sum = 0;
    if (global == 7) {
      e1 = r1.grad(), e2 = r2.grad();
      loss_sum = torch::nn::functional::cross_entropy(forward(x, w1, w2), y).item<double>() * 7;
    } else {
      auto q1 = w1.clone().requires_grad_(), q2 = w2.clone().requires_grad_();
      auto loss = torch::nn::functional::cross_entropy(forward(x.slice(0, 0, 1), q1, q2), y.slice(0, 0, 1));
      loss.backward();
      e1 = q1.grad(), e2 = q2.grad();
      loss_sum = loss.item<double>();
    }
    for (int r = 0; r < 2; ++r) {
      ASSERT_TRUE(got1[r].defined()) << "rank " << r << ", batch " << global;
      EXPECT_TRUE(torch::allclose(got1[r], e1, 1e-12, 1e-14)) << "rank " << r << ", batch " << global;
      EXPECT_TRUE(torch::allclose(got2[r], e2, 1e-12, 1e-14)) << "rank " << r << ", batch " << global;
      EXPECT_FALSE(unused[r].defined());
      EXPECT_NEAR(stats[r][0], loss_sum, 1e-12);
      EXPECT_EQ(stats[r][1], static_cast<double>(global));
    }
    EXPECT_TRUE(torch::equal(got1[0], got1[1]));  // bit-identical on both ranks
    fs::remove_all(store);
  }
}
