// Run directories and checkpoints; networks from a run or from a seed; threads, allocator, devices.
#include "train/run.h"

#include <fmt/format.h>

#include <fstream>
#include <memory>

#include "core/errors.h"
#include "core/threads.h"
#include "core/util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace unravel {

namespace {
std::unique_ptr<ThreadGovernor>& governor() {
  static std::unique_ptr<ThreadGovernor> g;
  return g;
}
}  // namespace

void setup_compute(int threads) {
  if (threads < 0) throw UserError(fmt::format("threads must be >= 0 (0 = automatic), got {}", threads));
  keep_freed_memory();
  if (threads == 0) {
    if (!governor()) governor() = std::make_unique<ThreadGovernor>();
    torch::set_num_threads(governor()->threads());
    if (std::getenv("UNRAVEL_THREADS_LOG"))
      std::cerr << fmt::format("[threads] start with {} (others keep {:.2f} cores busy)\n", governor()->threads(),
                               governor()->last_others_busy());
  } else {
    governor().reset();
    torch::set_num_threads(threads);
  }
}

void apply_thread_policy() {
  const auto& g = governor();
  if (!g) return;
  const int want = g->threads();
  if (want != torch::get_num_threads()) {
    if (std::getenv("UNRAVEL_THREADS_LOG"))
      std::cerr << fmt::format("[threads] {} -> {} (others keep {:.2f} cores busy)\n", torch::get_num_threads(), want,
                               g->last_others_busy());
    torch::set_num_threads(want);
  }
}

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      throw UserError("--device cuda: no CUDA device is available (this libtorch build or machine has none)");
    return torch::kCUDA;
  }
  throw UserError(fmt::format("--device must be auto, cpu or cuda, got '{}'", name));
}

// ----------------------------------------------------------------------------------------------
// Checkpoints

void save_tensors_atomic(const std::string& path, const TensorMap& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v.detach().to(torch::kCPU).contiguous());
  std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

TensorMap load_tensors(const std::string& path) {
  std::string bytes = read_text_file(path, kMaxCheckpointBytes);
  TensorMap out;
  try {
    auto iv = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
    for (const auto& kv : iv.toGenericDict()) out[kv.key().toStringRef()] = kv.value().toTensor();
  } catch (const c10::Error& e) {
    throw UserError(fmt::format("{}: not a readable unravel checkpoint ({})", path,
                                std::string(e.what_without_backtrace()).substr(0, 120)));
  }
  return out;
}

TensorMap network_state(models::Network& net) {
  TensorMap m;
  for (const auto& p : net->named_parameters()) m["param." + p.key()] = p.value().detach().to(torch::kCPU).clone();
  for (const auto& b : net->named_buffers()) m["buffer." + b.key()] = b.value().detach().to(torch::kCPU).clone();
  return m;
}

void load_network_state(models::Network& net, const TensorMap& tensors, const std::string& path) {
  torch::NoGradGuard ng;
  auto load = [&](const std::string& key, torch::Tensor& dst) {
    auto it = tensors.find(key);
    if (it == tensors.end())
      throw UserError(fmt::format("{}: checkpoint has no tensor '{}': it was saved from a different architecture than {}",
                                  path, key, net->spec().name));
    if (it->second.sizes() != dst.sizes())
      throw UserError(fmt::format("{}: tensor '{}' has shape {} in the checkpoint but {} in {}: a different architecture",
                                  path, key, fmt::join(it->second.sizes(), "x"), fmt::join(dst.sizes(), "x"),
                                  net->spec().name));
    dst.copy_(it->second);
  };
  size_t expected = 0;
  for (auto& p : net->named_parameters()) { load("param." + p.key(), p.value()); ++expected; }
  for (auto& b : net->named_buffers()) { load("buffer." + b.key(), b.value()); ++expected; }
  size_t present = 0;
  for (const auto& kv : tensors)
    if (kv.first.rfind("param.", 0) == 0 || kv.first.rfind("buffer.", 0) == 0) ++present;
  if (present != expected)
    throw UserError(fmt::format("{}: checkpoint holds {} model tensors but {} has {}: a different architecture",
                                path, present, net->spec().name, expected));
}

// ----------------------------------------------------------------------------------------------
// Networks for experiments

LoadedNetwork load_run(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  if (!path_exists(dir)) throw UserError(fmt::format("--run {}: no such directory", dir));
  if (!path_exists(cfg_path)) throw UserError(fmt::format("--run {}: not a run directory (no config.json)", dir));
  LoadedNetwork out;
  out.config = read_json_file(cfg_path);
  try {
    const auto& net = out.config.at("network");
    out.net = models::Network(models::NetworkOptions(out.config.at("model").get<std::string>())
                                  .in_channels(net.at("in_channels").get<int64_t>())
                                  .input_size(net.at("height").get<int64_t>(), net.at("width").get<int64_t>())
                                  .num_classes(net.at("num_classes").get<int64_t>())
                                  .shortcut(net.at("shortcut").get<std::string>()));
    out.net->set_residual_scales(out.config.at("residual_scales").get<std::vector<double>>());
    out.norm.mean = out.config.at("normalizer").at("mean").get<std::vector<double>>();
    out.norm.std = out.config.at("normalizer").at("std").get<std::vector<double>>();
    out.data_spec = out.config.at("data").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{}: missing or malformed field ({})", cfg_path, e.what()));
  }
  const std::string ckpt = dir + "/checkpoint.pt";
  if (!path_exists(ckpt)) throw UserError(fmt::format("--run {}: no checkpoint.pt yet (has the run finished an epoch?)", dir));
  load_network_state(out.net, load_tensors(ckpt), ckpt);
  out.net->eval();
  return out;
}

LoadedNetwork random_network(const std::string& model, uint64_t seed, const data::Dataset& ds,
                             const std::string& shortcut) {
  LoadedNetwork out;
  torch::manual_seed(seed);
  out.net = models::Network(models::NetworkOptions(model)
                                .in_channels(ds.channels)
                                .input_size(ds.height, ds.width)
                                .num_classes(ds.num_classes)
                                .shortcut(shortcut));
  out.net->eval();
  out.norm = data::Normalizer::for_dataset(ds, ds.train);
  out.data_spec = ds.spec.str();
  return out;
}

Experiment load_experiment(const ExperimentInput& in) {
  Experiment ex;
  if (!in.run_dir.empty()) {
    ex.loaded = load_run(in.run_dir);
    const std::string spec = in.data_spec.empty() ? ex.loaded.data_spec : in.data_spec;
    ex.dataset = data::load_dataset(data::parse_data_spec(spec));
    const auto& o = ex.loaded.net->options();
    if (ex.dataset.channels != o.in_channels_ || ex.dataset.height != o.height_ || ex.dataset.width != o.width_)
      throw UserError(fmt::format("--data {}: images are {}x{}x{} but the run was trained on {}x{}x{}", spec,
                                  ex.dataset.channels, ex.dataset.height, ex.dataset.width, o.in_channels_,
                                  o.height_, o.width_));
    return ex;
  }
  if (in.model.empty()) throw UserError("give --run DIR (a trained run) or --model NAME (a random network)");
  ex.dataset = data::load_dataset(data::parse_data_spec(in.data_spec.empty() ? "fashion-mnist" : in.data_spec));
  ex.loaded = random_network(in.model, in.seed, ex.dataset, in.shortcut);
  return ex;
}

}  // namespace unravel
