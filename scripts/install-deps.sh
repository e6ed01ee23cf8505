#!/usr/bin/env bash
# Installs the Debian 12 packages unravel needs to build, test and draw its report (as root).
# Does nothing when everything is already installed.
set -euo pipefail
packages=(
  build-essential cmake ninja-build git pkg-config
  libtorch-dev libcli11-dev nlohmann-json3-dev libfmt-dev zlib1g-dev
  libgloo-dev     # headers of the c10d Gloo process group (data-parallel training)
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist gnuplot-nox
  python3-torch   # cross-checks against PyTorch in the tests
  libjpeg-dev libpng-dev python3-pil python3-torchvision  # image folders; Pillow-exact tests
  chromium        # the report page is opened headless in a test
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
