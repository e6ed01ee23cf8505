#!/usr/bin/env bash
# Builds the whole project and its test suite with -fsanitize=address,undefined into build-asan
# (RelWithDebInfo, every report fatal) and runs ctest there: any sanitizer report fails its test.
#
#   scripts/sanitize.sh [--build-only] [--jobs N] [--targets 'T...'] [ctest arguments...]   (e.g. -R 'Plan|Cli')
#
# --targets builds only those test programs (and what they link) and runs only their tests, e.g.
# the torch-free subset (build ~1 h at nice 19 on a loaded core, tests ~1 min): --targets
# 'test_plan test_core_io test_path_counts test_interop fuzz_replay_zip fuzz_replay_pickle
# fuzz_replay_torch_file fuzz_replay_plan fuzz_replay_config fuzz_replay_image'.
# Builds and tests run under `nice -n 19` (default one job: other work keeps the machine). Leak
# reports from libtorch's and other libraries' own frames are suppressed by scripts/lsan.supp;
# nothing of ours ever is. Expect a full build of ~1.5 h on one core and a suite ~2-3x slower.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${UNRAVEL_ASAN_BUILD_DIR:-build-asan}
jobs=1
build_only=0
targets=""
ctest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) build_only=1; shift ;;
    --jobs) jobs=${2:?--jobs needs a value}; shift 2 ;;
    --targets) targets=${2:?--targets needs a value}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done

# Every report stops the process with a non-zero exit and a stack (UBSan's too: the code is built
# with -fno-sanitize-recover=all); leaks are reported at exit; UNRAVEL_ASAN_EXTRA adds options.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:print_stacktrace=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1${UNRAVEL_ASAN_EXTRA:+:$UNRAVEL_ASAN_EXTRA}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"

flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNRAVEL_BUILD_BENCH=OFF -DUNRAVEL_FUZZ_DRIVERS=ON \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
# The test programs list their tests at build time (gtest_discover_tests): under the options above.
# shellcheck disable=SC2086  # the targets are words
nice -n 19 cmake --build "$build" -j "$jobs" ${targets:+--target $targets}
[[ $build_only -eq 1 ]] && exit 0
if [[ -n "$targets" ]]; then  # only the tests of those programs: their names as gtest listed them
  names=()
  for t in $targets; do
    list="$build/tests/${t}[1]_tests.cmake"
    if [[ -f "$list" ]]; then
      mapfile -t -O "${#names[@]}" names < <(sed -n 's/^add_test(\[=\[\([^]]*\)\]=\].*/\1/p' "$list")
    else
      names+=("$t")  # a plain ctest entry (fuzz_replay_<name>)
    fi
  done
  ctest_args=(-R "^($(IFS='|'; echo "${names[*]}"))\$" "${ctest_args[@]}")
fi
start=$(date +%s)
rc=0
nice -n 19 ctest --test-dir "$build" --output-on-failure --timeout 3600 -j "$jobs" "${ctest_args[@]}" || rc=$?
echo "sanitize.sh: ctest exit $rc after $(( $(date +%s) - start )) s (build dir $build)"
exit $rc
