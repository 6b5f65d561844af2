#!/usr/bin/env bash
# Set up (packages, the default model) and run earshot with its embedded defaults.
#   scripts/run.sh [earshot arguments...]     default: serve (http://127.0.0.1:8000, ./data)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
model="${EARSHOT_MODEL:-base-q8_0}"
case "$model" in */*|*.bin) ;; *) scripts/fetch-model.sh "$model" --models-dir "${EARSHOT_MODELS_DIR:-models}" ;; esac
# The voice-activity model (earshot falls back to an energy gate without it, and says so).
vad="${EARSHOT_VAD_MODEL:-silero-vad}"
case "$vad" in none|off|*/*|*.bin) ;; *) scripts/fetch-model.sh "$vad" --models-dir "${EARSHOT_MODELS_DIR:-models}" ;; esac
cargo build --release --quiet
[ $# -gt 0 ] || set -- serve
exec target/release/earshot "$@"
