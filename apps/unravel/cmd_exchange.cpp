// unravel import / export: networks in from PyTorch and out to it (src/pytorch/exchange.h).
#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/errors.h"
#include "core/output.h"
#include "core/run_dir.h"
#include "core/util.h"
#include "pytorch/exchange.h"

namespace unravel::cli {

namespace {

const char* kImportHelp = R"(
Reads: torch.save(model.state_dict()) (zip format, or the legacy format), a dict holding the
weights under "state_dict", "model" or "model_state_dict" (extra entries such as the epoch or the
optimiser are ignored), names with DataParallel's "module." prefix, and TorchScript archives
(torch.jit.save of a scripted or traced model). Nothing in the file is executed: it is parsed
and checked (structure, CRC-32, every tensor inside its storage) before it is used.
--arch: torchvision's resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2,
wide_resnet101_2, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d (torchvision's parameter
names; blocks numbered from 1 in torchvision's order: layer1.0 is block 1), or unravel's own
families (resnetN, preresnetN, plainN, resnet200, preresnet50-200: the names `unravel export`
writes; FILE.json next to the file, written by export, supplies input shape, normalisation and
residual scales). Post-activation blocks (torchvision's) delete to relu(shortcut(x)).
The run directory holds config.json (source file, format, fingerprint), checkpoint.pt and
summary.json; give the images with --data when using it (tensors:FILE, imagefolder:DIR, ...).)";

}  // namespace

void add_import_command(CLI::App& app) {
  auto o = std::make_shared<pytorch::ImportOptions>();
  auto input = std::make_shared<std::string>();
  auto json_path = std::make_shared<std::string>();
  auto* c = app.add_subcommand("import", "a PyTorch / torchvision network into a run directory");
  c->footer(kImportHelp);
  c->add_option("--weights", o->weights, "the PyTorch file")->required();
  c->add_option("--arch", o->arch, "architecture: torchvision's name or an unravel family")->required();
  c->add_option("--out", o->out, "run directory to create")->required();
  c->add_option("--classes", o->classes, "classes (default: the rows of the file's last layer)");
  c->add_option("--input", *input, "input shape CxHxW (default 3x224x224 for ImageNet-style nets)");
  c->add_option("--mean", o->mean, "per-channel mean in [0,1] units, e.g. 0.485,0.456,0.406 (default ImageNet's)")
      ->delimiter(',');
  c->add_option("--std", o->std, "per-channel std, e.g. 0.229,0.224,0.225 (default ImageNet's)")->delimiter(',');
  c->add_option("--shortcut", o->shortcut, "unravel families: A or B (default: B when the file has projections)");
  c->add_option("--json", *json_path, "write {run, arch, format, tensors, config} to FILE ('-': stdout)");
  c->callback([o, input, json_path] {
    if (!input->empty()) o->input = parse_input_shape(*input);
    if (!json_path->empty()) check_output_path(*json_path, "--json");
    const pytorch::ImportResult r = pytorch::import_network(*o);
    const auto& n = r.config.network;
    std::cout << fmt::format("{}: {} from {} ({}, {} tensors): {} blocks, {} parameters, {} classes, input {}x{}x{}\n",
                             o->out, o->arch, o->weights, r.format, r.tensors, n.num_blocks, n.num_parameters,
                             n.num_classes, n.in_channels, n.height, n.width);
    if (!json_path->empty())
      write_output_file(*json_path,
                        nlohmann::json{{"schema_version", kRunSchemaVersion}, {"run", o->out}, {"arch", o->arch},
                                       {"format", r.format}, {"tensors", r.tensors}, {"config", r.config}}
                                .dump(2) + "\n",
                        "--json");
  });
}

void add_export_command(CLI::App& app) {
  auto run = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* c = app.add_subcommand("export", "a run's weights as a PyTorch state_dict (and FILE.json)");
  c->footer(R"(
Writes a dict of float32 tensors in PyTorch's zip format. torchvision architectures use
torchvision's names: torchvision.models.NAME(num_classes=K).load_state_dict(torch.load(FILE))
accepts it strictly. Other families use unravel's names; python/unravel_models.py builds them
(build_model(FILE.json) then load_state_dict(torch.load(FILE))). FILE.json records the
architecture, classes, input shape, normalisation, residual scales and the checkpoint.)");
  c->add_option("--run", *run, "run directory")->required();
  c->add_option("--out", *out, "state_dict file to write")->required();
  c->callback([run, out] {
    const pytorch::ExportResult r = pytorch::export_network(*run, *out);
    std::cout << fmt::format("{}: {} tensors ({} names); {}\n", *out, r.tensors, r.names, r.sidecar);
  });
}

}  // namespace unravel::cli
