#!/usr/bin/env bash
# earshot's AVX-512 kernels in a portable build are compiled apart and chosen at run time
# (vendor/whisper-rs-sys/EARSHOT.md, "AVX-512 kernels chosen at run time"). That is safe only
# if no code compiled for AVX-512 can be reached on a CPU without it. The danger is the linker:
# an inline function or template that the AVX-512 file and an AVX2 file both define (a
# standard-library helper, say) is kept once, and if the copy kept is the AVX-512 one, every
# caller gets it. This script disassembles the two files that hold AVX-512 code and fails
# when any symbol other files can bind to, outside the kernels themselves, holds an AVX-512
# instruction (a zmm or mask register, or xmm/ymm 16-31).
#
#   scripts/check-dispatch.sh [BUILD_DIR]
#
# BUILD_DIR: a whisper-rs-sys build's out/ folder (default: the newest under target/). A build
# compiled for AVX-512 (GGML_NATIVE=ON on such a CPU) has no separate copy: nothing to check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-}"
if [ -z "$out" ]; then
  shopt -s nullglob
  builds=(target/*/build/whisper-rs-sys-*/out target/*/*/build/whisper-rs-sys-*/out)
  shopt -u nullglob
  for d in $([ ${#builds[@]} -gt 0 ] && ls -td "${builds[@]}"); do
    [ -f "$d/lib/libggml-cpu.a" ] && { out="$d"; break; }
  done
fi
[ -n "$out" ] && [ -d "$out" ] || { echo "check-dispatch: no whisper-rs-sys build under target/" >&2; exit 2; }
objs="$out/build/ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu"
copy="$objs/llamafile/sgemm-avx512.cpp.o"
tiles="$objs/repack.cpp.o"
[ -f "$tiles" ] || { echo "check-dispatch: $tiles is missing" >&2; exit 2; }
if [ ! -f "$copy" ]; then
  echo "check-dispatch: $out has no AVX-512 copy of tinyBLAS (a build compiled for AVX-512, or not for x86-64): nothing to check" >&2
  exit 0
fi

# Symbols that others can bind to (global or weak, defined here), with AVX-512 instructions.
# Allowed: the copy's entry point, and the q8_0 tiles' class (its members are called only
# through the tensor traits chosen after the CPU check, and no other file defines them).
avx512_symbols() {
  local obj="$1"
  local exported
  exported="$(nm --defined-only "$obj" | awk '$2 ~ /^[TWVu]$/ {print $3}' | sort -u)"
  objdump -d --no-show-raw-insn "$obj" | awk '
    /^[0-9a-f]+ <.*>:$/ { sym = $2; sub(/^</, "", sym); sub(/>:$/, "", sym); next }
    /%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])\b/ { if (sym != "") print sym }
  ' | sort -u | comm -12 - <(echo "$exported")
}

bad=0
for obj in "$copy" "$tiles"; do
  while read -r sym; do
    [ -n "$sym" ] || continue
    case "$sym" in
      earshot_llamafile_sgemm_avx512) continue ;;
      *q8_0_vnni*) continue ;;
    esac
    echo "check-dispatch: $(basename "$obj"): $(echo "$sym" | c++filt) holds AVX-512 instructions and can be bound from other files" >&2
    bad=1
  done < <(avx512_symbols "$obj")
done
# And the AVX-512 code is there (otherwise this check proves nothing).
[ "$(objdump -d --no-show-raw-insn "$copy" | grep -c '%zmm')" -gt 0 ] \
  || { echo "check-dispatch: $copy holds no AVX-512 instruction: was it compiled for AVX-512?" >&2; exit 1; }
[ "$(objdump -d --no-show-raw-insn "$tiles" | grep -c 'vpdpbusd.*%zmm')" -gt 0 ] \
  || { echo "check-dispatch: $tiles holds no 512-bit VNNI instruction: are the q8_0 tiles compiled?" >&2; exit 1; }
[ "$bad" = 0 ] || exit 1
echo "check-dispatch: $out: AVX-512 code only behind the run-time check" >&2
