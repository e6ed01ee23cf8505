// Checkpoints: a dict of named tensors written by torch::pickle_save (a zip archive that Python's
// torch.load reads), atomically; read back by the torch-free reader of src/interop.
#include "train/checkpoint.h"

#include <fmt/format.h>

#include "core/errors.h"
#include "core/output.h"
#include "core/util.h"
#include "data/pytorch_file.h"
#include "interop/torch_file.h"

namespace unravel {

void save_tensors_atomic(const std::string& path, const TensorMap& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [k, v] : tensors) dict.insert(k, v.detach().to(torch::kCPU).contiguous());
  std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

TensorMap load_tensors(const std::string& path) {
  // Our own reader (src/interop): the archive's structure and every entry's CRC-32 are checked
  // before a byte is used; libtorch's reader is not safe on truncated or hostile files.
  const interop::TorchFile file = interop::read_torch_file(path);
  if (file.root().kind != interop::Kind::Dict)
    throw UserError(fmt::format("{}: not an unravel checkpoint (holds a {}, not a dict of tensors)", path,
                                interop::describe(file.root())));
  TensorMap out;
  for (const auto& nt : interop::named_tensors(file.root(), path, {}, file.owner()))
    out[nt.name] = to_torch(nt.tensor, path + ": " + nt.name);
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

}  // namespace unravel
