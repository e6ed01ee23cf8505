#!/usr/bin/env python3
"""Fixtures for the import tests: a torchvision ResNet with seeded random weights and random
batch-norm statistics, saved in every form unravel imports, a tensors file of images, and what
torchvision computes on them: correct count and mean loss of the intact network and of every
single-block deletion (block j replaced by relu(shortcut(x)), torchvision's post-activation rule).

usage: torchvision_fixtures.py ARCH OUT_DIR [--size S] [--images N] [--seed K] [--forms F,...]
Writes OUT_DIR/{sd.pt, nested.pt, script.pt, traced.pt, legacy.pt} (the forms asked for),
tensors.pt and expected.json. Images whose top-2 logit margin is below 1e-3 under any plan are
left out, so that the correct counts cannot flip on summation order (float32 rounding moves
logits by ~1e-6 here).
"""
import argparse
import collections
import json

import torch
import torchvision


class Deleted(torch.nn.Module):
    """A post-activation block deleted: relu(shortcut(x))."""

    def __init__(self, block):
        super().__init__()
        self.downsample = block.downsample

    def forward(self, x):
        return torch.relu(self.downsample(x) if self.downsample is not None else x)


def blocks_of(model):
    return [(name, i) for name in ("layer1", "layer2", "layer3", "layer4") for i in range(len(getattr(model, name)))]


def with_deleted(model, j):
    """A copy of model's forward with block j (1-based, torchvision order) deleted."""
    name, i = blocks_of(model)[j - 1]
    layer = getattr(model, name)
    saved = layer[i]
    layer[i] = Deleted(saved)
    return name, i, saved


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(0, 1000, (1,), generator=g)))
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)


def evaluate(model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct = int((logits.argmax(1) == y).sum())
    return correct, loss, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--forms", default="sd,nested,legacy,script,traced")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.arch)(num_classes=a.classes)
    randomize(model, a.seed)
    model.eval()
    sd = model.state_dict()
    forms = a.forms.split(",")
    if "sd" in forms:
        torch.save(sd, f"{a.out}/sd.pt")
    if "nested" in forms:
        nested = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
        torch.save({"epoch": 3, "arch": a.arch, "state_dict": nested, "best_acc1": torch.tensor(0.5)},
                   f"{a.out}/nested.pt")
    if "legacy" in forms:
        torch.save(sd, f"{a.out}/legacy.pt", _use_new_zipfile_serialization=False)
    if "script" in forms:
        torch.jit.save(torch.jit.script(model), f"{a.out}/script.pt")

    n = len(blocks_of(model))
    candidates = torch.randn(3 * a.images, 3, a.size, a.size)
    labels = torch.randint(0, a.classes, (3 * a.images,))
    keep = torch.ones(len(candidates), dtype=torch.bool)
    for j in range(0, n + 1):
        if j > 0:
            name, i, saved = with_deleted(model, j)
        with torch.no_grad():
            top2 = model(candidates).topk(2, dim=1).values
        keep &= (top2[:, 0] - top2[:, 1]) > 1e-3
        if j > 0:
            getattr(model, name)[i] = saved
    x, y = candidates[keep][: a.images].contiguous(), labels[keep][: a.images].contiguous()
    assert len(x) == a.images, "not enough well-separated images"
    if "traced" in forms:
        torch.jit.save(torch.jit.trace(model, x[:2]), f"{a.out}/traced.pt")
    torch.save({"images": x, "labels": y}, f"{a.out}/tensors.pt")

    expected = {"arch": a.arch, "blocks": n, "images": len(x), "plans": {}}
    c, l, logits = evaluate(model, x, y)
    expected["plans"]["intact"] = {"correct": c, "loss": l / len(x)}
    for j in range(1, n + 1):
        name, i, saved = with_deleted(model, j)
        c, l, _ = evaluate(model, x, y)
        getattr(model, name)[i] = saved
        expected["plans"][f"delete={j}"] = {"correct": c, "loss": l / len(x)}
    expected["logits"] = logits.tolist()
    with open(f"{a.out}/expected.json", "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
