#!/usr/bin/env python3
"""A tensors file of seeded random float images (already normalised) and labels:
usage: random_tensors.py OUT.pt N C H W CLASSES [SEED]"""
import sys

import torch

out, n, c, h, w, k = sys.argv[1], *map(int, sys.argv[2:7])
g = torch.Generator().manual_seed(int(sys.argv[7]) if len(sys.argv) > 7 else 0)
torch.save({"images": torch.randn(n, c, h, w, generator=g), "labels": torch.randint(0, k, (n,), generator=g)}, out)
