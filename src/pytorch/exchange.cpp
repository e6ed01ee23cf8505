// unravel import / export (see exchange.h).
#include "pytorch/exchange.h"

#include <fmt/format.h>

#include <map>
#include <set>

#include "core/errors.h"
#include "core/hash.h"
#include "core/output.h"
#include "core/util.h"
#include "data/pytorch_file.h"
#include "interop/torch_file.h"
#include "models/network.h"
#include "pytorch/names.h"
#include "train/checkpoint.h"
#include "train/run.h"

namespace unravel::pytorch {

using json = nlohmann::json;

namespace {

const std::vector<double> kImageNetMean{0.485, 0.456, 0.406}, kImageNetStd{0.229, 0.224, 0.225};

std::string arch_list() {
  std::string s;
  for (const auto& n : models::ModelSpec::torchvision_names()) s += n + ", ";
  return s + "or unravel's resnetN, preresnetN, plainN, resnet200, preresnet50-200";
}

// What `export` writes next to the weights; `import` reads it back when it is there.
json read_sidecar(const std::string& weights) {
  const std::string path = weights + ".json";
  if (!path_exists(path)) return json::object();
  json j = read_json_file(path);
  return j.is_object() ? j : json::object();
}

struct FileTensors {
  std::vector<interop::NamedTensor> tensors;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::string format;
  std::shared_ptr<const void> owner;
};

FileTensors read_weights(const std::string& path) {
  const interop::TorchFile file = interop::read_torch_file(path);
  FileTensors f;
  f.format = interop::format_name(file.format());
  f.tensors = interop::state_dict_tensors(file);
  f.owner = file.owner();
  for (const auto& t : f.tensors) f.shapes[t.name] = t.tensor.sizes;
  return f;
}

// The pieces of the network a file determines: classes, input channels, shortcut type.
models::NetworkOptions network_options(const ImportOptions& o, const models::ModelSpec& spec, const FileTensors& f,
                                       const json& sidecar) {
  const std::string fc = spec.torchvision ? "fc.weight" : "head.fc.weight";
  const std::string stem = spec.torchvision ? "conv1.weight" : "stem.conv.weight";
  auto rows = [&](const std::string& k, int64_t fallback) {
    auto it = f.shapes.find(k);
    return it != f.shapes.end() && !it->second.empty() ? it->second[0] : fallback;
  };
  auto cols = [&](const std::string& k, int64_t fallback) {
    auto it = f.shapes.find(k);
    return it != f.shapes.end() && it->second.size() > 1 ? it->second[1] : fallback;
  };
  std::vector<int64_t> input = o.input;
  if (input.empty() && sidecar.contains("input")) input = sidecar["input"].get<std::vector<int64_t>>();
  if (input.empty()) input = spec.imagenet ? std::vector<int64_t>{cols(stem, 3), 224, 224}
                                           : std::vector<int64_t>{cols(stem, 3), 32, 32};
  if (input.size() != 3) throw UserError("the input shape must be C x H x W");
  std::string shortcut = o.shortcut;
  if (shortcut.empty() && !spec.torchvision) {
    shortcut = spec.default_shortcut;
    bool projection = false;
    for (const auto& [name, shape] : f.shapes) projection = projection || name.find("shortcut_conv") != std::string::npos;
    if (!spec.imagenet) shortcut = projection ? "B" : "A";
  }
  return models::NetworkOptions(o.arch)
      .in_channels(input[0])
      .input_size(input[1], input[2])
      .num_classes(o.classes > 0 ? o.classes : rows(fc, 1000))
      .shortcut(shortcut);
}

// Copies every tensor of the file into the network, checking names and shapes first.
void fill_network(models::Network& net, const FileTensors& f, const std::string& path) {
  std::vector<std::string> ours;
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : net->named_parameters()) {
    ours.push_back(p.key());
    targets[p.key()] = p.value();
  }
  for (auto& b : net->named_buffers()) {
    ours.push_back(b.key());
    targets[b.key()] = b.value();
  }
  const auto& spec = net->spec();
  const auto names = pytorch_names(ours, spec.torchvision, spec.blocks_per_stage);
  std::map<std::string, std::string> expected;  // pytorch name -> ours
  for (const auto& [mine, theirs] : names) expected[theirs] = mine;
  std::vector<std::string> missing, unexpected;
  for (const auto& [theirs, mine] : expected)
    if (!f.shapes.count(theirs)) missing.push_back(theirs);
  for (const auto& t : f.tensors)
    if (!expected.count(t.name)) unexpected.push_back(t.name);
  if (unexpected.size() == f.tensors.size()) {  // nothing in the file is a weight of this network
    std::string some;
    for (size_t i = 0; i < f.tensors.size() && i < 3; ++i) some += (i ? ", " : "") + elide_middle(f.tensors[i].name, 40);
    const std::string guess = [&] {
      std::vector<std::string> file_names;
      for (const auto& t : f.tensors) file_names.push_back(t.name);
      return guess_torchvision_arch(file_names, f.shapes);
    }();
    throw UserError(fmt::format("{}: holds no weights of {} (its {} tensors are {}{}){}", path, spec.name,
                                f.tensors.size(), some, f.tensors.size() > 3 ? ", ..." : "",
                                guess.empty() ? "" : fmt::format("; they fit --arch {}", guess)));
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::vector<std::string> file_names;
    for (const auto& t : f.tensors) file_names.push_back(t.name);
    const std::string guess = guess_torchvision_arch(file_names, f.shapes);
    const std::string hint = guess.empty() || guess == spec.name ? fmt::format("--arch values: {}", arch_list())
                                                                 : fmt::format("they fit --arch {}", guess);
    if (!missing.empty() && !unexpected.empty())
      throw UserError(fmt::format("{}: the tensors do not fit {} ({} missing, e.g. '{}'; {} unexpected, e.g. '{}'); {}",
                                  path, spec.name, missing.size(), missing[0], unexpected.size(),
                                  elide_middle(unexpected[0]), hint));
    if (!missing.empty())
      throw UserError(fmt::format("{}: no tensor '{}' ({} expects {}; {} missing in all); {}", path, missing[0],
                                  spec.name, shape_text(targets[expected[missing[0]]].sizes().vec()), missing.size(),
                                  hint));
    throw UserError(fmt::format("{}: unexpected tensor '{}' ({}) for {} ({} unexpected in all); {}", path,
                                elide_middle(unexpected[0]), shape_text(f.shapes.at(unexpected[0])), spec.name,
                                unexpected.size(), hint));
  }
  torch::NoGradGuard ng;
  for (const auto& t : f.tensors) {
    torch::Tensor& dst = targets[expected[t.name]];
    if (t.tensor.sizes != dst.sizes().vec())
      throw UserError(fmt::format("{}: tensor '{}' is {} in the file but {} expects {}{}", path, t.name,
                                  shape_text(t.tensor.sizes), spec.name, shape_text(dst.sizes().vec()),
                                  t.name.find("fc.") != std::string::npos ? " (give --classes?)" : ""));
    const torch::Tensor src = to_torch(t.tensor, path + ": " + t.name);
    if (src.is_floating_point() != dst.is_floating_point())
      throw UserError(fmt::format("{}: tensor '{}' is {} but {} expects {}", path, t.name,
                                  c10::toString(src.scalar_type()), spec.name, c10::toString(dst.scalar_type())));
    dst.copy_(src);
  }
}

}  // namespace

ImportResult import_network(const ImportOptions& o) {
  if (o.weights.empty()) throw UserError("give the PyTorch file to import (--weights FILE)");
  if (o.out.empty()) throw UserError("give the run directory to create (--out DIR)");
  if (o.arch.empty()) throw UserError(fmt::format("give the architecture (--arch): {}", arch_list()));
  const models::ModelSpec spec = models::ModelSpec::parse(o.arch);
  const RunDirectory rd(o.out);
  if (rd.has_config() || rd.has_checkpoint())
    throw UserError(fmt::format("{} already holds a run: import into a new directory", o.out));
  const json sidecar = read_sidecar(o.weights);
  const FileTensors f = read_weights(o.weights);

  models::Network net(network_options(o, spec, f, sidecar));
  fill_network(net, f, o.weights);
  if (sidecar.contains("residual_scales")) net->set_residual_scales(sidecar["residual_scales"].get<std::vector<double>>());
  net->eval();

  const auto& no = net->options();
  std::vector<double> mean = o.mean, std = o.std;
  if (mean.empty() && sidecar.contains("mean")) mean = sidecar["mean"].get<std::vector<double>>();
  if (std.empty() && sidecar.contains("std")) std = sidecar["std"].get<std::vector<double>>();
  if (mean.empty() && no.in_channels_ == 3) mean = kImageNetMean;
  if (std.empty() && no.in_channels_ == 3) std = kImageNetStd;
  if (static_cast<int64_t>(mean.size()) != no.in_channels_ || static_cast<int64_t>(std.size()) != no.in_channels_)
    throw UserError(fmt::format("the normalisation needs {} mean and {} std values (--mean, --std), got {} and {}",
                                no.in_channels_, no.in_channels_, mean.size(), std.size()));
  for (double s : std)
    if (!(s > 0)) throw UserError("every std value must be > 0");

  ImportResult r;
  r.format = f.format;
  r.tensors = f.tensors.size();
  RunConfig& c = r.config;
  c.command = "import";
  c.model = o.arch;
  c.options = {{"weights", o.weights}, {"arch", o.arch}, {"classes", o.classes}, {"input", o.input}};
  c.network = {no.in_channels_, no.height_, no.width_, no.num_classes_, no.shortcut_, net->num_blocks(),
               net->num_parameters()};
  c.mean = mean;
  c.std = std;
  c.residual_scales = net->residual_scales();
  if (sidecar.contains("class_names")) c.class_names = sidecar["class_names"].get<std::vector<std::string>>();
  if (static_cast<int64_t>(c.class_names.size()) != no.num_classes_) {
    c.class_names.clear();
    for (int64_t k = 0; k < no.num_classes_; ++k) c.class_names.push_back(std::to_string(k));
  }
  c.source = {{"file", o.weights}, {"format", f.format}, {"fingerprint", file_fingerprint(o.weights)},
              {"tensors", f.tensors.size()}, {"names", spec.torchvision ? "torchvision" : "unravel"}};
  c.versions = build_info();
  c.created = c.updated = iso_time_now();

  RunLock lock = rd.open_for_writing("run directory");
  TensorMap ck = network_state(net);
  ck["epoch"] = torch::tensor(int64_t{0});
  save_tensors_atomic(rd.checkpoint_path(), ck);
  rd.write_config(c);
  rd.write_summary({{"epochs", 0}, {"imported", true}, {"num_parameters", net->num_parameters()}},
                   {0, file_fingerprint(rd.checkpoint_path())});
  return r;
}

ExportResult export_network(const std::string& run_dir, const std::string& out) {
  if (out == "-") throw UserError("export writes a binary file: give a path, not '-'");
  check_output_path(out, "");
  check_output_path(out + ".json", "");
  LoadedNetwork loaded = load_run(run_dir);
  models::Network& net = loaded.net;
  const auto& spec = net->spec();
  std::vector<std::string> ours;
  std::map<std::string, torch::Tensor> values;
  for (const auto& p : net->named_parameters()) values[p.key()] = p.value();
  for (const auto& b : net->named_buffers()) values[b.key()] = b.value();
  for (const auto& [k, v] : values) ours.push_back(k);
  const auto names = pytorch_names(ours, spec.torchvision, spec.blocks_per_stage);
  TensorMap state;
  for (const auto& [mine, theirs] : names) state[theirs] = values[mine];
  save_tensors_atomic(out, state);

  ExportResult r;
  r.names = spec.torchvision ? "torchvision" : "unravel";
  r.tensors = state.size();
  r.sidecar = out + ".json";
  const auto& no = net->options();
  write_json_atomic(r.sidecar, {{"schema_version", kRunSchemaVersion},
                                {"arch", spec.name},
                                {"names", r.names},
                                {"num_classes", no.num_classes_},
                                {"input", {no.in_channels_, no.height_, no.width_}},
                                {"shortcut", no.shortcut_},
                                {"mean", loaded.norm.mean},
                                {"std", loaded.norm.std},
                                {"residual_scales", net->residual_scales()},
                                {"class_names", loaded.config.class_names},
                                {"run", run_dir},
                                {"checkpoint", loaded.checkpoint.to_json()}});
  return r;
}

}  // namespace unravel::pytorch
