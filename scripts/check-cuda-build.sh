#!/usr/bin/env bash
# Prove that `cargo build --release --features cuda` compiles and links on a machine without a
# GPU. Installs Debian's CUDA toolkit (nvidia-cuda-toolkit, from the non-free component) when
# nvcc is missing, then builds into target/cuda so the CPU build in target/ is left alone.
#
#   scripts/check-cuda-build.sh            # compile check for one GPU generation (sm_90, H100)
#   CMAKE_CUDA_ARCHITECTURES="80;86;89;90" scripts/check-cuda-build.sh   # more generations
#
# Every CUDA kernel is compiled once per architecture, so each architecture added costs
# roughly the same build time again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  if ! apt-cache policy nvidia-cuda-toolkit 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    # Debian ships the toolkit in non-free (it is NVIDIA's licence, not a free one).
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    echo "check-cuda-build: enabling Debian's contrib/non-free components for nvidia-cuda-toolkit" >&2
    # apt refuses a second entry for the same archive with a different Signed-By, so copy the
    # key option the existing entries use (deb822 images set one, classic sources.list not).
    key=/usr/share/keyrings/debian-archive-keyring.gpg
    if grep -rqs "^Signed-By: *$key" /etc/apt/sources.list.d/; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free non-free-firmware\nSigned-By: %s\n' \
        "$codename" "$key" | $sudo tee /etc/apt/sources.list.d/earshot-non-free.sources >/dev/null
    else
      echo "deb http://deb.debian.org/debian $codename contrib non-free non-free-firmware" |
        $sudo tee /etc/apt/sources.list.d/earshot-non-free.list >/dev/null
    fi
    $sudo apt-get update -qq
  fi
  source scripts/lib/apt.sh
  apt_install "check-cuda-build (about 3 GB)" nvidia-cuda-toolkit
fi
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
nvcc --version | tail -n 2 >&2

export CMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}"
echo "check-cuda-build: CMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES" >&2
start=$(date +%s)
CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda
bin=target/cuda/release/earshot
echo "check-cuda-build: built $bin in $(( $(date +%s) - start )) s" >&2
# The binary must carry the CUDA backend: its libraries are linked, and it says so itself.
if command -v ldd >/dev/null && ! ldd "$bin" | grep -q 'libcudart'; then
  echo "check-cuda-build: $bin is not linked against libcudart" >&2
  exit 1
fi
"$bin" --version
