# Sourced by scripts/test: make a PostgreSQL server available to the tests and export its
# DSN as GATEWAY_TEST_PG_DSN (the store tests make one schema per test in it and drop only
# those). Uses the server at 127.0.0.1:5432 when one answers (trust auth, user postgres),
# else starts a private cluster with initdb/pg_ctl in a temporary directory on a free port;
# _pg_stop (called by scripts/test on exit) stops and removes only that private cluster.
# GATEWAY_TEST_PG_PRIVATE=1 skips the shared server (to try the fresh-machine path).

_pg_dir=""
_pg_bin=""

_pg_find_bin() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    _pg_bin="$(dirname "$(command -v pg_ctl)")"; return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { _pg_bin="$d"; return 0; }
  done
  return 1
}

_pg_as() {  # initdb and postgres refuse to run as root: run them as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_stop() {
  if [ -n "$_pg_dir" ] && [ -d "$_pg_dir/data" ]; then
    _pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$_pg_dir"
  fi
}

_pg_shared() {
  command -v psql >/dev/null 2>&1 || return 1
  psql "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3" -Atqc 'SELECT 1' >/dev/null 2>&1 || return 1
  if [ "$(psql "host=127.0.0.1 port=5432 user=postgres dbname=postgres" -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'gateway_test'")" != 1 ]; then
    psql "host=127.0.0.1 port=5432 user=postgres dbname=postgres" -qc 'CREATE DATABASE gateway_test' >/dev/null 2>&1 || true
  fi
  export GATEWAY_TEST_PG_DSN="host=127.0.0.1 port=5432 user=postgres dbname=gateway_test"
}

_pg_private() {
  if ! _pg_find_bin; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing system packages: postgresql"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
    _pg_find_bin || { echo "warning: no PostgreSQL server and no initdb; PostgreSQL tests will be skipped" >&2; return 0; }
  fi
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  _pg_dir="$(mktemp -d -t gateway-pg.XXXXXX)"
  trap _pg_stop EXIT  # also when starting fails halfway
  [ "$(id -u)" = 0 ] && chown postgres "$_pg_dir"
  echo "starting a private PostgreSQL on 127.0.0.1:$port ($_pg_bin)"
  _pg_as "$_pg_bin/initdb" -D "$_pg_dir/data" -A trust -U postgres --no-sync >"$_pg_dir/initdb.log" 2>&1 \
    || { cat "$_pg_dir/initdb.log" >&2; return 1; }
  _pg_as "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 60 \
    -o "-p $port -k $_pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$_pg_dir/server.log" >&2; return 1; }
  local psql_bin="$_pg_bin/psql"
  [ -x "$psql_bin" ] || psql_bin=psql
  "$psql_bin" "host=127.0.0.1 port=$port user=postgres dbname=postgres" -qc 'CREATE DATABASE gateway_test' >/dev/null
  export GATEWAY_TEST_PG_DSN="host=127.0.0.1 port=$port user=postgres dbname=gateway_test"
}

if [ -z "${GATEWAY_TEST_PG_DSN:-}" ]; then
  if [ "${GATEWAY_TEST_PG_PRIVATE:-}" = 1 ] || ! _pg_shared; then
    _pg_private
  fi
fi
