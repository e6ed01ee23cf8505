#!/usr/bin/env bash
# Fuzzes the parsers: configures a separate build dir (build-fuzz, -DUNRAVEL_FUZZ=ON: ASan, UBSan
# and coverage), builds the fuzz_<name> harnesses and runs each for N seconds on its seed corpus
# (tests/fuzz/corpus/<name>) and regressions (tests/fuzz/regressions/<name>), one line each.
#
#   scripts/fuzz.sh [--seconds N] [names...]      (default: 60 s, every harness)
#
# Findings land in build-fuzz/fuzz-out/<name>/crash-* and timeout-*: fix them, then copy each
# input to tests/fuzz/regressions/<name>/ so that ctest replays it forever. Replay one under the
# sanitizers with build-fuzz/fuzz/fuzz_<name> FILE. Exit status 1 when anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
names=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds must be a whole number, got '$seconds'" >&2; exit 2; }

build=${UNRAVEL_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${UNRAVEL_FUZZ_JOBS:-$(nproc)}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNRAVEL_FUZZ=ON -DUNRAVEL_BUILD_BENCH=OFF >/dev/null
if [[ ${#names[@]} -eq 0 ]]; then
  cmake --build "$build" -j "$jobs" --target unravel_fuzz_all
  for f in "$build"/fuzz/fuzz_*; do names+=("$(basename "$f" | sed 's/^fuzz_//')"); done
else
  cmake --build "$build" -j "$jobs" --target "${names[@]/#/fuzz_}"
fi

status=0
for name in "${names[@]}"; do
  out="$build/fuzz-out/$name"
  mkdir -p "$out"
  inputs=()
  for d in "tests/fuzz/corpus/$name" "tests/fuzz/regressions/$name"; do [[ -d "$d" ]] && inputs+=("$d"); done
  [[ ${#inputs[@]} -gt 0 ]] || inputs=("$out/corpus")  # no seeds: start from the empty input
  rc=0
  line=$("$build/fuzz/fuzz_$name" --seconds "$seconds" --out "$out" "${inputs[@]}" 2>"$out/log") || rc=$?
  # "<prog>: E executions in S s (R/s), C crashes, T timeouts, O other failures (leaks?), corpus ..."
  if [[ "$line" =~ ([0-9]+)\ executions\ in\ ([0-9]+)\ s\ \(([0-9]+)/s\),\ ([0-9]+)\ crashes,\ ([0-9]+)\ timeouts,\ ([0-9]+)\ other.*corpus\ ([0-9]+)\ \(([0-9]+)\ new\) ]]; then
    printf 'fuzz_%-12s %10s executions %7s/s  %s crashes  %s timeouts  %s other  (corpus %s, %s new)\n' "$name" \
      "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[4]}" "${BASH_REMATCH[5]}" "${BASH_REMATCH[6]}" \
      "${BASH_REMATCH[7]}" "${BASH_REMATCH[8]}"
  else
    echo "fuzz_$name: no summary (exit $rc); see $out/log"
    rc=1
  fi
  if [[ $rc -ne 0 ]]; then
    status=1
    ls "$out"/crash-* "$out"/timeout-* 2>/dev/null | sed 's/^/  finding: /' || true
  fi
done
exit $status
