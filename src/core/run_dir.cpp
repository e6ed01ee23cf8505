// The run directory's schema and files (see run_dir.h).
#include "core/run_dir.h"

#include <fmt/format.h>

#include "core/errors.h"
#include "core/hash.h"
#include "core/output.h"
#include "core/util.h"

namespace unravel {

using json = nlohmann::json;

void to_json(json& j, const RunConfig& c) {
  j = {{"schema_version", c.schema_version},
       {"command", c.command},
       {"model", c.model},
       {"data", c.data},
       {"seed", c.seed},
       {"options", c.options},
       {"network",
        {{"in_channels", c.network.in_channels},
         {"height", c.network.height},
         {"width", c.network.width},
         {"num_classes", c.network.num_classes},
         {"shortcut", c.network.shortcut},
         {"num_blocks", c.network.num_blocks},
         {"num_parameters", c.network.num_parameters}}},
       {"normalizer", {{"mean", c.mean}, {"std", c.std}}},
       {"residual_scales", c.residual_scales},
       {"class_names", c.class_names},
       {"sizes", c.sizes},
       {"source", c.source},
       {"versions", c.versions},
       {"threads", c.threads},
       {"world_size", c.world_size},
       {"device", c.device},
       {"created", c.created},
       {"updated", c.updated}};
}

void from_json(const json& j, RunConfig& c) {
  // Required: what is needed to rebuild the network and feed it. The rest has defaults, so
  // that directories written before a field existed still load.
  c.schema_version = j.value("schema_version", 0);
  c.command = j.value("command", std::string("train"));
  j.at("model").get_to(c.model);
  c.data = j.value("data", std::string());
  c.seed = j.value("seed", uint64_t{0});
  c.options = j.value("options", json::object());
  const json& n = j.at("network");
  n.at("in_channels").get_to(c.network.in_channels);
  n.at("height").get_to(c.network.height);
  n.at("width").get_to(c.network.width);
  n.at("num_classes").get_to(c.network.num_classes);
  n.at("shortcut").get_to(c.network.shortcut);
  c.network.num_blocks = n.value("num_blocks", 0);
  c.network.num_parameters = n.value("num_parameters", int64_t{0});
  j.at("normalizer").at("mean").get_to(c.mean);
  j.at("normalizer").at("std").get_to(c.std);
  c.residual_scales = j.value("residual_scales", std::vector<double>{});
  c.class_names = j.value("class_names", std::vector<std::string>{});
  c.sizes = j.value("sizes", json::object());
  c.source = j.value("source", json::object());
  c.versions = j.value("versions", json::object());
  c.threads = j.value("threads", 0);
  c.world_size = j.value("world_size", 1);
  c.device = j.value("device", std::string());
  c.created = j.value("created", std::string());
  c.updated = j.value("updated", std::string());
}

bool RunDirectory::has_config() const { return path_exists(config_path()); }
bool RunDirectory::has_checkpoint() const { return path_exists(checkpoint_path()); }

RunConfig RunDirectory::read_config() const {
  if (!path_exists(dir_)) throw UserError(fmt::format("--run {}: no such directory", dir_));
  if (!has_config()) throw UserError(fmt::format("--run {}: not a run directory (no config.json)", dir_));
  const json j = read_json_file(config_path());
  if (!j.is_object()) throw UserError(fmt::format("{}: not a JSON object", config_path()));
  if (j.value("schema_version", 0) > kRunSchemaVersion)
    throw UserError(fmt::format("{}: schema version {} is newer than this unravel reads ({})", config_path(),
                                j.value("schema_version", 0), kRunSchemaVersion));
  try {
    RunConfig c = j.get<RunConfig>();
    if (c.mean.size() != c.std.size() || c.mean.empty())
      throw UserError(fmt::format("{}: normalizer mean and std must be non-empty lists of equal length", config_path()));
    return c;
  } catch (const json::exception& e) {
    throw UserError(fmt::format("{}: missing or malformed field ({})", config_path(), elide_middle(e.what(), 120)));
  }
}

void RunDirectory::write_config(const RunConfig& c) const { write_json_atomic(config_path(), json(c)); }

json RunDirectory::read_summary() const {
  if (!path_exists(summary_path())) return json::object();
  json s = read_json_file(summary_path());
  if (!s.is_object()) throw UserError(fmt::format("{}: not a JSON object", summary_path()));
  return s;
}

void RunDirectory::write_summary(json summary, const CheckpointRef& checkpoint) const {
  summary["schema_version"] = kRunSchemaVersion;
  summary["checkpoint"] = checkpoint.to_json();
  write_json_atomic(summary_path(), summary);
}

RunDirectory::CheckpointState RunDirectory::checkpoint_state() const {
  CheckpointState st;
  st.ref.fingerprint = file_fingerprint(checkpoint_path());
  const json s = read_summary();
  try {
    st.ref.epoch = s.value("epochs", 0);
    if (s.contains("checkpoint") && s["checkpoint"].is_object()) {
      st.recorded = true;
      st.ref.epoch = s["checkpoint"].value("epoch", st.ref.epoch);
      st.consistent = s["checkpoint"].value("fingerprint", std::string()) == st.ref.fingerprint;
    }
  } catch (const json::exception& e) {
    throw UserError(fmt::format("{}: malformed field ({})", summary_path(), elide_middle(e.what(), 120)));
  }
  return st;
}

RunLock RunDirectory::open_for_writing(const std::string& what) const {
  make_dirs(dir_);
  RunLock lock = RunLock::acquire(dir_, what);
  remove_stale_temp_files(dir_);
  return lock;
}

}  // namespace unravel
