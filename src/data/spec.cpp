// --data specs: "KIND[:WHERE[:OPTIONS]]" parsed into a DataSpec, and back to text.
#include <fmt/format.h>

#include "core/errors.h"
#include "core/util.h"
#include "data/dataset.h"

namespace unravel::data {

namespace {

const char* kFashionDefaultDir = "/usr/share/datasets/fashion-mnist";
const char* kValidKinds =
    "fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR, synthetic[:OPTS], tensors:FILE, "
    "imagefolder:DIR[:OPTS]";

}  // namespace

std::string DataSpec::str() const {
  std::string s = kind;
  if (!where.empty()) s += ":" + where;
  if (!options.empty()) s += ":" + options;
  return s;
}

DataSpec parse_data_spec(const std::string& spec) {
  const std::string shown = elide_middle(spec, 120);
  if (spec.size() > 4096) throw UserError(fmt::format("--data {}: longer than 4096 characters", shown));
  const size_t colon = spec.find(':');
  DataSpec d;
  d.kind = spec.substr(0, colon);
  const bool has_where = colon != std::string::npos;
  if (has_where) d.where = spec.substr(colon + 1);
  if (d.kind == "synthetic") return d;
  if (d.kind == "imagefolder") {
    // DIR[:OPTS]: options follow the last ':' when that part holds a '='.
    const size_t last = d.where.rfind(':');
    if (last != std::string::npos && d.where.find('=', last) != std::string::npos) {
      d.options = d.where.substr(last + 1);
      d.where = d.where.substr(0, last);
    }
  }
  const bool known = d.kind == "fashion-mnist" || d.kind == "mnist" || d.kind == "cifar10" || d.kind == "cifar100" ||
                     d.kind == "tensors" || d.kind == "imagefolder";
  if (!known)
    throw UserError(fmt::format("--data {}: unknown data set '{}' (valid: {})", shown, elide_middle(d.kind), kValidKinds));
  if (has_where && d.where.empty())
    throw UserError(fmt::format("--data {}: empty {} after ':'", shown, d.kind == "tensors" ? "file" : "directory"));
  if (!has_where) {
    if (d.kind != "fashion-mnist")
      throw UserError(fmt::format("--data {}: needs a {}, as in {}:{}", shown,
                                  d.kind == "tensors" ? "file" : "directory", d.kind,
                                  d.kind == "tensors" ? "FILE" : "DIR"));
    d.where = kFashionDefaultDir;
  }
  return d;
}

}  // namespace unravel::data
