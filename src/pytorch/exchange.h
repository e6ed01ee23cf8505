// Networks in and out of PyTorch. `unravel import` turns a PyTorch file (torch.save of a
// state_dict, plain or nested under "state_dict" / "model" / "model_state_dict", with or without
// DataParallel's "module." prefix; TorchScript archives; the legacy non-zip format) into a run
// directory that every command takes; `unravel export` writes a run's weights as a state_dict
// that torchvision (or python/unravel_models.py) loads strictly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/run_dir.h"

namespace unravel::pytorch {

struct ImportOptions {
  std::string weights;           ///< the PyTorch file
  std::string arch;              ///< torchvision's name (resnet50, ...) or an unravel family
  std::string out;               ///< run directory to create
  int64_t classes = 0;           ///< 0: from the file (the last layer's rows)
  std::vector<int64_t> input;    ///< {C, H, W}; empty: 3x224x224 for ImageNet-style nets,
                                 ///< else C from the file and 32x32
  std::vector<double> mean, std; ///< normalisation; empty: ImageNet's (torchvision's transforms)
  std::string shortcut;          ///< unravel families: "" = from the file (projections present: B)
};

struct ImportResult {
  RunConfig config;
  std::string format;     ///< zip | torchscript | legacy
  size_t tensors = 0;     ///< tensors taken from the file
  bool stripped_module_prefix = false;
};

// Reads, checks and writes the run directory (config.json, checkpoint.pt, summary.json). One
// UserError line for: a file without tensors, a missing or unexpected tensor (naming it, with
// both shapes for a wrong shape), an architecture the names do not fit (with the --arch values
// that exist, and the one that fits when one does), an --out that holds something.
ImportResult import_network(const ImportOptions& o);

struct ExportResult {
  std::string names;      ///< "torchvision" or "unravel"
  size_t tensors = 0;
  std::string sidecar;    ///< FILE.json: architecture, classes, input, normalisation, scales
};
// Writes the run's weights to `out` (a dict of tensors, zip format, float32) and FILE.json.
ExportResult export_network(const std::string& run_dir, const std::string& out);

}  // namespace unravel::pytorch
