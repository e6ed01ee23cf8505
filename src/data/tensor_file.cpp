// --data tensors:FILE: images and labels a PyTorch user saved with torch.save, read by the
// torch-free reader (src/interop) and checked: shapes, dtypes, label range.
#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "data/formats.h"
#include "data/pytorch_file.h"
#include "interop/torch_file.h"

namespace unravel::data {

namespace {

constexpr int64_t kMaxClasses = 100000;

torch::Tensor tensor_at(const interop::Value& dict, const char* key, const std::string& where,
                        const std::shared_ptr<const void>& owner) {
  const interop::Value* v = dict.get(key);
  if (!v) throw UserError(fmt::format("{}: no \"{}\" in the dict (expected images and labels)", where, key));
  if (v->kind != interop::Kind::Tensor)
    throw UserError(fmt::format("{}: \"{}\" is a {}, not a tensor", where, key, interop::describe(*v)));
  return to_torch(interop::tensor_ref(*v, owner), where + ": " + key);
}

Split read_split(const interop::Value& dict, const std::string& where, const std::shared_ptr<const void>& owner) {
  Split s;
  s.images = tensor_at(dict, "images", where, owner);
  torch::Tensor labels = tensor_at(dict, "labels", where, owner);
  if (s.images.dim() != 4)
    throw UserError(fmt::format("{}: images are {}, expected N x C x H x W", where, shape_text(s.images.sizes().vec())));
  if (labels.dim() != 1 || labels.size(0) != s.images.size(0))
    throw UserError(fmt::format("{}: labels are {} for {} images, expected {}", where,
                                shape_text(labels.sizes().vec()), s.images.size(0), s.images.size(0)));
  if (s.images.size(0) == 0) throw UserError(fmt::format("{}: holds no images", where));
  if (s.images.scalar_type() == torch::kUInt8) {
    // pixels: normalised like every data set
  } else if (s.images.is_floating_point()) {
    s.images = s.images.to(torch::kFloat32).contiguous();  // already normalised, used as they are
  } else {
    throw UserError(fmt::format("{}: images of dtype {} (expected uint8 pixels or floating point)", where,
                                c10::toString(s.images.scalar_type())));
  }
  if (labels.is_floating_point() || labels.scalar_type() == torch::kBool)
    throw UserError(fmt::format("{}: labels of dtype {} (expected integers)", where, c10::toString(labels.scalar_type())));
  s.labels = labels.to(torch::kLong);
  const int64_t lo = s.labels.min().item<int64_t>(), hi = s.labels.max().item<int64_t>();
  if (lo < 0 || hi >= kMaxClasses)
    throw UserError(fmt::format("{}: labels range over [{}, {}], expected class indices in [0, {})", where, lo, hi,
                                kMaxClasses));
  if (s.images.is_floating_point() && !torch::isfinite(s.images).all().item<bool>())
    throw UserError(fmt::format("{}: images hold NaN or infinite values", where));
  return s;
}

}  // namespace

Dataset load_tensor_file(const DataSpec& spec) {
  const std::string& path = spec.where;
  const interop::TorchFile file = interop::read_torch_file(path);
  const interop::Value& root = file.root();
  if (root.kind != interop::Kind::Dict)
    throw UserError(fmt::format("{}: holds a {}, expected a dict with \"images\" and \"labels\"", path,
                                interop::describe(root)));
  Dataset ds;
  ds.spec = spec;
  const interop::Value* train = root.get("train");
  const interop::Value* test = root.get("test");
  if (train || test) {
    if (!train || !test || train->kind != interop::Kind::Dict || test->kind != interop::Kind::Dict)
      throw UserError(fmt::format("{}: \"train\" and \"test\" must both be dicts of images and labels", path));
    ds.train = read_split(*train, path + " [train]", file.owner());
    ds.test = read_split(*test, path + " [test]", file.owner());
  } else {
    ds.test = read_split(root, path, file.owner());
    ds.train = ds.test;  // one split: recalibration and gradients draw from it too
  }
  for (const Split* s : {&ds.train, &ds.test})
    if (s->images.sizes().slice(1) != ds.test.images.sizes().slice(1) ||
        s->images.scalar_type() != ds.test.images.scalar_type())
      throw UserError(fmt::format("{}: training and test images differ in shape or dtype", path));
  ds.channels = ds.test.images.size(1);
  ds.height = ds.test.images.size(2);
  ds.width = ds.test.images.size(3);
  ds.num_classes = std::max(2L, std::max(ds.train.labels.max().item<int64_t>(), ds.test.labels.max().item<int64_t>()) + 1);
  for (int64_t k = 0; k < ds.num_classes; ++k) ds.class_names.push_back(std::to_string(k));
  return ds;
}

}  // namespace unravel::data
