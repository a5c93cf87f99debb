#!/usr/bin/env bash
# bench/peers/node/createdb.sh: a fresh database for the Node peer (or any
# named one) on the project's private PostgreSQL cluster, and its URL on stdout.
#   bash bench/peers/node/createdb.sh [NAME]     (default chatter_node)
# The database is dropped and made anew, so that each benchmark starts from
# the same empty state; the peer creates its tables at start (same schema as
# sql/ plus protocol v2's client_id).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
NAME="${1:-chatter_node}"
case "$NAME" in (*[!a-z0-9_]*|"") echo "createdb.sh: name must be [a-z0-9_]+" >&2; exit 2;; esac
BASE="${DATABASE_URL:-$(bash "$ROOT/sql/devdb.sh" url)}"
URL="$(printf '%s' "$BASE" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$NAME#")"
psql -q "$BASE" -c "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" -c "CREATE DATABASE $NAME" >/dev/null
printf '%s\n' "$URL"
