// The report page's style and the small pieces both report kinds share.
#include "report/page.h"

namespace unravel::report::detail {

using nlohmann::json;

namespace {

std::string json_scalar_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

const char* const kStyle = R"(
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1d1d1d; background: #fff;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #1f77b4; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-bottom: 0.3em; }
.meta { color: #555; margin-top: 0; }
.note { background: #fff6e5; border-left: 4px solid #ff9f1c; padding: 0.6em 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #eef3f9; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0 1.6em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.92em; max-width: 800px; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
ul.missing li { color: #666; }
)";

std::string data_note(const std::string& data) {
  if (data.rfind("cifar10", 0) == 0 && data.rfind("cifar100", 0) != 0)
    return "Data: " + data + ", the paper's CIFAR-10. Our networks and schedules may be smaller "
           "than the paper's (see the configuration), so compare shapes and relative effects.";
  return "Our data set is " + (data.empty() ? std::string("not recorded") : data) +
         "; the paper's numbers are on CIFAR-10 (ImageNet for E2), so absolute errors differ: "
         "compare the shapes of the curves and the relative effects (how much a deletion hurts "
         "against the intact network). Path counts (E5, E8) are exact arithmetic and compare "
         "directly.";
}

std::string out_dir_for(const std::string& dir, const ReportOptions& opts) {
  return opts.out_dir.empty() ? dir + "/report" : opts.out_dir;
}

std::string meta_line(const json& meta) {
  std::string s;
  if (!meta.is_object()) return s;
  for (const auto& [k, v] : meta.items()) {
    if (v.is_object() || v.is_array()) continue;
    s += (s.empty() ? "" : " · ") + k + ": " + json_scalar_text(v);
  }
  return s;
}

std::string string_field(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j.at(key).is_string()) return j.at(key).get<std::string>();
  return "";
}

}  // namespace unravel::report::detail
