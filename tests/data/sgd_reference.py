#!/usr/bin/python3
"""The reference of tests/test_sgd.cpp: torch.optim.SGD on the test's values.

Usage: sgd_reference.py DIR
DIR holds case.pt ({"param.<name>": initial value, "grad.<step>.<name>": the gradient of that
step; a missing gradient means the parameter has none in that step}) and case.json ({"lrs": the
learning rate of each step, "configs": [{"momentum", "weight_decay", "nesterov"}], "names"}).
Writes DIR/out.pt: {"<config>.param.<name>": final value, "<config>.momentum.<name>": the
momentum buffer torch keeps (absent without momentum)}.
"""
import json
import sys

import torch


def main(d):
    case = json.load(open(f"{d}/case.json"))
    data = torch.load(f"{d}/case.pt")
    out = {}
    for c, cfg in enumerate(case["configs"]):
        params = {n: data[f"param.{n}"].clone().requires_grad_(True) for n in case["names"]}
        opt = torch.optim.SGD(list(params.values()), lr=case["lrs"][0], momentum=cfg["momentum"],
                              dampening=0, weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"])
        for step, lr in enumerate(case["lrs"]):
            opt.zero_grad(set_to_none=True)
            for n, p in params.items():
                g = data.get(f"grad.{step}.{n}")
                p.grad = None if g is None else g.clone()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        for n, p in params.items():
            out[f"{c}.param.{n}"] = p.detach().clone()
            buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
            if buf is not None:
                out[f"{c}.momentum.{n}"] = buf.clone()
    torch.save(out, f"{d}/out.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
