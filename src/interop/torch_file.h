// PyTorch files read without torch: torch.save's zip format (also what torch::pickle_save
// writes), TorchScript archives (torch.jit.save) and the legacy format
// (_use_new_zipfile_serialization=False). The result is a pickle value tree whose tensors point
// into the file's bytes, checked to lie inside their storages, and helpers that flatten it to
// named tensors in file order.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "interop/pickle.h"
#include "interop/zip.h"

namespace unravel::interop {

enum class TorchFileFormat { Zip, TorchScript, Legacy };
const char* format_name(TorchFileFormat format);  // "zip", "torchscript", "legacy"

struct TorchFileLimits {
  uint64_t max_file_bytes = uint64_t{64} << 30;  // whole file
  ZipLimits zip;                                  // the zip forms
  PickleLimits pickle;                            // data.pkl / the legacy pickles
  uint64_t max_walk_visits = uint64_t{1} << 20;   // values visited when flattening (shared ones count each time)
  uint64_t max_tensors = uint64_t{1} << 17;       // named tensors a flattening yields
  int max_walk_depth = 256;                       // nesting when flattening
  size_t max_name_length = 1024;                  // characters of one flattened name
};

// A tensor as the file describes it. `storage` views the whole storage (numel * element size
// bytes, little-endian, no alignment promised); `owner` keeps those bytes alive when the tensor
// came from a TorchFile (state_dict_tensors, or named_tensors given file.owner()), else they live
// as long as the file. Empty for a tensor of a bare unpickled document (no file resolved it).
struct TensorRef {
  DType dtype = DType::Float32;
  std::string storage_key;
  std::string_view storage;
  int64_t storage_offset = 0;  // elements
  std::vector<int64_t> sizes, strides;
  bool requires_grad = false;
  std::shared_ptr<const void> owner;

  int64_t numel() const;
  int element_size() const { return dtype_info(dtype).element_size; }
  bool is_contiguous() const;  // row-major with no gaps
  // The elements in row-major order, numel * element size bytes; UserError above max_bytes.
  std::string contiguous_bytes(uint64_t max_bytes = uint64_t{1} << 34) const;
};

struct NamedTensor {
  std::string name;  // "layer1.0.conv1.weight"
  TensorRef tensor;
};

class TorchFile {
 public:
  TorchFileFormat format() const { return format_; }
  const std::string& name() const { return name_; }   // the path, for messages
  const Value& root() const { return doc_.root(); }
  const std::string& prefix() const { return prefix_; }  // "archive" in archive/data.pkl; "" legacy
  // Keeps the bytes that the tensors of this file view alive, even after the file is gone.
  std::shared_ptr<const void> owner() const;

 private:
  friend TorchFile read_torch_file_bytes(std::shared_ptr<const std::string>, std::string, const TorchFileLimits&);
  TorchFile() = default;
  TorchFileFormat format_ = TorchFileFormat::Zip;
  std::string name_, prefix_;
  std::shared_ptr<const std::string> bytes_;
  std::shared_ptr<ZipArchive> zip_;  // holds bytes_ too; inflated entries live here
  PickleDocument doc_;
};

// Reads and checks a whole file; the form is told by content, not by name. UserError (one line
// naming the file) when it is not a PyTorch file, is corrupt, or exceeds a limit.
TorchFile read_torch_file(const std::string& path, const TorchFileLimits& limits = {});
TorchFile read_torch_file_bytes(std::shared_ptr<const std::string> bytes, std::string name_for_errors,
                                const TorchFileLimits& limits = {});

// Flattens a value tree in file order: dict keys (str and int) and list/tuple indices join with
// '.', objects contribute their BUILD state (TorchScript modules: parameters and buffers as
// attributes; a pickled nn.Module: its _parameters, _buffers and _modules without those names),
// non-tensor leaves are skipped. A tensor reached twice (tied weights) appears under both names.
std::vector<NamedTensor> named_tensors(const Value& root, const std::string& name_for_errors,
                                       const TorchFileLimits& limits = {}, std::shared_ptr<const void> owner = nullptr);
TensorRef tensor_ref(const Value& tensor, std::shared_ptr<const void> owner = nullptr);  // a Kind::Tensor value

// Where the weights are: root["state_dict"], root["model_state_dict"] or root["model"] when the
// root is a dict holding one of them (a dict or an object), else the root itself.
const Value& find_state_dict(const Value& root);
// The weights of a file: find_state_dict, flattened, with a "module." prefix (DataParallel)
// removed when every name has it. UserError when there are no tensors or a name repeats.
std::vector<NamedTensor> state_dict_tensors(const TorchFile& file, const TorchFileLimits& limits = {});

}  // namespace unravel::interop
