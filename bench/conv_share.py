#!/usr/bin/python3
"""How much of careful PyTorch's time is spent in convolutions: the bound on any speed-up that
runs the same convolution kernels (Amdahl: removing everything else gains at most 1 / share).

  conv_share.py [--data DIR] [--threads 1] [--weights FILE.pt] [--images 250] [--steps 4]
      [--models preresnet20,preresnet56,preresnet110]

Profiles (torch.autograd.profiler, self CPU time per operator) the two PyTorch anchors of
bench/speed.sh (anchors.py): the prefix-cached single-deletion sweep of an `unravel export` file
(default: preresnet56 with random weights and batch norm; the split of time does not depend on
the weights) on the first N test images, and S eager training steps at batch 128 after 2 warm-up
steps for each model. Prints one JSON object per line: the share of self time in operators whose
name contains "conv", the bound 1 / share, and the largest operators.
Run with /usr/bin/python3 (Debian's python3-torch, the libtorch unravel links against).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anchors  # noqa: E402
import unravel_models  # noqa: E402  (anchors put python/ on the path)


def shares(prof, top=6):
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    conv = sum(e.self_cpu_time_total for e in rows if "conv" in e.key) / total
    return {"conv_share": round(conv, 4), "bound_same_kernels": round(1 / conv, 3),
            "top": {e.key: round(e.self_cpu_time_total / total, 4) for e in rows[:top]}}


def lesion(a):
    if a.weights:
        model, meta = anchors.load_network(a.weights)
    else:
        torch.manual_seed(0)
        model = unravel_models.Network("preresnet56", num_classes=10, in_channels=1)
        for m in model.modules():  # batch norm that is not the identity
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
        model.eval()
        meta = {"mean": [0.286], "std": [0.353], "arch": "preresnet56"}
    blocks = [anchors.EvalBlock(b, True) for b in model.blocks.values()]
    images, labels = anchors.load_split(a.data, "test", a.images)
    batch = [(anchors.normalise(images, meta["mean"], meta["std"]), labels)]
    with torch.inference_mode():
        anchors.sweep_prefix(model, blocks, batch)  # warm-up
        with torch.autograd.profiler.profile() as prof:
            anchors.sweep_prefix(model, blocks, batch)
    print(json.dumps({"job": "lesion prefix-cached", "model": meta["arch"], "images": a.images, **shares(prof)}))


def train(a):
    images, labels = anchors.load_split(a.data, "train", 128 * (a.steps + 2))
    x = anchors.normalise(images, [0.286], [0.353])
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = unravel_models.Network(name, num_classes=10, in_channels=1)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def step(i):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[i * 128:(i + 1) * 128]), labels[i * 128:(i + 1) * 128])
            loss.backward()
            opt.step()
            loss.item()

        step(0)
        step(1)
        with torch.autograd.profiler.profile() as prof:
            for i in range(2, a.steps + 2):
                step(i)
        print(json.dumps({"job": "train", "model": name, "batch_size": 128, "steps": a.steps, **shares(prof)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=anchors.DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", help="`unravel export` file for the sweep (default: random preresnet56)")
    ap.add_argument("--images", type=int, default=250)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models", default="preresnet20,preresnet56,preresnet110")
    a = ap.parse_args()
    if a.threads < 1 or a.images < 1 or a.steps < 1:
        raise SystemExit("conv_share.py: --threads, --images and --steps must be >= 1")
    anchors.keep_freed_memory()
    torch.set_num_threads(a.threads)
    lesion(a)
    train(a)


if __name__ == "__main__":
    main()
