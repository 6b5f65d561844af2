#!/usr/bin/env bash
# GPU (and many-core CPU) numbers for earshot: states × throughput, latency, memory.
#
#   bench/bench-gpu.sh EARSHOT MODEL NOTES_DIR [LONG_FILE]
#
# EARSHOT: a CUDA build (`cargo build --release --features cuda`); MODEL: a ggml file;
# NOTES_DIR: voice notes (*.oga; `bench/bench.sh` leaves the Telegram-encoded eval clips in
# target/bench/corpus). Every note is transcribed twice per run ("98 notes" for the 49 eval
# clips). Prints one line per run (wall seconds, files done) and the peak GPU memory
# (nvidia-smi); the transcripts stay in target/bench-gpu/ for scoring. No network needed:
# this is what produced the GPU table in docs/gpu.md.
set -uo pipefail
earshot="${1:?earshot binary}"; model="${2:?model file}"; notes_dir="${3:?folder of notes}"
long="${4:-}"
out="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/bench-gpu"
mkdir -p "$out"
mapfile -t clips < <(ls "$notes_dir"/*.oga | grep -v '/long_')
notes=("${clips[@]}" "${clips[@]}")
echo "notes: ${#notes[@]} ($(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU'))"

mem="$out/gpumem.log"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$mem" 2>/dev/null &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT

run() { # label, files..., -- earshot flags...
  local label=$1; shift
  local files=() flags=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  flags=("$@")
  : > "$mem"
  local t0 t1
  t0=$(date +%s.%N)
  "$earshot" transcribe --model "$model" -f json --quiet "${flags[@]}" "${files[@]}" \
    > "$out/$label.jsonl" 2> "$out/$label.err"
  local rc=$?
  t1=$(date +%s.%N)
  printf '%-40s rc=%d wall=%6.2f s files=%d gpu_mem_max=%s MiB\n' "$label" "$rc" \
    "$(awk "BEGIN { print $t1 - $t0 }")" "$(wc -l < "$out/$label.jsonl")" "$(sort -n "$mem" | tail -1)"
}

for i in 1 2 3; do run "gpu_cold_one_note_$i" "${clips[0]}" -- --require-gpu; done
for j in 1 2 4 8 16 32; do
  run "gpu_beam5_full_jobs$j" "${notes[@]}" -- --require-gpu --beam-size 5 --audio-ctx full -j "$j"
done
run gpu_defaults "${notes[@]}" -- --require-gpu
run gpu_beam5_full_jobs16_no_flash_attn "${notes[@]}" -- --require-gpu --beam-size 5 --audio-ctx full -j 16 --flash-attn off
[ -z "$long" ] || run gpu_long_beam5 "$long" -- --require-gpu --beam-size 5
cores=$(nproc)
for t in 16 8 4 2 1; do
  [ "$t" -le "$cores" ] || continue
  j=$((cores / t))
  run "cpu_${j}jobs_${t}threads" "${notes[@]}" -- --no-gpu -j "$j" --threads "$t"
done
[ -z "$long" ] || run cpu_long "$long" -- --no-gpu
