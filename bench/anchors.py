#!/usr/bin/python3
"""PyTorch anchors for bench/speed.sh: the same networks (python/unravel_models.py) and the same
Fashion-MNIST images as unravel, written the way a careful PyTorch user would. Prints one JSON
object per line.

  anchors.py [--device cpu|cuda] lesion --weights FILE.pt [--images N] [--threads T] [--batch-size 250] [--no-fold]
      single-deletion sweep (intact + each block deleted alone) of an `unravel export` file on the
      first N test images, eval mode, torch.inference_mode(): once with one full forward per plan
      ("reference") and once caching the activation before every block and recomputing only the
      suffix after the deleted block ("prefix"). Reports wall and CPU seconds and the correct
      answers per plan.
  anchors.py train [--models preresnet20,...] [--steps S] [--warmup W] [--threads T]
      eager training steps at batch 128 (SGD lr 0.1, momentum 0.9, weight decay 1e-4) on the
      first (W+S)*128 training images; images per wall and per CPU second over the S steps after
      W warm-up steps.

Run with /usr/bin/python3 (Debian's python3-torch 1.13, the libtorch unravel links against).
--device cuda (bench/gpu.sh) puts the network and the images on the GPU before the clock starts;
every timed stretch ends with torch.cuda.synchronize(). --precision bf16 (before the job) runs the
lesion sweep with bfloat16 weights and activations in channels_last (unravel's `--precision bf16`
evaluation copy) and the training forward under torch.autocast(dtype=torch.bfloat16) (unravel's
`train --precision bf16`).
"""
import argparse
import ctypes
import gzip
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import unravel_models  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
INT_MAX = 2**31 - 1


def keep_freed_memory():
    """What unravel does at start (src/core/util.cpp keep_freed_memory): glibc's malloc serves
    large blocks from the heap (M_MMAP_MAX 0) and never trims it (M_TRIM_THRESHOLD INT_MAX), so
    activation tensors reuse freed memory instead of being mmap()ed and page-faulted each time.
    As in unravel, any glibc.malloc.* in GLIBC_TUNABLES wins. Returns whether it was applied."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, INT_MAX))


def read_idx(path, want_dims):
    """A gzip'd (or plain) IDX file of unsigned bytes as a uint8 tensor, its header checked."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8 or raw[3] != want_dims:
        raise SystemExit(f"anchors.py: {path}: not an IDX file of {want_dims}-d unsigned bytes")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(want_dims)]
    count = 1
    for d in dims:
        count *= d
    if len(raw) != 4 + 4 * want_dims + count:
        raise SystemExit(f"anchors.py: {path}: header says {dims}, file holds {len(raw)} bytes")
    return torch.frombuffer(bytearray(raw[4 + 4 * want_dims:]), dtype=torch.uint8).reshape(dims)


def load_split(data_dir, split, limit):
    """First `limit` images (N x 1 x 28 x 28 uint8) and labels (int64) of Fashion-MNIST."""
    prefix = "t10k" if split == "test" else "train"

    def find(stem):
        for name in (stem + ".gz", stem):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise SystemExit(f"anchors.py: {data_dir}: no {stem}[.gz]")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"), 3)
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"), 1)
    if limit > images.shape[0]:
        raise SystemExit(f"anchors.py: {data_dir}: {split} has {images.shape[0]} images, {limit} asked")
    return images[:limit].unsqueeze(1).contiguous(), labels[:limit].long()


def normalise(images_u8, mean, std):
    """torchvision's ToTensor + Normalize in float32, as unravel's Normalizer::apply."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images_u8.float().div_(255)).sub_(m).div_(s)


# ---- lesion --------------------------------------------------------------------------------------

class EvalBlock:
    """A pre-activation block for evaluation, bn2 folded into conv1 when `fold` (as unravel
    folds it: bn1 follows the previous block's sum and has nothing to fold into)."""

    def __init__(self, block, fold):
        if not isinstance(block, unravel_models._PreAct):
            raise SystemExit("anchors.py lesion: only preresnetN networks (pre-activation blocks)")
        self.b = block
        self.conv1 = fuse_conv_bn_eval(block.conv1, block.bn2) if fold else torch.nn.Sequential(block.conv1, block.bn2)
        self.scale = block.scale

    def __call__(self, x):
        h = F.relu(self.b.bn1(x))
        r = self.b.conv2(F.relu(self.conv1(h)))
        return self.b._sc(self.b, x) + (r if self.scale == 1.0 else r * self.scale)

    def deleted(self, x):  # the block runs its shortcut only
        return self.b._sc(self.b, x)


def load_network(weights):
    for path in (weights, weights + ".json"):
        if not os.path.isfile(path):
            raise SystemExit(f"anchors.py: {path}: no such file (write it with `unravel export`)")
    model = unravel_models.from_sidecar(weights + ".json")
    model.load_state_dict(torch.load(weights), strict=True)
    model.eval()
    with open(weights + ".json") as f:
        meta = json.load(f)
    return model, meta


def sweep_reference(model, blocks, batches):
    """One full forward per plan: plan 0 intact, plan i deletes block i."""
    correct = [0] * (len(blocks) + 1)
    for x, y in batches:
        for p in range(len(blocks) + 1):
            h = model.stem(x)
            for i, b in enumerate(blocks, start=1):
                h = b.deleted(h) if i == p else b(h)
            correct[p] += int((model.head(h).argmax(1) == y).sum())
    return correct


def sweep_prefix(model, blocks, batches):
    """The intact forward keeps the input of every block; deleting block i restarts from it."""
    correct = [0] * (len(blocks) + 1)
    for x, y in batches:
        h = model.stem(x)
        inputs = []
        for b in blocks:
            inputs.append(h)
            h = b(h)
        correct[0] += int((model.head(h).argmax(1) == y).sum())
        for i, b in enumerate(blocks, start=1):
            h = b.deleted(inputs[i - 1])
            for later in blocks[i:]:
                h = later(h)
            correct[i] += int((model.head(h).argmax(1) == y).sum())
    return correct


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_lesion(a):
    model, meta = load_network(a.weights)
    model.to(a.device)
    blocks = [EvalBlock(b, not a.no_fold) for b in model.blocks.values()]
    images, labels = load_split(a.data, "test", a.images)
    x = normalise(images, meta["mean"], meta["std"])
    if a.precision == "bf16":  # as unravel's bf16 evaluation copy: weights and activations, channels_last
        bf16 = dict(dtype=torch.bfloat16, memory_format=torch.channels_last)
        model.to(**bf16)
        for b in blocks:
            b.conv1.to(**bf16)
        x = x.to(**bf16)
    batches = [(x[i:i + a.batch_size].to(a.device), labels[i:i + a.batch_size].to(a.device))
               for i in range(0, a.images, a.batch_size)]
    engines = {"reference": sweep_reference, "prefix": sweep_prefix}
    with torch.inference_mode():
        for name in a.engines.split(","):
            if name not in engines:
                raise SystemExit(f"anchors.py lesion: --engines: unknown engine {name!r} (reference, prefix)")
            sync(a.device)
            t0, c0 = time.perf_counter(), time.process_time()
            correct = engines[name](model, blocks, batches)
            sync(a.device)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(json.dumps({"job": "lesion", "side": "pytorch", "engine": name, "model": meta["arch"],
                              "images": a.images, "plans": len(correct), "batch_size": a.batch_size,
                              "fold_batchnorm": not a.no_fold, "threads": torch.get_num_threads(),
                              "precision": a.precision,
                              "device": str(a.device),
                              "seconds": seconds, "cpu_seconds": cpu, "correct": correct}), flush=True)


# ---- training ------------------------------------------------------------------------------------

def run_train(a):
    total = (a.warmup + a.steps) * a.batch_size
    images, labels = load_split(a.data, "train", total)
    f = images.float().div_(255)
    x = normalise(images, [float(f.mean())], [float(f.std())])  # fitted on these images, as unravel
    batches = [(x[i:i + a.batch_size].to(a.device), labels[i:i + a.batch_size].to(a.device))
               for i in range(0, total, a.batch_size)]
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = unravel_models.Network(name, num_classes=10, in_channels=1).to(a.device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        t0 = None
        seen = correct = 0
        for step, (bx, by) in enumerate(batches):
            if step == a.warmup:
                sync(a.device)
                t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(a.device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
                logits = model(bx)
            loss = F.cross_entropy(logits.float(), by)
            loss.backward()
            opt.step()
            loss_v = loss.item()  # what unravel's trainer reads each step: the loss and the hits
            correct += int((logits.argmax(1) == by).sum())
            seen += len(by)
        sync(a.device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"job": "train", "side": "pytorch", "model": name, "batch_size": a.batch_size,
                          "device": str(a.device), "precision": a.precision,
                          "warmup": a.warmup, "steps": a.steps, "threads": torch.get_num_threads(),
                          "seconds": seconds, "images_per_s": a.steps * a.batch_size / seconds,
                          "cpu_seconds": cpu, "images_per_cpu_s": a.steps * a.batch_size / cpu,
                          "last_loss": loss_v, "train_error": 1 - correct / seen}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="Fashion-MNIST directory (IDX files)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: lesion in bfloat16 weights and activations (channels_last), training under "
                         "torch.autocast(dtype=torch.bfloat16)")
    sub = ap.add_subparsers(dest="job", required=True)
    le = sub.add_parser("lesion")
    le.add_argument("--weights", required=True, help="`unravel export` file (its .json beside it)")
    le.add_argument("--images", type=int, default=1000)
    le.add_argument("--batch-size", type=int, default=250)
    le.add_argument("--engines", default="reference,prefix")
    le.add_argument("--no-fold", action="store_true", help="keep bn2 apart from conv1")
    tr = sub.add_parser("train")
    tr.add_argument("--models", default="preresnet20,preresnet56,preresnet110")
    tr.add_argument("--steps", type=int, default=20)
    tr.add_argument("--warmup", type=int, default=3)
    tr.add_argument("--batch-size", type=int, default=128)
    a = ap.parse_args()
    for name in ("threads", "images", "batch_size", "steps"):
        if getattr(a, name, 1) < 1:
            raise SystemExit(f"anchors.py: --{name.replace('_', '-')} must be >= 1")
    if getattr(a, "warmup", 0) < 0:
        raise SystemExit("anchors.py: --warmup must be >= 0")
    try:
        a.device = torch.device(a.device)
    except RuntimeError:
        raise SystemExit(f"anchors.py: --device {a.device!r}: expected cpu or cuda")
    if a.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("anchors.py: --device cuda: this PyTorch sees no CUDA device")
    if a.device.type not in ("cpu", "cuda"):
        raise SystemExit(f"anchors.py: --device {a.device}: expected cpu or cuda")
    malloc = keep_freed_memory()
    torch.set_num_threads(a.threads)
    print(json.dumps({"job": "setup", "side": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "device": str(a.device), "cuda": torch.version.cuda, "keep_freed_memory": malloc, "MALLOC_MMAP_MAX_": os.environ.get("MALLOC_MMAP_MAX_"),
                      "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_")}), flush=True)
    run_lesion(a) if a.job == "lesion" else run_train(a)


if __name__ == "__main__":
    main()
