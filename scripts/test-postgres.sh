#!/usr/bin/env bash
# Sourced by scripts/test.sh: a throw-away PostgreSQL server for the tests of the PostgreSQL
# backend. Installs Debian's postgresql when no server is there, makes a cluster in a temp
# folder (as the postgres user when run as root, since initdb refuses root), starts it on a
# free loopback port, exports EARSHOT_TEST_DATABASE_URL, and stops and removes it on exit.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  source scripts/lib/apt.sh
  apt_install "test (the PostgreSQL backend's tests)" postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
pg_dir=$(mktemp -d /tmp/earshot-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$pg_dir"
  as_pg=(runuser -u postgres --)
fi
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# C.UTF-8, not C: in the C locale PostgreSQL's search lower-cases only ASCII, and Cyrillic
# words would not match across case.
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U earshot -A trust -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 1; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null \
  || { cat "$pg_dir/server.log" >&2; exit 1; }
stop_postgres() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
earshot_stops+=(stop_postgres)
trap 'for f in "${earshot_stops[@]}"; do "$f"; done' EXIT
export EARSHOT_TEST_DATABASE_URL="postgres://earshot@127.0.0.1:$pg_port/postgres"
echo "test: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port" >&2
