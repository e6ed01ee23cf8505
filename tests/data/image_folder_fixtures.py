#!/usr/bin/env python3
"""An ImageFolder for the image-folder tests, written with PIL, and what torchvision makes of it.

usage: image_folder_fixtures.py DIR [--resize R --crop C]
Writes DIR/folder/{train,val}/CLASS/... (JPEG and PNG; RGB, grayscale, RGBA, palette, CMYK;
odd sizes, images smaller than the crop, a nested sub-folder, upper-case extensions, a .txt file
that is not an image), DIR/flat (the val images in one folder) with DIR/flat_labels.csv, and
DIR/expected_{train,val,flat}.pt: the tensors of torchvision's ImageFolder with
Resize(R), CenterCrop(C), ToTensor(), Normalize(ImageNet) and the labels.
"""
import argparse
import os
import shutil

import numpy as np
import torch
import torchvision.datasets as D
import torchvision.transforms as T
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def smooth(rng, h, w, c):
    """A smooth random image (resampling of noise matters little) plus some noise."""
    small = rng.random((max(2, h // 16), max(2, w // 16), c))
    img = np.array(Image.fromarray((small * 255).astype("uint8").squeeze()).resize((w, h), Image.BILINEAR))
    img = img.reshape(h, w, c).astype(np.float64) + rng.normal(0, 12, (h, w, c))
    return np.clip(img, 0, 255).astype("uint8")


def write(rng, path, w, h, mode, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "RGB":
        im = Image.fromarray(smooth(rng, h, w, 3))
    elif mode == "L":
        im = Image.fromarray(smooth(rng, h, w, 1)[:, :, 0])
    elif mode == "RGBA":
        im = Image.fromarray(np.concatenate([smooth(rng, h, w, 3), smooth(rng, h, w, 1)], axis=2), "RGBA")
    elif mode == "P":
        im = Image.fromarray(smooth(rng, h, w, 3)).convert("P", palette=Image.ADAPTIVE, colors=64)
    elif mode == "CMYK":
        im = Image.fromarray(np.concatenate([smooth(rng, h, w, 3), smooth(rng, h, w, 1)], axis=2), "CMYK")
    im.save(path, quality=90) if fmt == "JPEG" else im.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--resize", type=int, default=40)
    ap.add_argument("--crop", type=int, default=32)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    root = os.path.join(a.dir, "folder")
    shutil.rmtree(root, ignore_errors=True)
    specs = [  # (name, w, h, mode, format)
        ("a.jpg", 500, 375, "RGB", "JPEG"), ("b.JPG", 61, 47, "L", "JPEG"), ("c.png", 300, 301, "RGBA", "PNG"),
        ("d.png", 77, 33, "P", "PNG"), ("e.jpeg", 33, 90, "CMYK", "JPEG"), ("f.png", 20, 25, "L", "PNG"),
        ("sub/g.jpg", 129, 64, "RGB", "JPEG"), ("h.png", 40, 40, "RGB", "PNG"),
    ]
    for split, classes in (("train", ["ant", "bee", "cow"]), ("val", ["ant", "bee", "cow"])):
        for k, cls in enumerate(classes):
            for i, (name, w, h, mode, fmt) in enumerate(specs):
                if (i + k) % 3 == 2 and split == "val":
                    continue  # fewer validation images
                write(rng, os.path.join(root, split, cls, name), w + k, h + i, mode, fmt)
    with open(os.path.join(root, "train", "ant", "notes.txt"), "w") as f:
        f.write("not an image; not an image extension either\n")
    tf = T.Compose([T.Resize(a.resize), T.CenterCrop(a.crop), T.ToTensor(), T.Normalize(MEAN, STD)])
    for split in ("train", "val"):
        ds = D.ImageFolder(os.path.join(root, split), transform=tf)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor([ds[i][1] for i in range(len(ds))])
        torch.save({"images": x, "labels": y, "files": [s[0] for s in ds.samples]},
                   os.path.join(a.dir, f"expected_{split}.pt"))
    # flat layout: the val images in one folder, labels in a CSV (class names), in file-name order
    flat = os.path.join(a.dir, "flat")
    shutil.rmtree(flat, ignore_errors=True)
    os.makedirs(flat)
    ds = D.ImageFolder(os.path.join(root, "val"))
    rows = []
    for i, (path, label) in enumerate(ds.samples):
        name = f"img{i:03d}" + os.path.splitext(path)[1]
        shutil.copy(path, os.path.join(flat, name))
        rows.append((name, ds.classes[label]))
    with open(os.path.join(a.dir, "flat_labels.csv"), "w") as f:
        f.write("file,label\n")
        for name, label in rows:
            f.write(f"{name},{label}\n")
    x = torch.stack([tf(Image.open(os.path.join(flat, n)).convert("RGB")) for n, _ in rows])
    y = torch.tensor([ds.classes.index(l) for _, l in rows])
    torch.save({"images": x, "labels": y}, os.path.join(a.dir, "expected_flat.pt"))


if __name__ == "__main__":
    main()
