#!/usr/bin/python3
"""Cross-check of unravel's bf16 training forward (train --precision bf16) against torch.autocast.

Usage: crosscheck_autocast.py DIR
DIR holds case.json ({"model", "shortcut", "classes", "in_channels"}), weights.pt (unravel
checkpoint: "param.*"/"buffer.*"), batch.pt ({"x": (B,C,H,W) float32, "y": (B,) int64}) and
grads.pt: unravel's training-mode loss and gradients on that batch, in float32 ("fp32.loss",
"fp32.<param>") and under its bf16 autocast scope ("bf16.loss", "bf16.<param>").
Here the same network is built from python/unravel_models.py, given the same weights, and one
training-mode forward and backward runs plainly and under torch.autocast("cpu", torch.bfloat16).
Prints one JSON line: for each precision the largest gradient difference over all parameters,
relative to that parameter's largest gradient ("fp32", "bf16"), the same between unravel's own
fp32 and bf16 gradients ("bf16_vs_fp32": what bf16 changes), and the losses.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import unravel_models  # noqa: E402


def strip(d, prefix):
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix) and k != prefix + "loss"}


def rel_diff(a, b):
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)).item() for k in b)


def main(d):
    with open(os.path.join(d, "case.json")) as f:
        case = json.load(f)
    ck = torch.load(os.path.join(d, "weights.pt"))
    state = {**strip(ck, "param."), **strip(ck, "buffer.")}
    batch = torch.load(os.path.join(d, "batch.pt"))
    ours = torch.load(os.path.join(d, "grads.pt"))
    out = {}
    for prec in ("fp32", "bf16"):
        net = unravel_models.Network(case["model"], num_classes=case["classes"], in_channels=case["in_channels"],
                                     shortcut=case["shortcut"])
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            sys.exit(f"weights do not fit {case['model']}: missing {missing}, unexpected {unexpected}")
        net.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            logits = net(batch["x"])
        loss = F.cross_entropy(logits.float(), batch["y"])
        loss.backward()
        out[prec] = rel_diff(strip(ours, prec + "."), {n: p.grad for n, p in net.named_parameters()})
        out[prec + "_loss"] = [ours[prec + ".loss"].item(), loss.item()]
    out["bf16_vs_fp32"] = rel_diff(strip(ours, "bf16."), strip(ours, "fp32."))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
