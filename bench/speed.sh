#!/usr/bin/env bash
# unravel against careful PyTorch (bench/anchors.py), back to back on one machine: the
# single-deletion lesion sweep of preresnet56 (same weights via `unravel export`, same test images;
# the per-plan correct counts must agree) and training images/s of preresnet20/56/110 at batch 128.
# Prints two tables and writes every number to a JSON file.
#   bench/speed.sh [--threads T=1] [--images N=1000] [--steps S=20] [--warmup W=3]
#                  [--models preresnet20,preresnet56,preresnet110] [--run RUN] [--out FILE]
#                  [--device cpu|cuda] [--precision fp32|bf16]
# --run: a trained preresnetN run for the lesion sweep (default: one epoch of preresnet56 on 1280
# images, trained here). --out default: runs/bench/speed-DATE.json (runs/ is not tracked).
# --precision bf16: both sides sweep in bfloat16 and train under autocast (anchors.py --help); the
# per-plan counts may then differ by up to 1% of the images (rounding near decision boundaries).
# Environment: UNRAVEL_BIN, PYTHON (/usr/bin/python3: needs torch), FASHION_MNIST (directory).
set -euo pipefail
threads=1 images=1000 steps=20 warmup=3 models=preresnet20,preresnet56,preresnet110 run="" out="" device=cpu precision=fp32
while [ $# -gt 0 ]; do
  case "$1" in -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
  [ $# -ge 2 ] || { echo "speed.sh: $1 needs a value (see --help)" >&2; exit 2; }
  case "$1" in
    --threads) threads=$2 ;;
    --images) images=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --models) models=$2 ;;
    --run) run=$2 ;;
    --out) out=$2 ;;
    --device) device=$2 ;;
    --precision) precision=$2 ;;
    *) echo "speed.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
for v in threads images steps; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "speed.sh: --$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
[[ $warmup =~ ^[1-9][0-9]*$ ]] || { echo "speed.sh: --warmup must be a positive integer, got '$warmup'" >&2; exit 2; }
[ "$images" -le 10000 ] || { echo "speed.sh: --images: Fashion-MNIST has 10000 test images, got $images" >&2; exit 2; }
[[ $device =~ ^(cpu|cuda)$ ]] || { echo "speed.sh: --device must be cpu or cuda, got '$device'" >&2; exit 2; }
[[ $precision =~ ^(fp32|bf16)$ ]] || { echo "speed.sh: --precision must be fp32 or bf16, got '$precision'" >&2; exit 2; }
[ -z "$run" ] || run=$(realpath -m "$run")
[ -z "$out" ] || out=$(realpath -m "$out")
cd "$(dirname "$0")/.."
bin=${UNRAVEL_BIN:-build/apps/unravel/unravel}
py=${PYTHON:-/usr/bin/python3}
fm=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
out=${out:-runs/bench/speed-$(date +%Y%m%d-%H%M%S).json}
[ -x "$bin" ] || { echo "speed.sh: $bin: not built (cmake --build build --target unravel)" >&2; exit 1; }
"$py" -c 'import torch' 2>/dev/null || { echo "speed.sh: $py cannot import torch (set PYTHON)" >&2; exit 1; }

# glibc malloc, both sides: large blocks from the heap, never trimmed: the same setting unravel
# makes with mallopt() at start (src/core/util.cpp keep_freed_memory); anchors.py repeats it.
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/anchors.jsonl
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say() { echo "speed.sh: $*" >&2; }
# cpu_of FILE CMD...: runs CMD (stdout discarded) and writes its CPU seconds (user + system, all
# threads) to FILE. On a busy machine at one thread CPU time is steadier than wall time.
cpu_of() {
  "$py" -c 'import resource, subprocess, sys
rc = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime + r.ru_stime}\n")
sys.exit(rc)' "$@"
}

if [ -z "$run" ]; then
  say "training the lesion network (preresnet56, 1 epoch, 1280 images)"
  run=$work/lesion-run
  "$bin" train --model preresnet56 --data "fashion-mnist:$fm" --out "$run" --epochs 1 --train-subset 1280 \
    --test-subset 500 --threads "$threads" --device "$device" --quiet >/dev/null
fi
"$bin" export --run "$run" --out "$work/weights.pt" >/dev/null

# unravel's CPU time of a sweep: the command on N images less the same command on one image
# (start, loading, evaluation copy).
for engine in prefix reference; do
  say "unravel lesion --single --engine $engine, $images images"
  for n in 1 "$images"; do
    cpu_of "$work/cpu-lesion-$engine-$n" "$bin" lesion --run "$run" --data "fashion-mnist:$fm" --single \
      --engine "$engine" --test-subset "$n" --threads "$threads" --device "$device" --precision "$precision" --quiet --json "$work/unravel-$engine-$n.json"
  done
done
say "PyTorch lesion sweep, one forward per plan and prefix-cached"
"$py" bench/anchors.py --data "$fm" --threads "$threads" --device "$device" --precision "$precision" lesion --weights "$work/weights.pt" \
  --images "$images" >>"$log"

train_images=$(((warmup + steps) * 128))
# unravel's wall rate comes from its per-step records; its CPU time of the timed steps is that of
# the whole command less that of the same command stopping after the warm-up steps.
for m in ${models//,/ }; do
  say "training $m: $warmup warm-up + $steps timed steps of 128, unravel then PyTorch"
  for n in $((warmup * 128)) "$train_images"; do
    cpu_of "$work/cpu-train-$m-$n" "$bin" train --model "$m" --data "fashion-mnist:$fm" --out "$work/train-$m-$n" \
      --epochs 1 --train-subset "$n" --test-subset 100 --no-augment --log-every 1 --threads "$threads" --device "$device" --precision "$precision" --quiet
  done
  "$py" bench/anchors.py --data "$fm" --threads "$threads" --device "$device" --precision "$precision" train --models "$m" --steps "$steps" \
    --warmup "$warmup" >>"$log"
done

mkdir -p "$(dirname "$out")"
"$py" - "$work" "$out" "$models" "$warmup" "$steps" "$threads" "$images" "$load_before" "$device" "$precision" <<'PY'
import datetime, json, os, sys
work, out, models, warmup, steps, threads, images, load_before, device, precision = sys.argv[1:]
warmup, steps, threads, images = int(warmup), int(steps), int(threads), int(images)
rows = [json.loads(l) for l in open(os.path.join(work, "anchors.jsonl")) if l.strip()]
py = {(r["job"], r.get("engine") or r.get("model")): r for r in rows}
cpu = lambda name: float(open(os.path.join(work, "cpu-" + name)).read())
counts = lambda j: [j["baseline"]["correct"]] + [p["correct"] for p in j["plans"]]

# unravel: wall seconds of the engine (its --json), CPU seconds by difference
un = {e: json.load(open(os.path.join(work, f"unravel-{e}-{images}.json"))) for e in ("prefix", "reference")}
u = {e: {"s": un[e]["engine_seconds"], "cpu": cpu(f"lesion-{e}-{images}") - cpu(f"lesion-{e}-1")} for e in un}
p = {e: {"s": py["lesion", e]["seconds"], "cpu": py["lesion", e]["cpu_seconds"]} for e in ("reference", "prefix")}
base = counts(un["prefix"])
checks = {}
for name, c in [("unravel one forward per plan", counts(un["reference"])),
                ("PyTorch one forward per plan", py["lesion", "reference"]["correct"]),
                ("PyTorch prefix-cached", py["lesion", "prefix"]["correct"])]:
    diff = max(abs(a - b) for a, b in zip(base, c)) if len(c) == len(base) else 10**9
    checks[name] = {"counts": c, "max_abs_diff": diff}
worst = max(v["max_abs_diff"] for v in checks.values())
allowed = 2 if precision == "fp32" else max(2, images // 100)  # bf16 rounds differently on each side
verdict = "identical" if worst == 0 else (f"within {worst} image(s)" if worst <= allowed else "MISMATCH")

def unravel_wall_rate(run_dir):
    """images/s over the steps after the warm-up, from the per-step records (--log-every 1)."""
    t = {}
    for line in open(os.path.join(run_dir, "metrics.jsonl")):
        r = json.loads(line)
        if r.get("type") == "step":
            t[r["step"]] = r["step"] * 128 / r["images_per_s"]  # seconds since the epoch began
    return steps * 128 / (t[warmup + steps] - t[warmup])

n_all, n_warm = (warmup + steps) * 128, warmup * 128
train = []
for m in models.split(","):
    uw = unravel_wall_rate(os.path.join(work, f"train-{m}-{n_all}"))
    uc = steps * 128 / (cpu(f"train-{m}-{n_all}") - cpu(f"train-{m}-{n_warm}"))
    pw, pc = py["train", m]["images_per_s"], py["train", m]["images_per_cpu_s"]
    train.append({"model": m, "unravel_images_per_s": uw, "pytorch_images_per_s": pw, "ratio": uw / pw,
                  "unravel_images_per_cpu_s": uc, "pytorch_images_per_cpu_s": pc, "cpu_ratio": uc / pc})

load_after = " ".join(open("/proc/loadavg").read().split()[:3])
n_plans, model = len(base), un["prefix"]["model"]
print(f"\ndevice {device}, precision {precision}, threads {threads} on both sides, {os.cpu_count()} cores, load average {load_before} before and "
      f"{load_after} after; MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 on both sides")
print(f"\nlesion --single of {model} ({n_plans} plans) on {images} Fashion-MNIST test images, batch 250: "
      "seconds, wall (CPU)\n")
print("| engine | unravel | PyTorch, one forward per plan | PyTorch, prefix-cached | PyTorch / unravel, wall (CPU) |")
print("|---|---|---|---|---|")
f = lambda d: f"{d['s']:.1f} ({d['cpu']:.1f})"
r = lambda a, b: f"{a['s'] / b['s']:.2f}x ({a['cpu'] / b['cpu']:.2f}x)"
print(f"| prefix tree (default) | {f(u['prefix'])} | {f(p['reference'])} | {f(p['prefix'])} | "
      f"{r(p['reference'], u['prefix'])} / prefix-cached {r(p['prefix'], u['prefix'])} |")
print(f"| one forward per plan (`--engine reference`) | {f(u['reference'])} | {f(p['reference'])} | | "
      f"{r(p['reference'], u['reference'])} |")
print(f"\ncorrect answers per plan (intact, then block 1..{n_plans - 1} deleted): {verdict}")
print(f"  {'unravel prefix tree':29s}: {base}")
for name, v in checks.items():
    print(f"  {name:29s}: {v['counts']}")
print(f"\ntraining at batch 128 (SGD, momentum 0.9, weight decay 1e-4): images/s over {steps} steps after "
      f"{warmup} warm-up steps, wall (per CPU second)\n")
print("| model | unravel | PyTorch eager | unravel / PyTorch, wall (CPU) |")
print("|---|---|---|---|")
for t in train:
    print(f"| {t['model']} | {t['unravel_images_per_s']:.0f} ({t['unravel_images_per_cpu_s']:.0f}) | "
          f"{t['pytorch_images_per_s']:.0f} ({t['pytorch_images_per_cpu_s']:.0f}) | "
          f"{t['ratio']:.2f}x ({t['cpu_ratio']:.2f}x) |")
result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": device, "precision": precision,
          "threads": threads,
          "cores": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
          "malloc": {"MALLOC_MMAP_MAX_": 0, "MALLOC_TRIM_THRESHOLD_": 2147483647},
          "lesion": {"model": model, "images": images, "plans": n_plans, "batch_size": 250,
                     "unravel": u, "pytorch": p, "counts_unravel_prefix": base, "checks": checks,
                     "verdict": verdict},
          "train": {"batch_size": 128, "warmup": warmup, "steps": steps, "models": train},
          "anchors": rows}
with open(out, "w") as fo:
    json.dump(result, fo, indent=1)
print(f"\nwritten: {out}")
sys.exit(1 if verdict == "MISMATCH" else 0)
PY
