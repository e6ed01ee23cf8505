#!/usr/bin/env bash
# unravel on a GPU: on a machine with an NVIDIA GPU and a PyTorch install, builds unravel against
# that PyTorch's own libtorch (a separate build folder), runs the test suite there with the GPU
# visible, and times training images/s and the single-deletion lesion sweep against PyTorch eager
# on the same GPU (bench/speed.sh --device cuda: same weights, same images, counts compared).
# Without a usable GPU it runs the CPU part (build, tests, the same timings on the CPU) and says
# that the GPU part did not run. Nothing is downloaded: Fashion-MNIST comes from --data.
#   bench/gpu.sh [--python P] [--data DIR] [--build-dir DIR=build-gpu] [--out DIR=runs/bench/gpu-DATE]
#                [--jobs N] [--skip-build] [--skip-tests] [--steps S=20] [--images N=2000]
# Logs: OUT/build.log, OUT/ctest.log, OUT/speed.log and OUT/speed.json, OUT/summary.txt.
# Exit status: 0 when every part that ran passed, 1 otherwise.
set -uo pipefail
py=${PYTHON:-python3} data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist} build=build-gpu out=""
jobs=$(nproc) skip_build=0 skip_tests=0 steps=20 images=2000
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --skip-build) skip_build=1; shift; continue ;;
    --skip-tests) skip_tests=1; shift; continue ;;
  esac
  [ $# -ge 2 ] || { echo "gpu.sh: $1 needs a value (see --help)" >&2; exit 2; }
  case "$1" in
    --python) py=$2 ;;
    --data) data=$2 ;;
    --build-dir) build=$2 ;;
    --out) out=$2 ;;
    --jobs) jobs=$2 ;;
    --steps) steps=$2 ;;
    --images) images=$2 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift 2
done
for v in jobs steps images; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "gpu.sh: --$v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
data=$(realpath -m "$data")
cd "$(dirname "$0")/.."
out=$(realpath -m "${out:-runs/bench/gpu-$(date +%Y%m%d-%H%M%S)}")
mkdir -p "$out" || { echo "gpu.sh: --out $out: cannot create" >&2; exit 1; }
summary=$out/summary.txt
: >"$summary"
say() { echo "gpu.sh: $*" | tee -a "$summary" >&2; }
status=0

"$py" -c 'import torch' 2>/dev/null || { say "$py cannot import torch (give --python)"; exit 1; }
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || [ -f "$data/t10k-images-idx3-ubyte" ] ||
  { say "--data $data: no Fashion-MNIST IDX files (carry them in)"; exit 1; }
read -r torch_version cuda_version gpu_count torch_prefix < <("$py" -c 'import torch
print(torch.__version__, torch.version.cuda or "none", torch.cuda.device_count() if torch.cuda.is_available() else 0,
      torch.utils.cmake_prefix_path)')
if [ "$gpu_count" -gt 0 ]; then
  device=cuda
  say "PyTorch $torch_version, CUDA $cuda_version, $gpu_count GPU(s): $("$py" -c 'import torch; print(torch.cuda.get_device_name(0))')"
else
  device=cpu
  say "PyTorch $torch_version sees no CUDA device: running the CPU part only; the GPU part is UNRUN"
fi

# 1. Build against this PyTorch's libtorch (Torch_DIR under torch.utils.cmake_prefix_path).
if [ "$skip_build" = 0 ]; then
  say "building in $build against $torch_prefix (log: $out/build.log)"
  if cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
       >"$out/build.log" 2>&1 && cmake --build "$build" -j "$jobs" >>"$out/build.log" 2>&1; then
    say "build: ok"
  else
    say "build: FAILED (last lines of $out/build.log below)"
    tail -20 "$out/build.log" | tee -a "$summary" >&2
    exit 1
  fi
fi
bin=$build/apps/unravel/unravel
[ -x "$bin" ] || { say "$bin: not built (drop --skip-build)"; exit 1; }
"$bin" --version | tee -a "$summary" >&2

# 2. The test suite, with the GPU visible to the program (--device auto picks it).
if [ "$skip_tests" = 0 ]; then
  say "ctest in $build (log: $out/ctest.log)"
  if ctest --test-dir "$build" -j "$jobs" --output-on-failure >"$out/ctest.log" 2>&1; then
    say "tests: $(grep -E 'tests passed' "$out/ctest.log" | tail -1)"
  else
    status=1
    say "tests: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
    sed -n '/The following tests FAILED/,$p' "$out/ctest.log" | tee -a "$summary" >&2
  fi
fi

# 3. Timings on the device, back to back with PyTorch eager (bench/speed.sh prints the tables).
say "timing on $device: lesion --single of preresnet56 on $images images, training $steps steps (log: $out/speed.log)"
if UNRAVEL_BIN=$bin PYTHON=$py FASHION_MNIST=$data bench/speed.sh --device "$device" --threads "$(nproc)" \
     --images "$images" --steps "$steps" --out "$out/speed.json" >"$out/speed.log" 2>&1; then
  cat "$out/speed.log" | grep -v '^speed.sh:' | tee -a "$summary" >&2
else
  status=1
  say "speed.sh: FAILED (last lines of $out/speed.log below)"
  tail -20 "$out/speed.log" | tee -a "$summary" >&2
fi
[ "$device" = cuda ] || say "GPU part UNRUN: no CUDA device on this machine"
exit $status
