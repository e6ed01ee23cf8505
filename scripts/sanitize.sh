#!/usr/bin/env bash
# Builds the whole project and its test suite with -fsanitize=address,undefined into build-asan
# (RelWithDebInfo, every report fatal) and runs ctest there: any sanitizer report fails its test.
#
#   scripts/sanitize.sh [--build-only] [--jobs N] [ctest arguments...]   (e.g. -R 'Plan|Cli')
#
# Builds and tests run under `nice -n 19` (default one job: other work keeps the machine). Leak
# reports from libtorch's and other libraries' own frames are suppressed by scripts/lsan.supp;
# nothing of ours ever is. Expect a full build of ~1.5 h on one core and a suite ~2-3x slower.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${UNRAVEL_ASAN_BUILD_DIR:-build-asan}
jobs=1
build_only=0
ctest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) build_only=1; shift ;;
    --jobs) jobs=${2:?--jobs needs a value}; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done

# Every report stops the process with a non-zero exit and a stack (UBSan's too: the code is built
# with -fno-sanitize-recover=all); leaks are reported at exit; UNRAVEL_ASAN_EXTRA adds options.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:print_stacktrace=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1${UNRAVEL_ASAN_EXTRA:+:$UNRAVEL_ASAN_EXTRA}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"

flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNRAVEL_BUILD_BENCH=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
# The test programs list their tests at build time (gtest_discover_tests): under the options above.
nice -n 19 cmake --build "$build" -j "$jobs"
[[ $build_only -eq 1 ]] && exit 0
start=$(date +%s)
rc=0
nice -n 19 ctest --test-dir "$build" --output-on-failure --timeout 3600 -j "$jobs" "${ctest_args[@]}" || rc=$?
echo "sanitize.sh: ctest exit $rc after $(( $(date +%s) - start )) s (build dir $build)"
exit $rc
