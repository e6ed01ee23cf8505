// Splits: subsets, shards, selections and the seeded validation split; label checks.
#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"
#include "core/random.h"
#include "data/formats.h"

namespace unravel::data {

torch::Tensor to_long_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kLong).clone();
}

void check_labels(const torch::Tensor& labels_u8, int64_t num_classes, const std::string& path, const char* word) {
  const uint8_t* p = labels_u8.data_ptr<uint8_t>();
  const int64_t n = labels_u8.numel();
  for (int64_t i = 0; i < n; ++i)
    if (p[i] >= num_classes)
      throw UserError(fmt::format("{}: {} {} at position {} is out of range (classes 0..{})", path, word, p[i], i,
                                  num_classes - 1));
}

Split Split::select(const torch::Tensor& idx) const {
  Split s;
  s.labels = labels.index_select(0, idx);
  if (streamed()) {
    s.stream = stream;
    s.rows = rows.index_select(0, idx);
  } else {
    s.images = images.index_select(0, idx);
  }
  return s;
}

Split slice_split(const Split& s, int64_t begin, int64_t end) {
  Split out;
  out.labels = s.labels.slice(0, begin, end);
  if (s.streamed()) {
    out.stream = s.stream;
    out.rows = s.rows.slice(0, begin, end);
  } else {
    out.images = s.images.slice(0, begin, end);
  }
  return out;
}

Split take_subset(const Split& s, int64_t n) {
  if (n <= 0 || n >= s.size()) return s;
  return slice_split(s, 0, n);
}

void split_validation(const Split& train, int64_t n_val, uint64_t seed, Split& train_out, Split& val) {
  const int64_t n = train.size();
  if (n_val <= 0) {
    train_out = train;
    val = n > 0 ? slice_split(train, 0, 0) : Split{};
    return;
  }
  if (n_val >= n)
    throw UserError(fmt::format("--val-split {}: must be smaller than the training set ({} examples)", n_val, n));
  Rng rng = Rng::stream(seed, kStreamValSplit);
  std::vector<int64_t> perm = permutation(n, rng);
  std::vector<int64_t> keep(perm.begin(), perm.end() - n_val), held(perm.end() - n_val, perm.end());
  std::sort(keep.begin(), keep.end());
  std::sort(held.begin(), held.end());
  train_out = train.select(to_long_tensor(keep));
  val = train.select(to_long_tensor(held));
}

}  // namespace unravel::data
