#!/usr/bin/env bash
# The default thread policy against fixed thread counts, on an idle machine and with another
# process spinning on one core: one training epoch of preresnet20 on 5120 Fashion-MNIST images,
# policies alternating round by round. Prints images/s (median over rounds) and the ratio to the
# best choice in each condition.
# Usage: bench/thread_policy.sh [ROUNDS=3] [THREADS="0 1 2"]   (0 = the automatic default)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
choices=${2:-"0 1 2"}
bin=${UNRAVEL_BIN:-build/apps/unravel/unravel}
work=$(mktemp -d)
spinner=""
cleanup() { [ -n "$spinner" ] && kill "$spinner" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

measure() {  # threads -> images/s of the training epoch
  rm -rf "$work/run"
  "$bin" train --model preresnet20 --data fashion-mnist --out "$work/run" --epochs 1 \
    --train-subset 5120 --test-subset 500 --threads "$1" --quiet >/dev/null 2>&1
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train_images_per_s'])" "$work/run/summary.json"
}

for condition in idle busy; do
  if [ "$condition" = busy ]; then
    sh -c 'while :; do :; done' & spinner=$!
    sleep 1
  fi
  declare -A rates=()
  for ((r = 0; r < rounds; r++)); do
    for t in $choices; do rates[$t]+="$(measure "$t") "; done
  done
  python3 - "$condition" "$(declare -p rates)" <<'PY'
import sys, re, statistics
cond = sys.argv[1]
pairs = re.findall(r'\[(\d+)\]="([^"]*)"', sys.argv[2])
med = {int(t): statistics.median(float(x) for x in v.split()) for t, v in pairs}
best = max(med.values())
for t in sorted(med):
    name = "auto (default)" if t == 0 else f"--threads {t}"
    print(f"{cond:5s} {name:15s} {med[t]:8.0f} images/s   best/this {best / med[t]:.2f}x")
PY
  unset rates
  if [ -n "$spinner" ]; then kill "$spinner"; spinner=""; fi
done
