// Run directories and checkpoints; networks from a run or from a seed; threads, allocator, devices.
#include "train/run.h"

#include <fmt/format.h>

#include <fstream>
#include <memory>

#include "core/errors.h"
#include "core/run_dir.h"
#include "core/threads.h"
#include "core/util.h"
#include "data/stream.h"
#include "train/checkpoint.h"

namespace unravel {

models::Network build_network(const RunConfig& c) {
  models::Network net(models::NetworkOptions(c.model)
                          .in_channels(c.network.in_channels)
                          .input_size(c.network.height, c.network.width)
                          .num_classes(c.network.num_classes)
                          .shortcut(c.network.shortcut));
  net->set_residual_scales(c.residual_scales);
  return net;
}

LoadedNetwork load_run(const std::string& dir) {
  const RunDirectory rd(dir);
  LoadedNetwork out;
  out.config = rd.read_config();
  out.run_dir = dir;
  try {
    out.net = build_network(out.config);
  } catch (const UserError& e) {
    throw UserError(fmt::format("{}: {}", rd.config_path(), e.what()));
  }
  out.norm.mean = out.config.mean;
  out.norm.std = out.config.std;
  out.data_spec = out.config.data;
  if (!rd.has_checkpoint())
    throw UserError(fmt::format("--run {}: no checkpoint.pt yet (has the run finished an epoch?)", dir));
  const RunDirectory::CheckpointState st = rd.checkpoint_state();
  if (st.recorded && !st.consistent)
    throw UserError(fmt::format("--run {}: checkpoint.pt is not the one summary.json records (the run stopped "
                                "between the two writes, or a file was changed): resume the run to repair it",
                                dir));
  const TensorMap tensors = load_tensors(rd.checkpoint_path());
  load_network_state(out.net, tensors, rd.checkpoint_path());
  out.checkpoint = st.ref;
  auto epoch = tensors.find("epoch");
  if (epoch != tensors.end() && epoch->second.numel() == 1) out.checkpoint.epoch = static_cast<int>(epoch->second.item<int64_t>());
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
    if (spec.empty())
      throw UserError(fmt::format("--run {} holds an imported network: give its images with --data "
                                  "(e.g. tensors:FILE or imagefolder:DIR)", in.run_dir));
    ex.dataset = data::load_dataset(data::parse_data_spec(spec));
    const auto& o = ex.loaded.net->options();
    if (ex.dataset.channels != o.in_channels_ || ex.dataset.height != o.height_ || ex.dataset.width != o.width_)
      throw UserError(fmt::format("--data {}: images are {}x{}x{} but the network takes {}x{}x{}", spec,
                                  ex.dataset.channels, ex.dataset.height, ex.dataset.width, o.in_channels_,
                                  o.height_, o.width_));
    for (const data::Split* s : {&ex.dataset.train, &ex.dataset.test})
      if (s->size() > 0 && s->labels.max().item<int64_t>() >= o.num_classes_)
        throw UserError(fmt::format("--data {}: labels go up to {} but the network has {} classes", spec,
                                    s->labels.max().item<int64_t>(), o.num_classes_));
    if (in.data_spec.empty() || in.data_spec == ex.loaded.data_spec) {
      // the run's own training images: what it trained on (subset, without validation images),
      // so that recalibration and gradients see the training distribution of this run
      const nlohmann::json& opt = ex.loaded.config.options;
      data::Split train = data::take_subset(ex.dataset.train, opt.value("train_subset", int64_t{0})), val;
      if (opt.value("val_split", int64_t{0}) > 0) {
        const data::Split all = train;
        data::split_validation(all, opt.value("val_split", int64_t{0}), opt.value("seed", uint64_t{0}), train, val);
      }
      ex.dataset.train = train;
    }
    return ex;
  }
  if (in.model.empty()) throw UserError("give --run DIR (a trained run) or --model NAME (a random network)");
  ex.dataset = data::load_dataset(data::parse_data_spec(in.data_spec.empty() ? "fashion-mnist" : in.data_spec));
  ex.loaded = random_network(in.model, in.seed, ex.dataset, in.shortcut);
  return ex;
}

nlohmann::json provenance(const Experiment& ex, const data::Split& test) {
  return {{"schema_version", kRunSchemaVersion},
          {"model", ex.loaded.net->spec().name},
          {"run", ex.loaded.run_dir},
          {"checkpoint", ex.loaded.run_dir.empty() ? nlohmann::json() : ex.loaded.checkpoint.to_json()},
          {"data", ex.dataset.spec.str()},
          {"test_n", test.size()},
          {"skipped_files", test.streamed() ? test.stream->skipped() : 0},
          {"build", build_info()}};
}

}  // namespace unravel
