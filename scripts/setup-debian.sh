#!/usr/bin/env bash
# Install what earshot needs on a fresh Debian/Ubuntu machine (idempotent):
# the C toolchain and cmake that whisper.cpp and libopus build with, libclang for bindgen,
# curl for the model script, Python 3 with pip and numpy for the model converter, ffmpeg for
# the tests' reference decodes and the fixtures, and a Rust toolchain when none is installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have cmake || need+=(cmake)
have cc || need+=(build-essential)
have c++ || need+=(g++)
have curl || need+=(curl ca-certificates)
have ffmpeg || need+=(ffmpeg)
have python3 || need+=(python3)
have pkg-config || need+=(pkg-config)
have patch || need+=(patch) # scripts/check-vendor.sh applies the whisper.cpp patches
# bindgen (whisper-rs-sys) loads libclang itself: libclang.so* or libclang-NN.so*. Not
# libclang-cpp.so.NN, the C++ library that other packages pull in, which bindgen cannot use.
libclang_present() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so* /usr/lib/libclang.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
[ -n "${LIBCLANG_PATH:-}" ] || libclang_present || need+=(libclang-dev)
# numpy: from Debian only when python3 is Debian's own; another python3 (pyenv, a venv) gets
# it from pip below, so this does not reinstall Debian's package on every run.
debian_python=0
[ "$(readlink -f "$(command -v python3 || echo /usr/bin/python3)")" = "$(readlink -f /usr/bin/python3 2>/dev/null || echo none)" ] && debian_python=1
if have python3; then
  python3 -m pip --version >/dev/null 2>&1 || [ $debian_python = 0 ] || need+=(python3-pip)
  python3 -c 'import numpy' >/dev/null 2>&1 || [ $debian_python = 0 ] || need+=(python3-numpy)
else
  need+=(python3-pip python3-numpy)
fi
apt_install setup "${need[@]}"
if ! python3 -c 'import numpy' >/dev/null 2>&1; then
  echo "setup: installing numpy with pip for $(command -v python3)" >&2
  python3 -m pip install -q --disable-pip-version-check numpy \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages numpy
fi
if ! have cargo && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  # Debian's own rustc is older than the 1.89 that symphonia 0.6 and rubato 5 need.
  echo "setup: installing Rust with rustup" >&2
  curl -fsSL --proto '=https' --tlsv1.2 https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >&2 \
    || { echo "setup: could not install Rust; install a toolchain >= 1.89 (https://rustup.rs) and run this again" >&2; exit 1; }
fi
