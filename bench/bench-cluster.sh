#!/usr/bin/env bash
# Notes per minute through one node and through three on one PostgreSQL database and one
# S3 bucket (issue #16), with transcription: throw-away PostgreSQL and Garage servers
# (scripts/test-postgres.sh, scripts/test-garage.sh), release build, 60 Russian voice notes
# posted at once to the nodes in turn, each node with its default workers.
# Usage: bench/bench-cluster.sh [NODES...]   (default: 1 3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
earshot_stops=()
source scripts/test-postgres.sh
source scripts/test-garage.sh
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for n in "${@:-1 3}"; do
  for nodes in $n; do
    EARSHOT_IT_POSTGRES="$EARSHOT_TEST_DATABASE_URL" EARSHOT_IT_S3="$EARSHOT_TEST_S3_URL" \
      EARSHOT_BENCH_NODES="$nodes" cargo test --release --quiet --test it cluster::throughput \
      -- --ignored --nocapture 2>&1 | grep '^throughput:'
  done
done
