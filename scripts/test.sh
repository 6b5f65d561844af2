#!/usr/bin/env bash
# Everything the tests need, then the tests: packages, the real models (through the same
# model script users run), cargo fmt/clippy, the Rust test suite, the converter/script tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-debian.sh
source scripts/lib/apt.sh
# The inbox page's browser test drives Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  apt_install "test (the browser test)" chromium chromium-driver
fi
export PATH="$HOME/.cargo/bin:$PATH"
for m in tiny.en base tiny.en-q8_0 base-q8_0 base-q5_0 silero-vad; do scripts/fetch-model.sh "$m"; done
# Python packages the tests use: numpy (converter tests), the official OpenAI SDK (API test).
pyneed=()
python3 -c 'import numpy' 2>/dev/null || pyneed+=(numpy)
python3 -c 'import openai' 2>/dev/null || pyneed+=(openai)
if [ ${#pyneed[@]} -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pyneed[@]}" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${pyneed[@]}"
fi
# A throw-away PostgreSQL server and a throw-away Garage (S3) for the cluster's backends,
# stopped when this script ends.
earshot_stops=()
source scripts/test-postgres.sh
source scripts/test-garage.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
python3 scripts/modgraph.py --check ARCHITECTURE.md   # no loop; the module map is current
scripts/check-vendor.sh   # vendor/whisper-rs-sys is the published crate plus its patch files
cargo test
# The portable build's AVX-512 code is reachable only through the run-time CPU check
# (vendor/whisper-rs-sys/EARSHOT.md): disassembled, in the build cargo test just made.
scripts/check-dispatch.sh
# The service's tests again, with the job records in PostgreSQL and the audio in Garage
# (tests/it/common/server.rs), and the cluster tests, which need both.
EARSHOT_IT_POSTGRES="$EARSHOT_TEST_DATABASE_URL" EARSHOT_IT_S3="$EARSHOT_TEST_S3_URL" \
  cargo test --test it -- serve:: inbox:: cluster:: clients::
# The API against its own OpenAPI document: schemathesis, every check and phase, for a fixed
# time, on SQLite and once on PostgreSQL.
scripts/test-schemathesis.sh 90
scripts/test-schemathesis.sh 60 "$EARSHOT_TEST_DATABASE_URL"
# After cargo test: the OpenAI SDK test drives the binary it built.
python3 -m unittest discover -s tests -p 'test_*.py' -v
# The benchmark's smoke mode (one clip, one round, all three systems), so it cannot rot.
bench/bench.sh --smoke
