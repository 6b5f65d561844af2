#!/usr/bin/env bash
# Set up (packages, the default model) and run earshot with its embedded defaults.
#   scripts/run.sh [earshot arguments...]     default: transcribe every file in ./inbox
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
model="${EARSHOT_MODEL:-base}"
case "$model" in */*|*.bin) ;; *) scripts/fetch-model.sh "$model" --models-dir "${EARSHOT_MODELS_DIR:-models}" ;; esac
cargo build --release --quiet
if [ $# -eq 0 ]; then
  mkdir -p inbox
  set -- transcribe inbox
fi
exec target/release/earshot "$@"
