// load_dataset: the reader of each --data kind (data/formats.h).
#include "data/dataset.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/errors.h"
#include "data/formats.h"

namespace unravel::data {

Dataset load_dataset(const DataSpec& spec) {
  if (spec.kind == "synthetic") return load_synthetic(spec);
  if (spec.kind == "tensors") return load_tensor_file(spec);
  if (spec.kind == "imagefolder") return load_image_folder(spec);
  if (spec.kind != "fashion-mnist" && spec.kind != "mnist" && spec.kind != "cifar10" && spec.kind != "cifar100")
    throw UserError(fmt::format("--data {}: unknown data set '{}'", spec.str(), spec.kind));
  std::error_code ec;
  if (!std::filesystem::is_directory(spec.where, ec))
    throw UserError(fmt::format("--data {}: directory {} does not exist", spec.str(), spec.where));
  if (spec.kind == "cifar10") return load_cifar10(spec);
  if (spec.kind == "cifar100") return load_cifar100(spec);
  return load_idx_dataset(spec);
}

}  // namespace unravel::data
