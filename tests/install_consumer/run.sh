#!/usr/bin/env bash
# CTest install_consumer: `cmake --install` of a build into a fresh prefix, the installed program
# run, and this folder's project built against the installed package; its output must equal values
# computed here another way (Python's math.comb, a closed-form parameter count, `unravel info`).
# Usage: run.sh CMAKE_COMMAND BUILD_DIR TORCH_DIR SOURCE_DIR BUILD_TYPE CXX_FLAGS EXE_LINKER_FLAGS
# (the build's own, so that a sanitizer build, scripts/sanitize.sh, links its consumer too)
set -euo pipefail
cmake=$1 build=$2 torch_dir=$3 source=$4 build_type=$5 cxx_flags=$6 linker_flags=$7
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/unravel-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install_consumer: $*" >&2; exit 1; }

"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install $build failed (is the program built?)"; }
# lib/ or lib/<multiarch>/ (GNUInstallDirs, depending on the configured install prefix)
package=$(dirname "$(find "$prefix" -path "*/cmake/unravel/unravelConfig.cmake" | head -1)")
libdir=$(dirname "$(dirname "$package")")
for f in bin/unravel include/unravel/core/plan.h include/unravel/models/network.h \
         "${libdir#"$prefix/"}/cmake/unravel/unravelConfigVersion.cmake"; do
  [[ -f $prefix/$f ]] || fail "the install lacks $f"
done
ls "$libdir"/libunravel_*.a > /dev/null || fail "no static libraries in $libdir"
# The package must not point back into the source or build tree.
if grep -rlF -e "$build" -e "$source/" "$package"; then fail "build paths in the package"; fi

# The installed program, on its own.
"$prefix/bin/unravel" --version > "$tmp/version.txt" && grep -q "^unravel " "$tmp/version.txt" ||
  fail "bin/unravel --version"
"$prefix/bin/unravel" info --model preresnet20 --input 3x32x32 --classes 10 --json "$tmp/info.json" \
  > /dev/null || fail "bin/unravel info failed"

# The consumer finds unravel through CMAKE_PREFIX_PATH, and torch where the build found it.
gen=()
if command -v ninja > /dev/null; then gen=(-G Ninja); fi
"$cmake" -S "$here" -B "$tmp/consumer" "${gen[@]}" -DCMAKE_BUILD_TYPE="$build_type" \
  -DCMAKE_CXX_FLAGS="$cxx_flags" -DCMAKE_EXE_LINKER_FLAGS="$linker_flags" \
  -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$torch_dir" \
  > "$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configuring the consumer failed"; }
grep -qx "unravel_DIR:PATH=$package" "$tmp/consumer/CMakeCache.txt" ||
  fail "the consumer found unravel elsewhere: $(grep unravel_DIR "$tmp/consumer/CMakeCache.txt")"
"$cmake" --build "$tmp/consumer" > "$tmp/build.log" 2>&1 ||
  { tail -50 "$tmp/build.log"; fail "building the consumer failed"; }
"$tmp/consumer/consumer" > "$tmp/got.txt" || fail "the consumer exited with $?"

# Expected: C(54,27) paths of length 27 in 54 blocks, C(52,27) of them left after deleting 2;
# preresnet20 = 3 stages x 3 pre-activation basic blocks (BN, 3x3 conv, BN, 3x3 conv), a 3x3 stem
# conv without bias, a final BN and a 64->10 linear layer; the same counts from `unravel info`.
/usr/bin/python3 - "$tmp/info.json" > "$tmp/expected.txt" <<'PY'
import json, math, sys
info = json.load(open(sys.argv[1]))
params, cin = 9 * 3 * 16, 16
for width in (16, 32, 64):
    for _ in range(3):
        params += 2 * cin + 9 * cin * width + 2 * width + 9 * width * width
        cin = width
params += 2 * 64 + 64 * 10 + 10
assert info["num_blocks"] == 9, info["num_blocks"]
assert info["num_parameters"] == params, (info["num_parameters"], params)
print("deleted 3,17")
print("paths_of_length_27", math.comb(54, 27))
print("kept_of_length_27", math.comb(52, 27))
print("num_blocks", info["num_blocks"])
print("num_parameters", info["num_parameters"])
print("logits 2x10")
PY
diff "$tmp/expected.txt" "$tmp/got.txt" || fail "the consumer's output differs (< expected, > got)"
echo "install_consumer: ok ($(wc -l < "$tmp/got.txt") values)"
