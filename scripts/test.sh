#!/usr/bin/env bash
# Everything the tests need, then the tests: packages, the real models (through the same
# model script users run), cargo fmt/clippy, the Rust test suite, the converter/script tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
for m in tiny.en base tiny.en-q8_0 base-q8_0 base-q5_0; do scripts/fetch-model.sh "$m"; done
# numpy for the converter's unit tests (the model script installs its own copy when needed)
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check numpy \
  || python3 -m pip install -q --break-system-packages numpy
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
python3 -m unittest discover -s tests -p 'test_*.py' -v
cargo test
