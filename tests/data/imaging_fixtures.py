"""Fixtures and oracles for tests/test_imaging.cpp (run with /usr/bin/python3: Pillow 9.4,
torchvision 0.14). Writes JPEG / PNG files, hostile files, and what Pillow / torchvision make of
each, into OUTDIR, listed one case a line in OUTDIR/manifest.txt (the C++ test documents the
fields of each kind of line). Usage: imaging_fixtures.py OUTDIR [--speed]"""
import io
import math
import os
import random
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = sys.argv[1]
SPEED_ONLY = sys.argv[2:] == ["--speed"]  # only q90.jpg, for the throughput measurement
CORPUS_ONLY = sys.argv[2:] == ["--corpus"]  # the fuzz seeds of tests/fuzz/corpus/image
if not SPEED_ONLY and not CORPUS_ONLY:
    import torch
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
    from torchvision.datasets.folder import pil_loader
LINES = []


def line(*fields):
    LINES.append(" ".join(str(f) for f in fields))


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    return name


def picture(w, h, seed, channels=3):
    """Smooth gradients + edges + noise: like a photo, with detail at every scale."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy = rng.uniform(0.01, 0.2, 2)
        p = 127 + 90 * np.sin(x * fx + c) * np.cos(y * fy - c)
        p += np.where((x // 7 + y // 11 + c) % 2 == 0, 25, -25)
        p += rng.normal(0, 12, (h, w))
        planes.append(p)
    a = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return a if channels > 1 else a[:, :, 0]


# ---------------------------------------------------------------- a PNG writer for every type
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def filter_rows(rows, bpp):
    """Filter type y % 5 for row y (None, Sub, Up, Average, Paeth), exercising every filter."""
    out, prev = b"", bytes(len(rows[0])) if rows else b""
    for y, row in enumerate(rows):
        t = y % 5
        f = bytearray(len(row))
        for i, v in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if t == 0:
                p = 0
            elif t == 1:
                p = a
            elif t == 2:
                p = b
            elif t == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            f[i] = (v - p) & 255
        out += bytes([t]) + bytes(f)
        prev = row
    return out


def pack_row(samples, depth):
    """One row of integer samples -> bytes at `depth` bits each (big-endian, msb first)."""
    if depth == 16:
        return b"".join(struct.pack(">H", int(s)) for s in samples)
    if depth == 8:
        return bytes(int(s) for s in samples)
    bits = "".join(format(int(s), "0%db" % depth) for s in samples)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def encode_png(samples, depth, ctype, interlace=False, plte=None, trns=None, ihdr_crc_bad=False):
    """samples: (h, w, channels) integer array of the raw PNG samples."""
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)

    def image_bytes(s):
        if s.shape[0] == 0 or s.shape[1] == 0:
            return b""
        rows = [pack_row(s[y].reshape(-1), depth) for y in range(s.shape[0])]
        return filter_rows(rows, bpp)

    if interlace:
        raw = b"".join(image_bytes(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7)
    else:
        raw = image_bytes(samples)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0)
    head = png_chunk(b"IHDR", ihdr)
    if ihdr_crc_bad:
        head = head[:-1] + bytes([head[-1] ^ 0xFF])
    data = b"\x89PNG\r\n\x1a\n" + head
    if plte is not None:
        data += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        data += png_chunk(b"tRNS", bytes(trns))
    z = zlib.compress(raw, 9)
    for i in range(0, len(z), 1000):  # several IDAT chunks
        data += png_chunk(b"IDAT", z[i:i + 1000])
    return data + png_chunk(b"IEND", b"")


# ---------------------------------------------------------------- oracles
def save_rgb(name, img):
    assert img.mode == "RGB"
    return write(name, img.tobytes())


def oracle_lines(name, resize_sizes=((256, 224), (37, 32))):
    """decode / Resize / Resize + CenterCrop / normalised floats for one image file."""
    img = pil_loader(os.path.join(OUT, name))
    w, h = img.size
    line("decode", name, save_rgb(name + ".rgb", img), w, h)
    for s, c in resize_sizes:
        r = T.Resize(s)(img)
        line("resize", name, s, save_rgb(f"{name}.r{s}", r), *r.size)
        rc = T.CenterCrop(c)(r)
        line("resize_crop", name, s, c, save_rgb(f"{name}.r{s}c{c}", rc), *rc.size)
        if (s, c) == resize_sizes[0]:
            t = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(T.ToTensor()(rc))
            f32 = write(f"{name}.r{s}c{c}.f32", t.numpy().astype("<f4").tobytes())
            line("normalize", name, s, c, f32)
    return img


def jpeg_fixtures():
    a = picture(500, 375, 1)
    cases = [  # name, array, save options
        ("q90.jpg", a, dict(quality=90)),
        ("q50_640x480.jpg", picture(640, 480, 2), dict(quality=50)),
        ("q95_444.jpg", a, dict(quality=95, subsampling=0)),
        ("q75_422_333x517.jpg", picture(333, 517, 3), dict(quality=75, subsampling=1)),
        ("progressive.jpg", a, dict(quality=85, progressive=True)),
        ("odd_420_17x13.jpg", picture(17, 13, 4), dict(quality=80)),
        ("1x1.jpg", picture(1, 1, 5), dict(quality=90)),
        ("3x517.jpg", picture(3, 517, 6), dict(quality=90)),
        ("517x3.jpg", picture(517, 3, 7), dict(quality=90, progressive=True)),
        ("gray.jpg", picture(200, 150, 8, channels=1), dict(quality=90)),
        ("gray_progressive.jpg", picture(99, 101, 9, channels=1), dict(quality=70, progressive=True)),
    ]
    for name, arr, opts in cases:
        b = io.BytesIO()
        Image.fromarray(arr).save(b, "JPEG", **opts)
        write(name, b.getvalue())
        skinny = min(arr.shape[:2]) < 10  # Resize(256) would make it 256 x 44117
        oracle_lines(name, ((4, 3), (37, 32)) if skinny else ((256, 224), (37, 32)))
    # CMYK (Pillow writes Adobe-inverted CMYK with an APP14 marker, as Photoshop does)
    b = io.BytesIO()
    Image.fromarray(picture(120, 90, 10, channels=4), "CMYK").save(b, "JPEG", quality=90)
    write("cmyk.jpg", b.getvalue())
    oracle_lines("cmyk.jpg")
    # a PNG named .jpg: the magic bytes decide
    b = io.BytesIO()
    Image.fromarray(picture(40, 30, 11)).save(b, "PNG")
    write("png_named.jpg", b.getvalue())
    oracle_lines("png_named.jpg")


def png_fixtures():
    rng = np.random.default_rng(20)
    w, h = 61, 43
    smooth = picture(w, h, 21, channels=4).astype(np.int64)

    def gray(depth):
        if depth == 16:  # across the clip at 255, and far above it
            return (smooth[:, :, :1] * 3 + rng.integers(0, 2, (h, w, 1))).astype(np.int64)
        return smooth[:, :, :1] >> (8 - depth)

    cases = []
    for depth in (1, 2, 4, 8, 16):
        cases.append((f"gray{depth}", gray(depth), depth, 0, {}))
    cases.append(("gray16_full", (smooth[:, :, :1] * 257), 16, 0, {}))
    cases.append(("gray_alpha8", smooth[:, :, :2], 8, 4, {}))
    cases.append(("gray_alpha16", smooth[:, :, :2] * 251, 16, 4, {}))
    cases.append(("rgb8", smooth[:, :, :3], 8, 2, {}))
    cases.append(("rgb16", smooth[:, :, :3] * 256 + rng.integers(0, 256, (h, w, 3)), 16, 2, {}))
    cases.append(("rgba8", smooth, 8, 6, {}))
    cases.append(("rgba16", smooth * 250, 16, 6, {}))
    cases.append(("rgb8_trns", smooth[:, :, :3], 8, 2, dict(trns=[0, 10, 0, 20, 0, 30])))
    pal = rng.integers(0, 256, 256 * 3).tolist()
    for depth in (1, 2, 4, 8):
        idx = smooth[:, :, :1] >> (8 - depth)
        n = 1 << depth
        cases.append((f"palette{depth}", idx, depth, 3, dict(plte=pal[:3 * n])))
    cases.append(("palette8_trns", smooth[:, :, :1], 8, 3,
                  dict(plte=pal, trns=rng.integers(0, 256, 200).tolist())))
    # indices past the PLTE entries: Pillow reads its default grey ramp there
    cases.append(("palette8_short", smooth[:, :, :1], 8, 3, dict(plte=pal[:3 * 100])))
    for name, samples, depth, ctype, extra in list(cases):
        if name in ("gray4", "gray16", "rgb16", "rgba8", "palette2", "palette8_trns", "gray_alpha16"):
            cases.append((name + "_interlaced", samples, depth, ctype, dict(extra, interlace=True)))
    for name, samples, depth, ctype, extra in cases:
        write(name + ".png", encode_png(np.asarray(samples), depth, ctype, **extra))
        oracle_lines(name + ".png", ((256, 224), (37, 32), (300, 224)))
    # tiny and odd sizes, interlaced (some Adam7 passes are empty)
    for (tw, th) in ((1, 1), (3, 517), (2, 5)):
        name = f"interlaced_{tw}x{th}.png"
        write(name, encode_png(picture(tw, th, 22).astype(np.int64), 8, 2, interlace=True))
        oracle_lines(name, ((4, 3), (7, 5)))
    # Pillow's own encoder (zlib, its filter choice), for an upscale from 64 x 48
    Image.fromarray(picture(64, 48, 23)).save(os.path.join(OUT, "pil_64x48.png"))
    oracle_lines("pil_64x48.png", ((300, 224), (48, 50), (47, 47)))


def transform_fixtures():
    img = pil_loader(os.path.join(OUT, "pil_64x48.png"))
    # CenterCrop larger than the image (padding), in one or both directions, odd and even
    for ch, cw in ((224, 224), (50, 70), (49, 63), (47, 64), (31, 10), (1, 1)):
        c = T.CenterCrop((ch, cw))(img)
        line("crop", "pil_64x48.png", ch, cw, save_rgb(f"crop_{ch}x{cw}", c), *c.size)
    # PIL's resize to explicit sizes: down / up / one direction only / identity
    src = pil_loader(os.path.join(OUT, "q90.jpg"))
    for (rw, rh) in ((500, 120), (123, 375), (77, 1000), (1, 1), (999, 3), (500, 375), (250, 187)):
        r = src.resize((rw, rh), Image.BILINEAR)
        line("resize_wh", "q90.jpg", rw, rh, save_rgb(f"q90.{rw}x{rh}", r))
    # RandomResizedCrop.get_params driven by given uniforms (torch's RNG mocked), then
    # F.resized_crop and F.hflip on the result
    rnd = random.Random(5)
    setups = [((500, 375), (0.08, 1.0), (3 / 4, 4 / 3))] * 12 + [
        ((1000, 10), (0.08, 1.0), (3 / 4, 4 / 3)),  # never fits: fallback, ratio clamped
        ((10, 1000), (0.08, 1.0), (3 / 4, 4 / 3)),
        ((50, 50), (2.0, 3.0), (3 / 4, 4 / 3)),  # area too large: fallback, whole image
        ((64, 48), (0.5, 0.5), (1.0, 1.0)),
        ((333, 517), (0.3, 0.9), (0.5, 2.0)),
    ]
    for k, ((w, h), scale, ratio) in enumerate(setups):
        us = [rnd.random() for _ in range(40)]
        i, j, ch, cw = mocked_get_params(w, h, scale, ratio, us)
        line("rrc", w, h, repr(scale[0]), repr(scale[1]), repr(ratio[0]), repr(ratio[1]),
             i, j, ch, cw, *[repr(u) for u in us])
        if (w, h) == (500, 375) and k < 6:
            rc = F.resized_crop(src, i, j, ch, cw, [224, 224])
            line("resized_crop", "q90.jpg", i, j, ch, cw, 224, save_rgb(f"rrc{k}", rc))
            line("hflip", f"rrc{k}", 224, 224, save_rgb(f"rrc{k}.flip", F.hflip(rc)))


class _Fake:
    def __init__(self, v, draw):
        self.v, self.draw = v, draw

    def item(self):
        return self.v

    def uniform_(self, a, b):
        return _Fake(float(a) + (float(b) - float(a)) * self.draw(), self.draw)


def mocked_get_params(w, h, scale, ratio, us):
    it = iter(us)
    draw = lambda: next(it)  # noqa: E731
    saved = torch.empty, torch.log, torch.exp, torch.randint, torch.tensor
    torch.tensor = lambda x, *a, **k: list(x)
    torch.log = lambda t: [math.log(v) for v in t]
    torch.empty = lambda *a, **k: _Fake(None, draw)
    torch.exp = lambda t: _Fake(math.exp(t.v), draw)
    torch.randint = lambda lo, hi, size: _Fake(lo + int(draw() * (hi - lo)), draw)
    try:
        return T.RandomResizedCrop.get_params(Image.new("L", (w, h)), list(scale), list(ratio))
    finally:
        torch.empty, torch.log, torch.exp, torch.randint, torch.tensor = saved


def pil_verdict(name):
    """'lenient NAME OUT|-': what Pillow makes of a damaged file (bytes, or '-' if refused)."""
    try:
        img = pil_loader(os.path.join(OUT, name))
        line("lenient", name, save_rgb(name + ".rgb", img))
    except Exception:
        line("lenient", name, "-")


def hostile_fixtures():
    good = open(os.path.join(OUT, "q90.jpg"), "rb").read()
    for cut in (20, 200, 700, len(good) // 2, len(good) - 100, len(good) - 2):
        name = write(f"trunc_{cut}.jpg", good[:cut])
        line("reject", name, "corrupt or truncated JPEG")
        pil_verdict(name)
    prog = open(os.path.join(OUT, "progressive.jpg"), "rb").read()
    name = write("trunc_progressive.jpg", prog[: len(prog) * 2 // 3])
    line("reject", name, "corrupt or truncated JPEG")
    pil_verdict(name)
    # damaged entropy data: a marker inside the scan, and overwritten bytes
    n = len(good)
    d = bytearray(good)
    d[n // 2:n // 2 + 2] = b"\xff\xd9"
    name = write("corrupt_marker.jpg", bytes(d))
    line("reject", name, "Corrupt JPEG data")
    pil_verdict(name)
    d = bytearray(good)  # all-ones bits (FF stuffed as FF 00): never a valid Huffman code
    d[n // 3:n // 3 + 300] = b"\xff\x00" * 150
    name = write("corrupt_bytes.jpg", bytes(d))
    line("reject", name, "Corrupt JPEG data")
    pil_verdict(name)
    d = bytearray(good)  # random bytes: libjpeg may notice nothing; Pillow's verdict only
    d[n // 3:n // 3 + 300] = bytes(random.Random(7).randrange(0, 255) for _ in range(300))
    name = write("corrupt_random.jpg", bytes(d))
    pil_verdict(name)
    # a bad table: libjpeg's error (Pillow refuses too)
    d = bytearray(good)
    k = good.index(b"\xff\xc4")
    d[k + 4:k + 40] = b"\xff" * 36
    name = write("bad_huffman_table.jpg", bytes(d))
    line("reject", name, "corrupt or truncated JPEG")
    pil_verdict(name)
    # PNG: bad CRC in the header (both refuse) and in the image data (Pillow does not check it)
    small = picture(40, 30, 30).astype(np.int64)
    name = write("bad_crc_ihdr.png", encode_png(small, 8, 2, ihdr_crc_bad=True))
    line("reject", name, "corrupt or truncated PNG")
    pil_verdict(name)
    png = bytearray(encode_png(small, 8, 2))
    k = png.index(b"IDAT")
    png[k + 4 + 10] ^= 0x01  # the CRC no longer matches (the zlib data is damaged too)
    name = write("bad_crc_idat.png", bytes(png))
    line("reject", name, "corrupt or truncated PNG")
    pil_verdict(name)
    png = bytearray(encode_png(small, 8, 2))
    length = struct.unpack(">I", png[k - 4:k])[0]
    png[k + 4 + length] ^= 0x01  # the CRC only: the data is intact
    name = write("bad_crc_only_idat.png", bytes(png))
    line("reject", name, "CRC error")
    pil_verdict(name)
    full = encode_png(small, 8, 2)
    name = write("trunc_idat.png", full[: len(full) // 2])
    line("reject", name, "corrupt or truncated PNG")
    pil_verdict(name)
    name = write("no_iend.png", full[:-12])
    pil_verdict(name)
    name = write("text.jpg", b"this is not an image\n" * 5)
    line("reject", name, "not a JPEG or PNG image")
    name = write("empty.jpg", b"")
    line("reject", name, "not a JPEG or PNG image")
    name = write("jpeg_magic_only.jpg", b"\xff\xd8\xff")
    line("reject", name, "corrupt or truncated JPEG")
    # headers that claim huge images (no pixel data behind them)
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    name = write("huge.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                 + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))
    line("reject", name, "image of 100000 x 100000 pixels exceeds the limit of 178956970 pixels")
    ihdr = struct.pack(">IIBBBBB", 4000000000, 4000000000, 8, 2, 0, 0, 0)  # w * h > 2^63
    name = write("huge_32bit.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr))
    line("reject", name, "image of 4000000000 x 4000000000 pixels exceeds the limit")
    ihdr = struct.pack(">IIBBBBB", 0, 7, 8, 2, 0, 0, 0)
    name = write("zero_width.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr))
    line("reject", name, "image of 0 x 7 pixels is empty")
    sof = good.index(b"\xff\xc0")
    for (jw, jh, expect) in ((60000, 60000, "image of 60000 x 60000 pixels exceeds the limit"),
                             (65535, 65535, "corrupt or truncated JPEG")):
        d = bytearray(good)
        d[sof + 5:sof + 9] = struct.pack(">HH", jh, jw)
        name = write(f"huge_{jw}.jpg", bytes(d))
        line("reject", name, expect)


def fuzz_corpus():
    """Tiny files of every kind the decoders take (each under 2 KB)."""
    def jpeg(name, arr, mode=None, **opts):
        b = io.BytesIO()
        Image.fromarray(arr, mode).save(b, "JPEG", **opts)
        write(name, b.getvalue())

    jpeg("rgb420.jpg", picture(13, 9, 40), quality=60)
    jpeg("rgb444_progressive.jpg", picture(16, 11, 41), quality=60, subsampling=0, progressive=True)
    jpeg("gray.jpg", picture(9, 7, 42, channels=1), quality=60)
    jpeg("cmyk.jpg", picture(8, 8, 43, channels=4), "CMYK", quality=60)
    jpeg("1x1.jpg", picture(1, 1, 44), quality=60)
    px = picture(7, 5, 45, channels=4).astype(np.int64)
    pal = list(range(0, 48))
    for name, samples, depth, ctype, extra in (
            ("gray1.png", px[:, :, :1] >> 7, 1, 0, {}),
            ("gray4_interlaced.png", px[:, :, :1] >> 4, 4, 0, dict(interlace=True)),
            ("gray16.png", px[:, :, :1] * 3, 16, 0, {}),
            ("gray_alpha8.png", px[:, :, :2], 8, 4, {}),
            ("rgb16_interlaced.png", px[:, :, :3] * 257, 16, 2, dict(interlace=True)),
            ("rgba8.png", px, 8, 6, {}),
            ("palette4_trns.png", px[:, :, :1] >> 4, 4, 3, dict(plte=pal, trns=[0, 128]))):
        write(name, encode_png(np.asarray(samples), depth, ctype, **extra))


def main():
    os.makedirs(OUT, exist_ok=True)
    if SPEED_ONLY:
        Image.fromarray(picture(500, 375, 1)).save(os.path.join(OUT, "q90.jpg"), quality=90)
        return
    if CORPUS_ONLY:
        fuzz_corpus()
        return
    jpeg_fixtures()
    png_fixtures()
    transform_fixtures()
    hostile_fixtures()
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
