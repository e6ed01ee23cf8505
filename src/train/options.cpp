// The options of a training run: their JSON form, validation and the names of the closed sets.
#include "train/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "core/errors.h"
#include "train/trainer.h"

namespace unravel {

using json = nlohmann::json;

namespace {

// The value of `text` among `names` (in enum order); UserError naming the option otherwise.
template <typename E, size_t N>
E parse_name(const std::string& text, const std::string& option, const char* const (&names)[N]) {
  std::string list;
  for (size_t i = 0; i < N; ++i) {
    if (text == names[i]) return static_cast<E>(i);
    list += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + names[i];
  }
  throw UserError(fmt::format("{} must be {}, got '{}'", option, list, text.substr(0, 40)));
}

const char* const kSchedules[] = {"step", "cosine", "constant"};
const char* const kSdModes[] = {"batch", "sample"};
const char* const kActiveTests[] = {"scaled", "all"};

}  // namespace

const char* name(Schedule s) { return kSchedules[static_cast<int>(s)]; }
const char* name(SdMode m) { return kSdModes[static_cast<int>(m)]; }
const char* name(ActiveTest a) { return kActiveTests[static_cast<int>(a)]; }
Schedule parse_schedule(const std::string& text, const std::string& option) {
  return parse_name<Schedule>(text, option, kSchedules);
}
SdMode parse_sd_mode(const std::string& text, const std::string& option) {
  return parse_name<SdMode>(text, option, kSdModes);
}
ActiveTest parse_active_test(const std::string& text, const std::string& option) {
  return parse_name<ActiveTest>(text, option, kActiveTests);
}

json TrainOptions::to_json() const {
  return {{"model", model},
          {"data", data},
          {"out", out},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"lr", lr},
          {"momentum", momentum},
          {"nesterov", nesterov},
          {"weight_decay", weight_decay},
          {"schedule", name(schedule)},
          {"milestones", milestones},
          {"gamma", gamma},
          {"warmup_epochs", warmup_epochs},
          {"shortcut", shortcut},
          {"stochastic_depth", stochastic_depth},
          {"sd_mode", name(sd_mode)},
          {"active_blocks", active_blocks},
          {"active_test", name(active_test)},
          {"augment", augment},
          {"train_subset", train_subset},
          {"test_subset", test_subset},
          {"val_split", val_split},
          {"seed", seed},
          {"threads", threads},
          {"device", device},
          {"precision", precision_name(precision)},
          {"log_every", log_every},
          {"eval_batch_size", eval_batch_size},
          {"world_size", dist.world_size}};
}

TrainOptions TrainOptions::from_json(const json& j) {
  TrainOptions o;
  auto get = [&](const char* k, auto& v) {
    if (j.contains(k)) v = j.at(k).get<std::decay_t<decltype(v)>>();
  };
  get("model", o.model); get("data", o.data); get("out", o.out); get("epochs", o.epochs);
  get("batch_size", o.batch_size); get("lr", o.lr); get("momentum", o.momentum);
  get("nesterov", o.nesterov); get("weight_decay", o.weight_decay);
  get("milestones", o.milestones); get("gamma", o.gamma); get("warmup_epochs", o.warmup_epochs);
  get("shortcut", o.shortcut); get("stochastic_depth", o.stochastic_depth);
  get("active_blocks", o.active_blocks); get("augment", o.augment);
  get("train_subset", o.train_subset); get("test_subset", o.test_subset); get("val_split", o.val_split);
  get("seed", o.seed); get("threads", o.threads); get("device", o.device); get("log_every", o.log_every);
  get("eval_batch_size", o.eval_batch_size); get("world_size", o.dist.world_size);
  if (j.contains("schedule")) o.schedule = parse_schedule(j.at("schedule").get<std::string>(), "schedule");
  if (j.contains("sd_mode")) o.sd_mode = parse_sd_mode(j.at("sd_mode").get<std::string>(), "sd_mode");
  if (j.contains("precision")) o.precision = parse_precision(j.at("precision").get<std::string>(), "precision");
  if (j.contains("active_test"))
    o.active_test = parse_active_test(j.at("active_test").get<std::string>(), "active_test");
  return o;
}

void TrainOptions::validate() const {
  const TrainOptions& o = *this;
  auto bad = [](const std::string& m) { throw UserError(m); };
  if (o.out.empty()) bad("--out DIR is required");
  if (o.epochs < 1) bad(fmt::format("--epochs must be >= 1, got {}", o.epochs));
  if (o.batch_size < 1) bad(fmt::format("--batch-size must be >= 1, got {}", o.batch_size));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) bad(fmt::format("--lr must be > 0, got {}", o.lr));
  if (o.momentum < 0 || o.momentum >= 1) bad(fmt::format("--momentum must be in [0, 1), got {}", o.momentum));
  if (o.weight_decay < 0) bad(fmt::format("--weight-decay must be >= 0, got {}", o.weight_decay));
  for (double m : o.milestones)
    if (m <= 0 || m >= 1) bad(fmt::format("--milestones are fractions of the run in (0, 1), got {}", m));
  if (o.warmup_epochs < 0 || o.warmup_epochs >= o.epochs)
    bad(fmt::format("--warmup must be in [0, epochs), got {}", o.warmup_epochs));
  if (o.stochastic_depth < 0 || o.stochastic_depth > 1)
    bad(fmt::format("--stochastic-depth p_L must be in (0, 1] (0 = off), got {}", o.stochastic_depth));
  if (o.active_blocks < 0) bad(fmt::format("--active-blocks must be >= 0, got {}", o.active_blocks));
  if (o.active_blocks > 0 && o.stochastic_depth > 0)
    bad("--active-blocks and --stochastic-depth cannot be combined");
  if (o.train_subset < 0 || o.test_subset < 0 || o.val_split < 0)
    bad("--train-subset, --test-subset and --val-split must be >= 0");
  if (o.log_every < 1) bad(fmt::format("--log-every must be >= 1, got {}", o.log_every));
  if (o.stop_after < 0) bad(fmt::format("--stop-after must be >= 0, got {}", o.stop_after));
}

// The options that define a run: a resume must agree on all of them (epochs may grow).
const std::vector<const char*> kRunDefiningOptions = {"model", "data", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
                              "schedule", "milestones", "gamma", "warmup_epochs", "shortcut",
                              "stochastic_depth", "sd_mode", "active_blocks", "augment", "train_subset",
                              "val_split", "seed", "precision"};

std::string epochs_change_rule(const TrainOptions& now, int before, int done) {
  TrainOptions old = now;
  old.epochs = before;
  auto at = [](const TrainOptions& o) {
    std::string s;
    for (double m : o.milestones) s += fmt::format("{}{:g}", s.empty() ? "" : ", ", m * o.epochs);
    return s;
  };
  std::string rule;
  if (now.schedule == Schedule::Step && !now.milestones.empty())
    rule = fmt::format("step schedule: lr x{:g} at fractions {} of the run, now at epochs {} of {} (were {} of {})",
                       now.gamma, fmt::join(now.milestones, ","), at(now), now.epochs, at(old), before);
  else if (now.schedule == Schedule::Cosine)
    rule = fmt::format("cosine schedule: now over {} epochs (was {})", now.epochs, before);
  else  // constant, or step without milestones
    return fmt::format("{} schedule: lr {:g} as before", name(now.schedule), now.lr);
  return rule + fmt::format("; epochs 1-{} keep the rates they were trained with; lr {:g} at the end of epoch {}, "
                            "{:g} from epoch {}",
                            done, learning_rate(old, done - 1e-9), done, learning_rate(now, done), done + 1);
}

}  // namespace unravel
