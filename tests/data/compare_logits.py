#!/usr/bin/env python3
"""Loads an `unravel export` file strictly into torchvision (torchvision names) or into
python/unravel_models.py (unravel names), runs it on a tensors file and compares its logits with
logits unravel wrote (`unravel eval --logits`). Prints JSON: {"strict": true, "max_abs_diff": x,
"max_logit": y, "argmax_agree": n, "n": N}.

usage: compare_logits.py EXPORT.pt TENSORS.pt UNRAVEL_LOGITS.pt
"""
import json
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import unravel_models  # noqa: E402


def main():
    weights, tensors, theirs = sys.argv[1:4]
    with open(weights + ".json") as f:
        meta = json.load(f)
    if meta["names"] == "torchvision":
        model = getattr(torchvision.models, meta["arch"])(num_classes=meta["num_classes"])
    else:
        model = unravel_models.from_sidecar(weights + ".json")
    model.load_state_dict(torch.load(weights), strict=True)
    model.eval()
    x = torch.load(tensors)["images"]
    with torch.no_grad():
        mine = model(x)
    other = torch.load(theirs)["logits"]
    print(json.dumps({"strict": True, "max_abs_diff": float((mine - other).abs().max()),
                      "max_logit": float(mine.abs().max()),
                      "argmax_agree": int((mine.argmax(1) == other.argmax(1)).sum()), "n": len(x)}))


if __name__ == "__main__":
    main()
