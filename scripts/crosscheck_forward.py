#!/usr/bin/python3
"""Cross-check of unravel's networks against an independent PyTorch forward.

Usage: crosscheck_forward.py DIR
DIR holds case.json ({"model", "shortcut", "plans": [{"text", "order", "deleted", "scales"}]}),
weights.pt (unravel checkpoint: "param.*"/"buffer.*"), input.pt ({"x": (B,C,H,W) float64}) and
logits.pt ({"logits.<i>": (B,K)} for plan i). A plan is explicit data written by the test:
"order" the blocks in the order they run (a repeat runs a block again), "deleted" the blocks
whose every step runs its shortcut only, "scales" {"block": residual scale} (default 1). Its
"text" is read here by a small parser of our own and must give the same data. Prints one line
per plan; exits 0 when every plan's logits agree to 1e-10.
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


def index_list(text):
    """'1-3,5,6-4' -> [1, 2, 3, 5, 6, 5, 4]"""
    out = []
    for item in text.split(","):
        if "-" in item[1:]:
            a, b = (int(v) for v in item.split("-", 1))
            out += list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))
        else:
            out.append(int(item))
    return out


def parse_plan(text, n):
    """The text form of README "Execution plans", clauses applied left to right to steps
    [block, deleted, scale]; returns the explicit data {"order", "deleted", "scales"}."""
    steps = [[b, False, 1.0] for b in range(1, n + 1)]
    for clause in re.split(r"[\s;]+", text.strip()):
        if clause in ("", "intact"):
            continue
        key, value = clause.split("=", 1)
        if key == "order":
            old = {}
            for s in steps:
                old.setdefault(s[0], s)
            steps = [[b] + old.get(b, [b, False, 1.0])[1:] for b in index_list(value)]
        elif key == "swap":
            for pair in value.split(","):
                a, b = (int(v) for v in pair.split(":"))
                ia = next(i for i, s in enumerate(steps) if s[0] == a)
                ib = next(i for i, s in enumerate(steps) if s[0] == b)
                steps[ia], steps[ib] = steps[ib], steps[ia]
        elif key == "duplicate":
            for b in index_list(value):
                i = next(i for i, s in enumerate(steps) if s[0] == b)
                steps.insert(i + 1, list(steps[i]))
        elif key == "delete":
            for b in index_list(value):
                for s in steps:
                    if s[0] == b:
                        s[1] = True
        elif key == "scale":
            for item in value.split(","):
                b, v = item.split(":")
                for s in steps:
                    if s[0] == int(b):
                        s[2] = float(v)
        elif key != "gate":  # gates change the backward pass only
            raise ValueError(f"unknown clause {clause!r}")
    deleted = sorted({s[0] for s in steps if s[1]})
    scales = {str(b): v for b, v in sorted({s[0]: s[2] for s in steps if s[2] != 1.0}.items())}
    return {"order": [s[0] for s in steps], "deleted": deleted, "scales": scales}


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
        explicit = {"order": plan["order"], "deleted": sorted(plan["deleted"]),
                    "scales": {b: float(v) for b, v in sorted(plan["scales"].items()) if float(v) != 1.0}}
        if parse_plan(plan["text"], 3 * n) != explicit:
            print(f"FAILED: plan '{plan['text']}' reads as {parse_plan(plan['text'], 3 * n)}, "
                  f"the test wrote {explicit}")
            return 1
        h = conv(sd, "stem.conv", x, 1)
        if family != "preresnet":
            h = F.relu(bn(sd, "stem.bn", h))
        for b in plan["order"]:
            sc, res, post = blocks[b]
            scale = float(plan["scales"].get(str(b), 1.0))
            if b in plan["deleted"]:
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
