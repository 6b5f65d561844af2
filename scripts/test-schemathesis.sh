#!/usr/bin/env bash
# schemathesis against a live earshot: the binary cargo built, on a random port, with an API
# key, checked against its own GET /openapi.json with every check (schemathesis.toml says
# which one cannot apply, and why) over the examples, coverage, fuzzing and stateful phases,
# for a fixed time. Prints how many cases it generated.
#   scripts/test-schemathesis.sh SECONDS [DATABASE_URL]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-90}
database=${2:-}
source scripts/lib/apt.sh
venv=target/schemathesis-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -c 'import ensurepip' 2>/dev/null || apt_install test-schemathesis python3-venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5' 'openapi-spec-validator==0.9.0'
fi
data=$(mktemp -d)
log="$data/server.log"
key="sk-schemathesis-$RANDOM$RANDOM"
args=(--log-format json serve --listen 127.0.0.1:0 --model tiny.en --data-dir "$data" --api-key "$key")
[ -z "$database" ] || args+=(--database-url "$database")
target/debug/earshot "${args[@]}" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
addr=""
for _ in $(seq 1 120); do
  addr=$(sed -n 's/^earshot: listening on http:\/\///p' "$log" | head -1)
  [ -n "$addr" ] && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; echo "test-schemathesis: the server did not start" >&2; exit 1; }
  sleep 0.5
done
[ -n "$addr" ] || { echo "test-schemathesis: the server did not print its address" >&2; exit 1; }
# The document validates as OpenAPI 3.1.
curl -fsS "http://$addr/openapi.json" -o "$data/openapi.json"
"$venv/bin/python" -c 'import json, sys; from openapi_spec_validator import validate; d = json.load(open(sys.argv[1])); assert d["openapi"].startswith("3.1"); validate(d); print("test-schemathesis: /openapi.json is valid OpenAPI", d["openapi"])' "$data/openapi.json"
# `--checks all` turns on every check, those schemathesis.toml disables too; so the ones it
# disables (each with its reason there) are excluded here by name.
excluded=$(python3 -c 'import tomllib; c = tomllib.load(open("schemathesis.toml", "rb")).get("checks", {}); print(",".join(n for n, v in c.items() if v.get("enabled") is False))')
started=$(date +%s)
EARSHOT_ST_KEY="$key" "$venv/bin/st" --config-file schemathesis.toml run "http://$addr/openapi.json" \
  --checks all ${excluded:+--exclude-checks "$excluded"} --phases examples,coverage,fuzzing,stateful --max-time "$seconds" \
  --seed 20261207 --no-color --report-dir "$data/report" | tee "$data/st.log" | tail -25
store=SQLite
[ -z "$database" ] || store=PostgreSQL
echo "test-schemathesis: $(grep -Eo '[0-9]+ generated' "$data/st.log" | head -1) cases in $(( $(date +%s) - started )) s, on $store"
