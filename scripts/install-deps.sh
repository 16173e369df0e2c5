#!/usr/bin/env bash
# Installs every Debian package dst needs to build, test and run, and the
# text the demo trains on.
# Idempotent: packages already present are skipped, and when nothing is
# missing the script changes nothing and does not touch the network.
#
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh --bench    also PyTorch (python3-torch), used only
#                                      by bench/ and by the script that
#                                      regenerates the committed test fixtures
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config   # compilers, build system
  re2c bison                         # lexer and parser generators
  check                              # unit-test framework
  libopenblas-dev                    # CPU GEMM (CBLAS)
  openmpi-bin libopenmpi-dev         # collectives on the CPU backend
  liburing-dev                       # NVMe offload through io_uring
  clang llvm llvm-14-tools libclang-rt-dev        # libFuzzer, sanitizers, FileCheck
  bible-kjv                          # the demo's training text (King James Bible, public domain)
)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(python3 python3-torch python3-numpy)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
