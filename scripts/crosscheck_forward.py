#!/usr/bin/python3
"""Cross-check of unravel's networks against an independent PyTorch forward.

Usage: crosscheck_forward.py DIR
DIR holds case.json ({"model", "shortcut", "plans": [{"text", "order", "deleted", "scales"}]}),
weights.pt (unravel checkpoint: "param.*"/"buffer.*"), input.pt ({"x": (B,C,H,W) float64}) and
logits.pt ({"logits.<i>": (B,K)} for plan i). Exits 0 when every plan's logits agree to 1e-10.
"""
import json
import re
import sys

import torch
import torch.nn.functional as F


def load_dict(path):
    obj = torch.load(path)
    return {k: v for k, v in obj.items()}


def bn(sd, prefix, x):
    return F.batch_norm(x, sd[f"buffer.{prefix}.running_mean"], sd[f"buffer.{prefix}.running_var"],
                        sd[f"param.{prefix}.weight"], sd[f"param.{prefix}.bias"], training=False, eps=1e-5)


def conv(sd, prefix, x, stride):
    w = sd[f"param.{prefix}.weight"]
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)


def shortcut(sd, b, x, in_c, out_c, stride, kind):
    if in_c == out_c and stride == 1:
        return x
    if kind == "B" and f"param.blocks.{b}.shortcut_conv.weight" in sd:
        return bn(sd, f"blocks.{b}.shortcut_bn", conv(sd, f"blocks.{b}.shortcut_conv", x, stride))
    y = x[:, :, ::stride, ::stride]
    return F.pad(y, (0, 0, 0, 0, 0, out_c - in_c))


def block_fns(sd, family, b, in_c, out_c, stride, kind):
    """(shortcut, residual, post) of block b, written from the papers' definitions."""
    p = f"blocks.{b}"
    if family == "preresnet":
        def residual(x):
            h = F.relu(bn(sd, f"{p}.bn1", x))
            h = F.relu(bn(sd, f"{p}.bn2", conv(sd, f"{p}.conv1", h, stride)))
            return conv(sd, f"{p}.conv2", h, 1)
        post = lambda y: y
    else:
        def residual(x):
            h = F.relu(bn(sd, f"{p}.bn1", conv(sd, f"{p}.conv1", x, stride)))
            return bn(sd, f"{p}.bn2", conv(sd, f"{p}.conv2", h, 1))
        post = F.relu
    sc = lambda x: shortcut(sd, b, x, in_c, out_c, stride, "A" if family == "plain" else kind)
    return sc, residual, post


def main(d):
    case = json.load(open(f"{d}/case.json"))
    sd = load_dict(f"{d}/weights.pt")
    x = load_dict(f"{d}/input.pt")["x"]
    want = load_dict(f"{d}/logits.pt")
    family, depth = re.match(r"(resnet|preresnet|plain)(\d+)", case["model"]).groups()
    n = (int(depth) - 2) // 6
    blocks, c = {}, 16
    for stage in range(3):
        out_c = 16 << stage
        for j in range(n):
            b = stage * n + j + 1
            blocks[b] = block_fns(sd, family, b, c, out_c, 2 if stage > 0 and j == 0 else 1, case["shortcut"])
            c = out_c
    worst = 0.0
    for i, plan in enumerate(case["plans"]):
        h = conv(sd, "stem.conv", x, 1)
        if family != "preresnet":
            h = F.relu(bn(sd, "stem.bn", h))
        for b, deleted, scale in zip(plan["order"], plan["deleted"], plan["scales"]):
            sc, res, post = blocks[b]
            if deleted:
                h = post(sc(h))
            elif family == "plain":
                h = post(scale * res(h))
            else:
                h = post(sc(h) + scale * res(h))
        if family == "preresnet":
            h = F.relu(bn(sd, "head.bn", h))
        logits = F.linear(h.mean((2, 3)), sd["param.head.fc.weight"], sd["param.head.fc.bias"])
        err = (logits - want[f"logits.{i}"]).abs().max().item()
        worst = max(worst, err)
        print(f"{case['model']} shortcut {case['shortcut']} plan '{plan['text']}': max |diff| {err:.3g}")
    if worst > 1e-10:
        print(f"FAILED: max difference {worst:.3g} > 1e-10")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
