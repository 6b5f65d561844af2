#!/usr/bin/env bash
# What the job queue costs per job without transcription (benches/queue.rs): SQLite, and a
# throw-away PostgreSQL server (scripts/test-postgres.sh) by 1 and by 3 nodes at once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/test-postgres.sh
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
EARSHOT_BENCH_DATABASE_URL="$EARSHOT_TEST_DATABASE_URL" cargo bench --bench queue --quiet
