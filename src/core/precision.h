// The arithmetic a command computes in: one closed set shared by evaluation (engine/engine.h
// make_eval_copy), lesion sweeps and training (engine/compute.h MixedPrecision). Torch-free.
//
// FP32: float32 everywhere (the default; the prefix and reference engines give bit-identical
// logits, training is reproducible to the bit for a seed and thread count).
// BF16: bfloat16 where it pays. Evaluation copies hold bfloat16 weights, batch-norm statistics
// and activations in channels_last; training keeps float32 master weights, momentum and loss and
// runs convolutions and the classifier in bfloat16 (autocast, as torch.autocast). oneDNN's
// AVX512_BF16 kernels on CPUs that have them, tensor cores on GPUs. About 3 significant digits,
// so a few images near a decision boundary may change class.
#pragma once
#include <string>

namespace unravel {

enum class Precision { FP32, BF16 };
Precision parse_precision(const std::string& name, const std::string& option = "--precision");  // "fp32" | "bf16"
const char* precision_name(Precision p);

}  // namespace unravel
