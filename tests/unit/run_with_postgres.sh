#!/bin/sh
# Runs each test binary given with FC_TEST_PG_DSN pointing at a throwaway
# PostgreSQL: initdb (as the postgres user) into a temp folder, a server on a
# free loopback port with its socket in that folder, a role and database
# flowcast (trust, loopback only). The server is stopped and the folder
# removed on every exit, failures included. The binaries must exist: the
# suite fails (never skips) without PostgreSQL; scripts/setup installs it.
set -eu
PG_BIN=${FC_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/fc-pg-unit-XXXXXX)
chown postgres "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
# A free port below the kernel's ephemeral range, from a place given by the
# pid. Not bind(0): the port stays unbound through initdb (seconds), and an
# ephemeral one can meanwhile become the local port of any connect() on the
# machine (a unit test running beside this one), which PostgreSQL then
# cannot listen on.
port=$(/usr/bin/python3 "$(dirname "$0")/../../scripts/free-port" "$$")
[ -n "$port" ] || { echo "run_with_postgres.sh: no free port" >&2; exit 1; }
as_pg "$PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log"; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null ||
    { cat "$dir/log"; exit 1; }
as_pg psql -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE ROLE flowcast LOGIN CREATEDB" -c "CREATE DATABASE flowcast OWNER flowcast"
export FC_TEST_PG_DSN="postgres://flowcast@127.0.0.1:$port/flowcast"
status=0
for t in "$@"; do
    echo "== $(basename "$t") on PostgreSQL"
    "$t" || status=1
done
exit $status
