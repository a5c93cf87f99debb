#!/usr/bin/env bash
# bench/chatter-load/smoke.sh: `make test-harness`, part of `make test`.
# Quick and bounded (about 35 s): the harness's self-test (histogram and
# scanners), its refusal of bad options, then 50 sessions, one sender, 3 s of
# fan-out against a server it spawns, asserting from its JSON that every
# acknowledged message reached all 50 sessions once and in order; the slow
# scenario's stopped readers, closed at the server's bound; and floor-gap,
# bench-chat's floor at a scenario's cadence, fixed or at random times.
set -euo pipefail
LOAD="${1:?usage: smoke.sh CHATTER_LOAD CHATTER}"
CHATTER="${2:?usage: smoke.sh CHATTER_LOAD CHATTER}"
OUT="$(dirname "$LOAD")/harness-smoke"
mkdir -p "$OUT"
pass=0 fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
ko() { echo "not ok - $1"; fail=$((fail + 1)); }

"$LOAD" --self-test >/dev/null && ok "self-test" || ko "self-test"

# Bad options: a clear message and exit status 2, nothing started.
for bad in "--sessions 0 --url ws://127.0.0.1:1/ws" "--senders 5 --sessions 2 --url ws://127.0.0.1:1/ws" \
           "--scenario nosuch --url ws://127.0.0.1:1/ws" "--rate 5000 --url ws://127.0.0.1:1/ws" \
           "--url http://example.org/ws" "--sessions 30000 --workers 1 --url ws://127.0.0.1:1/ws" \
           "--pad 1901 --url ws://127.0.0.1:1/ws"; do
  set +e; # shellcheck disable=SC2086
  msg="$("$LOAD" $bad 2>&1)"; rc=$?; set -e
  if [ $rc = 2 ] && [ -n "$msg" ]; then ok "refuses $bad"; else ko "refuses $bad (exit $rc)"; fi
done

# A real run.
set +e
timeout 120 "$LOAD" --scenario fanout --sessions 50 --slow 2 --duration 3 --ramp 0.5 --rate 4 \
  --spawn "$CHATTER" --server-log "$OUT/server.log" --json "$OUT/fanout.json" --quiet > "$OUT/fanout.txt" 2>&1
rc=$?
set -e
if [ $rc = 0 ]; then ok "fanout 50 sessions exits 0"; else ko "fanout 50 sessions exits 0 (got $rc)"; cat "$OUT/fanout.txt"; fi
node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const bad = [];
  if (j.joined !== 52) bad.push(`joined ${j.joined}`);
  // two slow sessions: far from any bound, kept, and read to their pong
  if (j.slow_kept !== 2 || j.slow_closed !== 0) bad.push(`slow kept ${j.slow_kept} closed ${j.slow_closed}`);
  if (!(j.acks >= 8)) bad.push(`acks ${j.acks}`);
  if (j.deliveries !== j.acks * 50) bad.push(`deliveries ${j.deliveries} != ${j.acks} x 50`);
  if (j.lost || j.dups || j.order) bad.push(`lost ${j.lost} dups ${j.dups} order ${j.order}`);
  if (!(j.deliver_p50_ms > 0 && j.deliver_max_ms >= j.deliver_p99_ms)) bad.push("latencies");
  if (bad.length) { console.log(bad.join(", ")); process.exit(1); }' "$OUT/fanout.json" \
  && ok "every acked message reached all 50 sessions once, in order" || ko "deliveries (see $OUT/fanout.txt)"

# slow: 3 sessions that never read, against a server whose kernel send
# buffer is 4 KiB (CHATTER_WS_SNDBUF), 5 senders at 4/s of 1,900-byte lines
# (40 kB/s to each socket): past 256 KiB queued (WS_OUTBOUND_MAX, about 7 s)
# each is closed, the readers lose nothing, and the run exits 0.
set +e
timeout 120 "$LOAD" --scenario slow --sessions 20 --senders 5 --slow 3 --rate 4 --pad 1900 --duration 9 \
  --ramp 0.5 --spawn "$CHATTER" --server-env CHATTER_WS_SNDBUF=4096 --server-log "$OUT/slow-server.log" \
  --json "$OUT/slow.json" --quiet > "$OUT/slow.txt" 2>&1
rc=$?
set -e
node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const bad = [];
  if (process.argv[2] !== "0") bad.push(`exit ${process.argv[2]}`);
  if (j.slow_closed !== 3) bad.push(`slow sessions closed: ${j.slow_closed} of 3`);
  if (j.closed_by_server !== 0) bad.push(`readers closed: ${j.closed_by_server}`);
  if (j.lost || j.dups || j.order || !(j.deliveries >= 100)) bad.push(`deliveries ${j.deliveries} lost ${j.lost} dups ${j.dups} order ${j.order}`);
  if (bad.length) { console.log(bad.join(", ")); process.exit(1); }' "$OUT/slow.json" "$rc" \
  && grep -q "client cannot keep up, closing with 1008" "$OUT/slow-server.log" \
  && ok "slow: 3 stopped readers closed at the push bound, the readers lose nothing" || { ko "slow (see $OUT/slow.txt)"; cat "$OUT/slow.txt"; }

# floor-gap (bench-chat's floor at a scenario's cadence): every figure
# present and the rounds' gap said, and bad arguments refused.
FLOOR_GAP="$(dirname "$LOAD")/floor-gap"
floor_gap_says() { # WHAT REGEX ARGS...: its one line matches REGEX
  local what="$1" re="$2" line
  shift 2
  line="$(timeout 30 "$FLOOR_GAP" "$@" 2>&1)" || true
  if printf '%s' "$line" | grep -Eq "$re"; then ok "$what"; else ko "$what: $line"; fi
}
floor_gap_refuses() { # WHAT ARGS...: exit 2 with a message
  local what="$1" msg rc
  shift
  set +e; msg="$("$FLOOR_GAP" "$@" 2>&1)"; rc=$?; set -e
  if [ $rc = 2 ] && [ -n "$msg" ]; then ok "$what"; else ko "$what (exit $rc)"; fi
}
# 50 sockets, 3 rounds 20 ms apart
floor_gap_says "floor-gap measures 3 rounds 20 ms apart" \
  '^floor-gap n=50 rounds=3 gap_ms=20 arrivals=fixed batch=1 uring=0 deliveries=150 cpu_s_per_100k=[0-9.]+ round_ms_mean=[0-9.]+ round_ms_max=[0-9.]+ wall_s=([1-9][0-9]*\.[0-9]+|0\.(0[6-9]|[1-9][0-9]))' \
  50 3 20
floor_gap_refuses "floor-gap refuses 0 sockets" 0 3 20
# at random times (chat's arrivals): 20 rounds 20 ms apart on average, so
# the run takes about 0.4 s, never the 0.0 s of no waiting at all
floor_gap_says "floor-gap measures 20 rounds at random, 20 ms apart on average" \
  '^floor-gap n=50 rounds=20 gap_ms=20 arrivals=poisson batch=1 uring=0 deliveries=1000 .* wall_s=(0\.[1-9][0-9]|[1-2]\.[0-9]+)$' \
  50 20 20 poisson
floor_gap_refuses "floor-gap refuses an unknown arrival law" 50 3 20 sometimes
# the server's batches (app/sendbatch.c): every send of 200 rounds to 300
# sockets checked whole (a short one exits 1), 128 asked per system call,
# and io_uring in use, or on a kernel that refuses it, one send(2) each
floor_gap_says "floor-gap batched: 60,000 sends, 128 per system call" \
  '^floor-gap n=300 rounds=200 gap_ms=0 arrivals=fixed batch=128 uring=[01] deliveries=60000 cpu_s_per_100k=[0-9.]+ ' \
  300 200 0 batched
echo "$pass passed, $fail failed"
[ $fail = 0 ]
