"""unravel's network families in plain PyTorch, with unravel's parameter names, so that a file
written by `unravel export` loads strictly:

    import json, torch, unravel_models
    model = unravel_models.from_sidecar("model.pt.json")      # written by unravel export
    model.load_state_dict(torch.load("model.pt"), strict=True)
    model.eval()

Families: preresnetN, resnetN, plainN (N = 6n+2; 3x3 stem, 16/32/64 channels), preresnet50/101/
152/200 and resnet200 (ImageNet-style bottlenecks). torchvision's architectures export with
torchvision's names: use torchvision.models.NAME(num_classes=K) for those. Only torch is needed.

The forward pass is the intact network with the run's test-time residual scales (stochastic
depth, short-path training): y = post(shortcut(x) + scale * residual(x)).
"""
import json
import re

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin, cout, k, stride, groups=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


class _Shortcut:
    """Identity, option A (subsample, zero channels appended) or B (1x1 conv + BN, registered on
    the block itself as shortcut_conv / shortcut_bn, as unravel names them)."""

    def __init__(self, owner, cin, cout, stride, kind):
        self.identity = cin == cout and stride == 1
        self.projection = not self.identity and kind == "B"
        self.stride, self.cout = stride, cout
        if self.projection:
            owner.shortcut_conv = _conv(cin, cout, 1, stride)
            owner.shortcut_bn = nn.BatchNorm2d(cout)

    def __call__(self, owner, x):
        if self.identity:
            return x
        if self.projection:
            return owner.shortcut_bn(owner.shortcut_conv(x))
        y = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        extra = self.cout - x.shape[1]
        return F.pad(y, (0, 0, 0, 0, 0, extra)) if extra > 0 else y


class _Basic(nn.Module):
    """Post-activation basic block (resnetN), or the plain block (plainN: no skip)."""

    def __init__(self, cin, cout, stride, shortcut, skip):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self._sc = _Shortcut(self, cin, cout, stride, shortcut if skip else "A")
        self.skip, self.scale = skip, 1.0

    def forward(self, x):
        r = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) * self.scale
        return torch.relu(self._sc(self, x) + r if self.skip else r)


class _PreAct(nn.Module):
    """Pre-activation basic block (preresnetN): BN-ReLU-conv-BN-ReLU-conv, identity after the sum."""

    def __init__(self, cin, cout, stride, shortcut):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3, 1)
        self._sc = _Shortcut(self, cin, cout, stride, shortcut)
        self.scale = 1.0

    def forward(self, x):
        h = torch.relu(self.bn1(x))
        h = torch.relu(self.bn2(self.conv1(h)))
        return self._sc(self, x) + self.conv2(h) * self.scale


class _Bottleneck(nn.Module):
    """1x1 reduce, 3x3 with the stride, 1x1 expand; post- or pre-activation (bn0 before conv1)."""

    def __init__(self, cin, width, cout, stride, shortcut, preact):
        super().__init__()
        self.preact = preact
        if preact:
            self.bn0 = nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, width, 1, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, cout, 1, 1)
        if not preact:
            self.bn3 = nn.BatchNorm2d(cout)
        self._sc = _Shortcut(self, cin, cout, stride, shortcut)
        self.scale = 1.0

    def forward(self, x):
        h = torch.relu(self.bn0(x)) if self.preact else x
        h = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(self.bn2(self.conv2(h)))
        r = self.conv3(h) if self.preact else self.bn3(self.conv3(h))
        y = self._sc(self, x) + r * self.scale
        return y if self.preact else torch.relu(y)


class _Stem(nn.Module):
    def __init__(self, cin, cout, imagenet, with_bn):
        super().__init__()
        self.conv = _conv(cin, cout, 7 if imagenet else 3, 2 if imagenet else 1)
        if with_bn:
            self.bn = nn.BatchNorm2d(cout)
        self.imagenet, self.with_bn = imagenet, with_bn

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))) if self.with_bn else self.conv(x)
        return F.max_pool2d(h, 3, 2, 1) if self.imagenet else h


class _Head(nn.Module):
    def __init__(self, channels, classes, preact):
        super().__init__()
        if preact:
            self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, classes)
        self.preact = preact

    def forward(self, h):
        x = torch.relu(self.bn(h)) if self.preact else h
        return self.fc(x.mean(dim=(2, 3)))


class Network(nn.Module):
    def __init__(self, arch, num_classes=10, in_channels=3, shortcut=None, residual_scales=None):
        super().__init__()
        m = re.fullmatch(r"(resnet|preresnet|plain)([0-9]+)", arch)
        if not m:
            raise ValueError(f"unknown architecture {arch!r} (torchvision's: use torchvision.models)")
        family, depth = m.group(1), int(m.group(2))
        preact, skip = family == "preresnet", family != "plain"
        bottleneck = family != "plain" and depth in (50, 101, 152, 200)
        if bottleneck and family == "resnet" and depth != 200:
            raise ValueError(f"{arch} is torchvision's: use torchvision.models.{arch}")
        shortcut = shortcut or ("B" if bottleneck else "A")
        blocks = []
        if bottleneck:
            per_stage = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}[depth]
            self.stem = _Stem(in_channels, 64, imagenet=True, with_bn=True)
            c = 64
            for s, count in enumerate(per_stage):
                planes = 64 << s
                for j in range(count):
                    blocks.append(_Bottleneck(c, planes, 4 * planes, 2 if s > 0 and j == 0 else 1, shortcut, preact))
                    c = 4 * planes
        else:
            if depth < 8 or (depth - 2) % 6:
                raise ValueError(f"{arch}: depth must be 6n+2")
            n = (depth - 2) // 6
            self.stem = _Stem(in_channels, 16, imagenet=False, with_bn=not preact)
            c = 16
            for s in range(3):
                out = 16 << s
                for j in range(n):
                    stride = 2 if s > 0 and j == 0 else 1
                    blocks.append(_PreAct(c, out, stride, shortcut) if preact else _Basic(c, out, stride, shortcut, skip))
                    c = out
        self.blocks = nn.ModuleDict({str(i + 1): b for i, b in enumerate(blocks)})
        self.head = _Head(c, num_classes, preact)
        if residual_scales:
            if len(residual_scales) != len(blocks):
                raise ValueError(f"{len(residual_scales)} residual scales for {len(blocks)} blocks")
            for b, s in zip(blocks, residual_scales):
                b.scale = float(s)

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks.values():
            h = b(h)
        return self.head(h)


def from_sidecar(path):
    """The network FILE.json (written by `unravel export`) describes, untrained."""
    with open(path) as f:
        meta = json.load(f)
    return Network(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["input"][0],
                   shortcut=meta.get("shortcut"), residual_scales=meta.get("residual_scales") or None)
