#!/usr/bin/env bash
# E7 investigation: why does short-path training (K of n blocks per mini-batch) lag normal
# training here? For each schedule length, trains a normal ResNet and its short-path twin with the
# same recipe, then evaluates the short-path net under both test-time rules (residual branches
# scaled by K/n, or all at 1), each with the batch-norm statistics gathered in training and with
# statistics re-estimated under the rule's plan (--recalibrate-bn), and the normal net alike.
# Resumable: finished runs and evaluations are reused.
#   scripts/e7_study.sh [--model preresnet56] [--active K=12] [--epochs 3,8] [--train-subset 15000]
#                       [--test-subset 1000] [--recalibrate 50] [--threads 1] [--out runs/e7-study]
# Prints one table; every number goes to OUT/e7_study.json.
set -euo pipefail
model=preresnet56 active=12 epochs=3,8 train=15000 test=1000 recal=50 threads=1 out=runs/e7-study
while [ $# -gt 0 ]; do
  case "$1" in -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
  [ $# -ge 2 ] || { echo "e7_study.sh: $1 needs a value (see --help)" >&2; exit 2; }
  case "$1" in
    --model) model=$2 ;;
    --active) active=$2 ;;
    --epochs) epochs=$2 ;;
    --train-subset) train=$2 ;;
    --test-subset) test=$2 ;;
    --recalibrate) recal=$2 ;;
    --threads) threads=$2 ;;
    --out) out=$2 ;;
    *) echo "e7_study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
[[ $epochs =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "e7_study.sh: --epochs must be like 3,8, got '$epochs'" >&2; exit 2; }
for v in active train test recal; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "e7_study.sh: --${v} must be a positive integer, got '${!v}'" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
bin=${UNRAVEL_BIN:-build/apps/unravel/unravel}
data=fashion-mnist:${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -x "$bin" ] || { echo "e7_study.sh: $bin: not built" >&2; exit 1; }
mkdir -p "$out"
"$bin" info --model "$model" --json "$out/info.json" >/dev/null
n=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_blocks"])' "$out/info.json")
# The quick preset's recipe: lr 0.1 divided by 10 at 50% and 75%, warm-up 0.2 epochs, batch 128.
recipe=(--model "$model" --data "$data" --train-subset "$train" --test-subset "$test" --lr 0.1 --warmup 0.2
        --batch-size 128 --seed 0 --threads "$threads" --quiet)
all=$(seq -s, 1 "$n" | sed -E 's/([0-9]+)/\1:1/g')
echo "scale=$all" >"$out/all.plans"
for e in ${epochs//,/ }; do
  "$bin" train "${recipe[@]}" --epochs "$e" --out "$out/normal-e$e" >/dev/null
  "$bin" train "${recipe[@]}" --epochs "$e" --active-blocks "$active" --out "$out/short-e$e" >/dev/null
  for kind in normal short; do
    [ -f "$out/eval-$kind-e$e.json" ] ||
      "$bin" lesion --run "$out/$kind-e$e" --test-subset "$test" --plans "$out/all.plans" --recalibrate-bn "$recal" \
        --threads "$threads" --quiet --json "$out/eval-$kind-e$e.json" >/dev/null
  done
done
/usr/bin/python3 - "$out" "$epochs" "$model" "$n" "$active" <<'PY'
import json, os, sys
out, epochs, model, n, k = sys.argv[1], [int(e) for e in sys.argv[2].split(",")], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = []
for e in epochs:
    ev = {kind: json.load(open(os.path.join(out, f"eval-{kind}-e{e}.json"))) for kind in ("normal", "short")}
    s, m = ev["short"], ev["normal"]
    # baseline = the run's default plan (short: residuals x K/n; normal: as trained); plans[0] = all at 1
    row = {"epochs": e,
           "normal": m["baseline"]["top1_error"], "normal_recalibrated": m["baseline"]["recalibrated"]["top1_error"],
           "short_scaled": s["baseline"]["top1_error"], "short_scaled_recalibrated": s["baseline"]["recalibrated"]["top1_error"],
           "short_all": s["plans"][0]["top1_error"], "short_all_recalibrated": s["plans"][0]["recalibrated"]["top1_error"]}
    rows.append(row)
print(f"E7 study: {model} ({n} blocks), short paths {k} of {n} per mini-batch; test error, %")
cols = ["normal", "normal_recalibrated", "short_scaled", "short_scaled_recalibrated", "short_all", "short_all_recalibrated"]
print("| epochs | " + " | ".join(c.replace("_", " ") for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for r in rows:
    print(f"| {r['epochs']} | " + " | ".join(f"{100 * r[c]:.2f}" for c in cols) + " |")
json.dump({"model": model, "n": n, "active_blocks": k, "rows": rows}, open(os.path.join(out, "e7_study.json"), "w"), indent=1)
PY
