#!/usr/bin/env bash
# Image folders at ImageNet size: how fast unravel decodes and transforms them, and what share of
# a lesion sweep's time the data takes. Writes N JPEG photos-like images (500x375, quality 90,
# smooth gradients plus noise) into a temporary ImageNet-style folder, then
#   1. `unravel data --out` over the folder (decode + Resize(256) + CenterCrop(224) + normalise):
#      images/s at --threads 1 and at the automatic default;
#   2. a torchvision resnet50 with random weights imported, and `lesion --single` on the same
#      images: wall time, and engine_stats.data_share (time waiting for images / sweep time).
# Usage: bench/imagefolder.sh [N=256] [LESION_IMAGES=64]
# Needs /usr/bin/python3 with torch, torchvision and PIL (Debian's python3-torchvision, python3-pil).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-256}
lesion_n=${2:-64}
bin=${UNRAVEL_BIN:-build/apps/unravel/unravel}
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" - "$work/val" "$n" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
for i in range(n):
    d = os.path.join(root, f"c{i % 4}")
    os.makedirs(d, exist_ok=True)
    y, x = np.mgrid[0:375, 0:500]
    base = np.stack([(x * (1 + i % 3)) % 256, (y * 2) % 256, ((x + y) // 2) % 256], axis=-1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(d, f"{i:05d}.jpg"), quality=90)
PY
spec="imagefolder:$work/val"

rate() {  # threads -> images/s of decode + transform through `unravel data --out`
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" data --data "$spec" --split test --out "$work/tensors.pt" --threads "$1" >/dev/null 2>&1
  t1=$(date +%s.%N)
  "$py" -c "print(f'{$n / ($t1 - $t0):.0f}')"
}
echo "decode + Resize(256) + CenterCrop(224) + normalise, $n JPEG 500x375 q90:"
for t in 1 0; do
  echo "  --threads $t: $(rate "$t") images/s (whole command, including start-up and writing the tensors)"
done

"$py" -c "import torch, torchvision; torch.manual_seed(0); torch.save(torchvision.models.resnet50().state_dict(), '$work/r50.pt')"
t0=$(date +%s.%N)
"$bin" import --weights "$work/r50.pt" --arch resnet50 --out "$work/run" >/dev/null 2>&1
t1=$(date +%s.%N)
"$bin" lesion --run "$work/run" --data "$spec" --single --test-subset "$lesion_n" --batch-size 32 \
  --json "$work/lesion.json" --quiet >/dev/null 2>&1
t2=$(date +%s.%N)
"$py" - "$work/lesion.json" "$t0" "$t1" "$t2" "$lesion_n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
t0, t1, t2, n = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = j.get("engine_stats", {})
print(f"resnet50: import {t1 - t0:.1f} s; lesion --single ({len(j['plans'])} plans, {n} images 224x224) "
      f"{t2 - t1:.1f} s; data share {s.get('data_share', float('nan')):.3f} "
      f"({s.get('data_seconds', float('nan')):.2f} s waiting for images)")
PY
