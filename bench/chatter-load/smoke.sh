#!/usr/bin/env bash
# bench/chatter-load/smoke.sh: `make test-harness`, part of `make test`.
# Quick and bounded (about 10 s): the harness's self-test (histogram and
# scanners), its refusal of bad options, then 50 sessions, one sender, 3 s of
# fan-out against a server it spawns, asserting from its JSON that every
# acknowledged message reached all 50 sessions once and in order; and
# floor-gap, bench-chat's floor at a scenario's cadence.
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
           "--url http://example.org/ws" "--sessions 30000 --workers 1 --url ws://127.0.0.1:1/ws"; do
  set +e; # shellcheck disable=SC2086
  msg="$("$LOAD" $bad 2>&1)"; rc=$?; set -e
  if [ $rc = 2 ] && [ -n "$msg" ]; then ok "refuses $bad"; else ko "refuses $bad (exit $rc)"; fi
done

# A real run.
set +e
timeout 120 "$LOAD" --scenario fanout --sessions 50 --duration 3 --ramp 0.5 --rate 4 \
  --spawn "$CHATTER" --server-log "$OUT/server.log" --json "$OUT/fanout.json" --quiet > "$OUT/fanout.txt" 2>&1
rc=$?
set -e
if [ $rc = 0 ]; then ok "fanout 50 sessions exits 0"; else ko "fanout 50 sessions exits 0 (got $rc)"; cat "$OUT/fanout.txt"; fi
node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const bad = [];
  if (j.joined !== 50) bad.push(`joined ${j.joined}`);
  if (!(j.acks >= 8)) bad.push(`acks ${j.acks}`);
  if (j.deliveries !== j.acks * 50) bad.push(`deliveries ${j.deliveries} != ${j.acks} x 50`);
  if (j.lost || j.dups || j.order) bad.push(`lost ${j.lost} dups ${j.dups} order ${j.order}`);
  if (!(j.deliver_p50_ms > 0 && j.deliver_max_ms >= j.deliver_p99_ms)) bad.push("latencies");
  if (bad.length) { console.log(bad.join(", ")); process.exit(1); }' "$OUT/fanout.json" \
  && ok "every acked message reached all 50 sessions once, in order" || ko "deliveries (see $OUT/fanout.txt)"

# floor-gap (bench-chat's floor at a scenario's cadence): 50 sockets, 3
# rounds 20 ms apart, every figure present and the rounds' gap said.
FLOOR_GAP="$(dirname "$LOAD")/floor-gap"
line="$(timeout 30 "$FLOOR_GAP" 50 3 20 2>&1)" || true
if printf '%s' "$line" | grep -Eq '^floor-gap n=50 rounds=3 gap_ms=20 deliveries=150 cpu_s_per_100k=[0-9.]+ round_ms_mean=[0-9.]+ round_ms_max=[0-9.]+ wall_s=([1-9][0-9]*\.[0-9]+|0\.(0[6-9]|[1-9][0-9]))'; then
  ok "floor-gap measures 3 rounds 20 ms apart"
else ko "floor-gap: $line"; fi
set +e; msg="$("$FLOOR_GAP" 0 3 20 2>&1)"; rc=$?; set -e
if [ $rc = 2 ] && [ -n "$msg" ]; then ok "floor-gap refuses 0 sockets"; else ko "floor-gap refuses 0 sockets (exit $rc)"; fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
