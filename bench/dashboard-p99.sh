#!/usr/bin/env bash
# bench/dashboard-p99.sh -- one chat run with or without a dashboard reader,
# for issue 9 §1: "reading it at 10 Hz while 20,000 sessions chat must not
# move the chat's p99".  Run it both ways, in turn (paired), and compare
# the delivery p99 each run prints.
#
#   bash bench/dashboard-p99.sh HZ VIEWERS [chatter-load options ...]
#   bash bench/dashboard-p99.sh 0 0 --sessions 2000 --senders 20 --rates 1 --duration 20
#   bash bench/dashboard-p99.sh 10 1 --sessions 2000 --senders 20 --rates 1 --duration 20
#
# VIEWERS 0: no dashboard open (no cost by design).  Otherwise VIEWERS
# sockets on /dashboard/ws, each asking a whole snapshot HZ times a second
# (bench/dashboard-reader.mjs) on top of the 5 deltas a second pushed.
# The server runs on CPU 0 (SERVER_CPUS), the harness and the reader on
# CPU 1 (LOAD_CPUS), as bench-chat.sh does; the server may hold 20,000
# descriptors (the machine's hard limit).  B picks the build (_build/default).
# Prints the chat's stage line and the reader's line; exit status is the
# harness's (1 on any loss, duplicate or order violation).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,19p' "$0"; exit 2; }
hz=$1 viewers=$2
shift 2
B=${B:-_build/default}
SERVER_CPUS=${SERVER_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1}
export DATABASE_URL="${DATABASE_URL:-$(bash sql/devdb.sh url)}"

tmp=$(mktemp -d /tmp/dashboard-p99.XXXXXX)
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
server=0 reader=0
cleanup() {
  [ "$reader" != 0 ] && kill "$reader" 2>/dev/null && wait "$reader" 2>/dev/null
  if [ "$server" != 0 ] && kill "$server" 2>/dev/null; then wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# One scheduler thread on the server's one CPU, as bench-chat.sh runs it: two
# would take turns on that core (the server "waited for a CPU" half of
# each run at 19,000 sessions) and their contention drowns the viewer's.
(ulimit -n 20000; PORT=$port CHATTER_NEW_USERS_PER_MINUTE=0 LOG_LEVEL=warn \
  CHATTER_THREADS="${CHATTER_THREADS:-1}" \
  exec taskset -c "$SERVER_CPUS" "$B/chatter") >"$tmp/server.log" 2>&1 &
server=$!
healthy() { # one GET /healthz over bash's /dev/tcp
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  local line; read -r line <&3 || true; exec 3<&-
  [[ $line == *" 200"* ]]
}
for i in $(seq 300); do healthy 2>/dev/null && break; sleep 0.1; done
healthy 2>/dev/null || { echo "server not healthy:"; cat "$tmp/server.log"; exit 1; }

if [ "$viewers" -gt 0 ]; then
  taskset -c "$LOAD_CPUS" node bench/dashboard-reader.mjs --url "ws://127.0.0.1:$port/dashboard/ws" \
    --hz "$hz" --viewers "$viewers" &
  reader=$!
fi

rc=0
"$B/chatter-load" --scenario chat --url "ws://127.0.0.1:$port/ws" --server-pid "$server" \
  --cpus "$LOAD_CPUS" --quiet --json "$tmp/run.json" "$@" >"$tmp/load.out" 2>&1 || rc=$?
cat "$tmp/load.out"
p99() { grep -o "\"$1\": *[0-9.]*" "$tmp/run.json" | grep -o '[0-9.]*$' || echo '?'; }
echo "RESULT viewers=$viewers hz=$hz deliver_p99_ms=$(p99 deliver_p99_ms) sent_p99_ms=$(p99 sent_p99_ms) status=$rc load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
exit $rc
