#!/usr/bin/env bash
# sql/devdb.sh: the private development PostgreSQL cluster under _build/pg.
#
# `make run` and `make test` use it when DATABASE_URL is unset, so that a new
# developer needs no PostgreSQL set-up of their own.  The cluster listens only
# on a Unix socket in _build/pg/run (listen_addresses=''), so it never clashes
# with another PostgreSQL on the machine and needs no password (trust auth on a
# socket only this machine's owner and root can reach).
#
#   bash sql/devdb.sh start    initdb if needed, start, create database chatter
#   bash sql/devdb.sh stop     fast shutdown; fine if it is not running
#   bash sql/devdb.sh url      print the libpq URI for DATABASE_URL
#   bash sql/devdb.sh status   say whether it runs (exit 0) or not (exit 3)
#
# Port: $CHATTER_PGPORT, else the port the cluster was last started with, else
# 5432.  Binaries: $PG_BINDIR, else /usr/lib/postgresql/15/bin.
#
# initdb and the server refuse to run as root, so when run as root they run as
# the `postgres` OS user (runuser, no sudo) and _build/pg belongs to it.  Tests
# stop and start the cluster under a running server, so both are quick and
# serialised by a lock file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PG="$ROOT/_build/pg"
DATA="$PG/data"
LOG="$PG/postgres.log"
BIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
DB=chatter
PGOS_USER=postgres

die() { echo "devdb: $*" >&2; exit 1; }

# The socket directory.  A Unix socket path is limited to 107 bytes; when the
# repo lies too deep for that, fall back to a per-repo directory under /tmp.
run_dir() {
  local d="$PG/run"
  if [ $(( ${#d} + 16 )) -gt 100 ]; then
    d="/tmp/chatter-pg-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
  fi
  printf '%s\n' "$d"
}
RUN="$(run_dir)"

# The port: explicit, else sticky from the last start, else the default.
port() {
  if [ -n "${CHATTER_PGPORT:-}" ]; then
    printf '%s\n' "$CHATTER_PGPORT"
  elif [ -r "$PG/port" ]; then
    cat "$PG/port"
  else
    echo 5432
  fi
}

as_root() { [ "$(id -u)" = 0 ]; }

# Runs a PostgreSQL server-side tool as the cluster's owner, from / so that a
# cwd the postgres user cannot read does not upset it.
as_owner() {
  if as_root; then
    (cd / && runuser -u "$PGOS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

# Every directory above _build/pg must be traversable by the postgres user,
# or the server cannot reach its data directory and socket.
open_path_for_owner() {
  as_root || return 0
  local d
  for d in "$PG" "$RUN"; do
    d="$(dirname "$d")"
    while [ "$d" != / ]; do
      if ! runuser -u "$PGOS_USER" -- test -x "$d" 2>/dev/null; then
        chmod o+x "$d"
      fi
      d="$(dirname "$d")"
    done
  done
}

make_dirs() {
  mkdir -p "$PG" "$RUN"
  if as_root; then
    id "$PGOS_USER" >/dev/null 2>&1 || die "no '$PGOS_USER' OS user: install postgresql-15"
    chown "$PGOS_USER": "$PG" "$RUN"
    # A data directory copied or restored by root: give it back (rarely needed,
    # so skipped when already right, to keep restarts quick).
    if [ -d "$DATA" ] && [ "$(stat -c %U "$DATA")" != "$PGOS_USER" ]; then
      chown -R "$PGOS_USER": "$DATA"
    fi
    open_path_for_owner
  fi
  chmod 0700 "$RUN"
}

initdb_if_needed() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  # A half-made data directory (initdb interrupted) is useless: start afresh.
  rm -rf "$DATA"
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$PG/initdb.log" 2>&1 \
    || { cat "$PG/initdb.log" >&2; die "initdb failed"; }
  echo "include_if_exists = 'chatter.conf'" >>"$DATA/postgresql.conf"
}

# Settings rewritten at every start, so the socket follows the repo if moved.
write_conf() {
  local conf="$DATA/chatter.conf"
  {
    echo "# written by sql/devdb.sh at every start"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$RUN'"
    echo "unix_socket_permissions = 0700"
    echo "port = $(port)"
    echo "max_connections = 200"
  } >"$conf"
  as_root && chown "$PGOS_USER": "$conf"
  port >"$PG/port.tmp" && mv "$PG/port.tmp" "$PG/port"
}

running() {
  [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

psql_admin() {
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$(port)" -U postgres -d postgres "$@"
}

create_db_if_missing() {
  local have
  have="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")"
  [ "$have" = 1 ] || psql_admin -c "CREATE DATABASE $DB" \
    || [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = 1 ]
}

cmd_start() {
  make_dirs
  initdb_if_needed
  if ! running; then
    write_conf
    touch "$LOG"; as_root && chown "$PGOS_USER": "$LOG"
    # 9>&-: the server must not inherit (and so hold for ever) the lock.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 9>&- \
      || { tail -n 20 "$LOG" >&2; die "pg_ctl start failed (log: $LOG)"; }
  fi
  create_db_if_missing
}

cmd_stop() {
  running || return 0
  as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
}

# Percent-encodes what a URI query value may not hold verbatim.
uri_escape() {
  local s="$1" out="" c i
  for (( i = 0; i < ${#s}; i++ )); do
    c="${s:i:1}"
    case "$c" in
      [A-Za-z0-9/._~-]) out+="$c" ;;
      *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s' "$out"
}

cmd_url() {
  printf 'postgresql://postgres@/%s?host=%s&port=%s\n' "$DB" "$(uri_escape "$RUN")" "$(port)"
}

cmd_status() {
  if running; then
    echo "running: $(cmd_url)"
  else
    echo "stopped"
    return 3
  fi
}

# Serialises start and stop: two suites starting the cluster at once must not
# both run initdb.
with_lock() {
  mkdir -p "$PG"
  exec 9>>"$PG/.lock"
  flock 9
  "$@"
}

case "${1:-}" in
  start)  with_lock cmd_start ;;
  stop)   with_lock cmd_stop ;;
  url)    cmd_url ;;
  status) cmd_status ;;
  *) echo "usage: bash sql/devdb.sh start|stop|url|status" >&2; exit 2 ;;
esac
