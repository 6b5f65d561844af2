#!/usr/bin/env bash
# Decode + resample speed for a 10-minute Telegram .oga and a 10-minute .m4a, on one core.
# Target: >= 300x real time. Makes its inputs from the shared eval clips with ffmpeg.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval_dir="${EARSHOT_EVAL_DIR:-../shared/eval}"
work="target/bench-decode"
mkdir -p "$work"
if [ ! -f "$work/long.wav" ]; then
  ls "$eval_dir"/clips/festru_*.wav "$eval_dir"/clips/wrs_jfk.wav | sed "s|^|file '$PWD/|; s|$|'|" > "$work/list.txt"
  ffmpeg -nostdin -v error -y -f concat -safe 0 -stream_loop -1 -i "$work/list.txt" -t 600 -ac 1 -ar 16000 "$work/long.wav"
fi
[ -f "$work/long_10min.oga" ] || ffmpeg -nostdin -v error -y -i "$work/long.wav" -ac 1 -ar 48000 -c:a libopus -b:a 32k -application voip "$work/long_10min.oga"
[ -f "$work/long_10min.m4a" ] || ffmpeg -nostdin -v error -y -i "$work/long.wav" -ac 1 -ar 44100 -c:a aac -b:a 64k "$work/long_10min.m4a"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), pinned to core 0"
EARSHOT_BENCH_FILES="$work/long_10min.oga $work/long_10min.m4a" taskset -c 0 cargo bench --bench decode --quiet
