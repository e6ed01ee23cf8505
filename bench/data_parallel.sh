#!/usr/bin/env bash
# Data-parallel training vs one process, back to back: `unravel train` for one epoch on the same
# images with --nproc 1 and --nproc N, the same total --threads, rounds alternating which goes
# first. Prints training images/s (from metrics.jsonl) per round and the ratio of the medians.
#   bench/data_parallel.sh [MODEL] [IMAGES] [NPROC] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-preresnet20} images=${2:-6400} nproc=${3:-2} threads=${4:-$(nproc)} rounds=${5:-3}
bin=${UNRAVEL_BIN:-build/apps/unravel/unravel}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rate() {  # run directory -> training images/s of its (only) epoch
  grep '"type":"epoch"' "$1/metrics.jsonl" | sed 's/.*"images_per_s":\([0-9.e+-]*\).*/\1/'
}
one=() many=()
echo "data_parallel: $model, $images Fashion-MNIST images, 1 epoch, batch 128, $threads threads in all"
for r in $(seq 1 "$rounds"); do
  order="1 $nproc"
  [ $((r % 2)) -eq 0 ] && order="$nproc 1"
  for p in $order; do
    "$bin" train --model "$model" --train-subset "$images" --test-subset 500 --epochs 1 \
      --threads "$threads" --nproc "$p" --quiet --out "$work/r$r-p$p" >/dev/null
    v=$(rate "$work/r$r-p$p")
    printf '  round %d  --nproc %d: %8.1f images/s\n' "$r" "$p" "$v"
    if [ "$p" = 1 ]; then one+=("$v"); else many+=("$v"); fi
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${one[@]}") mn=$(median "${many[@]}")
awk -v a="$m1" -v b="$mn" -v n="$nproc" 'BEGIN {printf "median: --nproc 1 %.1f, --nproc %d %.1f images/s: %.2fx\n", a, n, b, b / a}'
