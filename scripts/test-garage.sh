#!/usr/bin/env bash
# Sourced by scripts/test.sh: a throw-away Garage (a real S3-compatible store) for the S3
# audio store's tests. Builds Garage 2.5.0 from crates.io once (about 11 minutes on 2 cores)
# and keeps the binary in ~/.cache/earshot (or $EARSHOT_GARAGE names one); starts a single
# node in a temp folder on free loopback ports; makes a bucket and two keys (one that may
# write, one that may only read); exports EARSHOT_TEST_S3_*; stops and removes it on exit.
garage_version=2.5.0
garage=${EARSHOT_GARAGE:-$HOME/.cache/earshot/garage-$garage_version/bin/garage}
if [ ! -x "$garage" ]; then
  echo "test: building Garage $garage_version for the S3 audio store's tests (once; about 11 minutes on 2 cores)" >&2
  cargo install garage --version "$garage_version" --locked --quiet \
    --root "$HOME/.cache/earshot/garage-$garage_version" >&2
  garage=$HOME/.cache/earshot/garage-$garage_version/bin/garage
fi
garage_dir=$(mktemp -d /tmp/earshot-garage.XXXXXX)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
garage_rpc=$(free_port)
garage_s3=$(free_port)
cat >"$garage_dir/garage.toml" <<EOF
metadata_dir = "$garage_dir/meta"
data_dir = "$garage_dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$garage_rpc"
rpc_public_addr = "127.0.0.1:$garage_rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$garage_s3"
root_domain = ".s3.garage.localhost"
EOF
chmod 600 "$garage_dir/garage.toml"
gcli() { "$garage" -c "$garage_dir/garage.toml" "$@"; }
# The binary itself in the background, not through gcli: a function sent to the background
# runs in a subshell, whose pid $! would be, and killing it left Garage running.
"$garage" -c "$garage_dir/garage.toml" server >"$garage_dir/server.log" 2>&1 &
garage_pid=$!
stop_garage() {
  kill "$garage_pid" 2>/dev/null || true
  wait "$garage_pid" 2>/dev/null || true
  rm -rf "$garage_dir"
}
earshot_stops+=(stop_garage)
trap 'for f in "${earshot_stops[@]}"; do "$f"; done' EXIT
# Ready once it answers over RPC: `node id` alone is no sign, as it reads the key from the
# metadata folder when the server does not answer yet, and the layout commands below then
# fail with "connection refused" (a fresh machine's first start was that slow).
garage_node=""
for _ in $(seq 1 300); do
  gcli status >/dev/null 2>&1 \
    && garage_node=$(gcli node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$garage_node" ] && break
  garage_node=""
  sleep 0.2
done
[ -n "$garage_node" ] || { cat "$garage_dir/server.log" >&2; echo "test: Garage did not start" >&2; exit 1; }
gcli layout assign -z dc1 -c 1G "$garage_node" >/dev/null
gcli layout apply --version 1 >/dev/null
# Keys of Garage's own form (GK + 24 hex digits, a 64-digit secret), imported rather than
# generated, so nothing has to be read back out of the tool's output.
hex() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
export EARSHOT_TEST_S3_KEY_ID="GK$(hex 12)" EARSHOT_TEST_S3_SECRET="$(hex 32)"
export EARSHOT_TEST_S3_RO_KEY_ID="GK$(hex 12)" EARSHOT_TEST_S3_RO_SECRET="$(hex 32)"
for _ in $(seq 1 50); do gcli bucket create earshot >/dev/null 2>&1 && break; sleep 0.2; done
gcli key import --yes -n earshot "$EARSHOT_TEST_S3_KEY_ID" "$EARSHOT_TEST_S3_SECRET" >/dev/null
gcli key import --yes -n earshot-read-only "$EARSHOT_TEST_S3_RO_KEY_ID" "$EARSHOT_TEST_S3_RO_SECRET" >/dev/null
gcli bucket allow --read --write earshot --key earshot >/dev/null
gcli bucket allow --read earshot --key earshot-read-only >/dev/null
export EARSHOT_TEST_S3_URL=s3://earshot
export EARSHOT_TEST_S3_ENDPOINT="http://127.0.0.1:$garage_s3"
export EARSHOT_TEST_S3_REGION=garage
echo "test: Garage $garage_version (S3) on 127.0.0.1:$garage_s3, bucket earshot" >&2
