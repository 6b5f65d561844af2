#!/usr/bin/env bash
# Install what earshot needs on a fresh Debian/Ubuntu machine (idempotent):
# the C toolchain and cmake that whisper.cpp and libopus build with, libclang for bindgen,
# curl for the model script, Python 3 with pip for the model converter, ffmpeg for the
# tests' reference decodes and the fixtures, and a Rust toolchain when none is installed.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have cmake || need+=(cmake)
have cc || need+=(build-essential)
have c++ || need+=(g++)
have curl || need+=(curl ca-certificates)
have ffmpeg || need+=(ffmpeg)
have python3 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -c 'import numpy' >/dev/null 2>&1 || need+=(python3-numpy)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
have pkg-config || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! have cargo && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  # Debian's own rustc is older than the 1.89 that symphonia 0.6 and rubato 5 need.
  echo "setup: installing Rust with rustup" >&2
  curl -fsSL --proto '=https' --tlsv1.2 https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >&2 \
    || { echo "setup: could not install Rust; install a toolchain >= 1.89 (https://rustup.rs) and run this again" >&2; exit 1; }
fi
