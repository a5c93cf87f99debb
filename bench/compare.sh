#!/usr/bin/env bash
# bench/compare.sh <dir-with-C-bench-binaries>
#
# Runs each of the six runtime benchmarks against its Erlang peer
# (bench/peers/erlang/) on this machine, side by side, RUNS times each
# (default 3; the order ours/BEAM alternates from run to run), takes the
# medians and prints a table: benchmark | ours | BEAM | ratio | target.
#
# The peers are compiled with erlc into _build/bench/erlang/ (never into the
# source tree) and run with plain `erl -noshell +S <schedulers>` (skynet with
# +P 2000000: 1,111,111 processes exceed the default limit of 262,144).
#
# Environment:
#   CHATTER_THREADS   our schedulers (default 2); the BEAM gets as many (+S)
#   RUNS              runs per side (default 3)
#   LOGGER_RUNS       runs of the information-only row "BEAM restart with OTP's
#                     logger on" (default 1: about a minute each)
#   QUICK=1           small N everywhere (a smoke test of the script, not a result)
#   TIMEOUT           seconds allowed per run (default 900)
set -euo pipefail

die() { echo "compare.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: bench/compare.sh <dir-with-C-bench-binaries>"
BIN_DIR=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS="$ROOT/bench/peers/erlang"
EBIN="$ROOT/_build/bench/erlang"

command -v erl >/dev/null 2>&1 ||
  die "erl not found: install Erlang/OTP (Debian: apt-get install -y erlang-base)"
command -v erlc >/dev/null 2>&1 ||
  die "erlc not found: install Erlang/OTP (Debian: apt-get install -y erlang-base)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"

BENCHES=(pingpong ring skynet fanout restart memory)
for b in "${BENCHES[@]}"; do
  [ -x "$BIN_DIR/$b" ] || die "missing benchmark binary $BIN_DIR/$b (run: make bench)"
  [ -f "$PEERS/$b.erl" ] || die "missing Erlang peer $PEERS/$b.erl"
done

export CHATTER_THREADS="${CHATTER_THREADS:-2}"
RUNS="${RUNS:-3}"
LOGGER_RUNS="${LOGGER_RUNS:-1}"
TIMEOUT="${TIMEOUT:-900}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ "$LOGGER_RUNS" =~ ^[0-9]+$ ]] || die "LOGGER_RUNS must be a non-negative integer"
[[ "$CHATTER_THREADS" =~ ^[1-9][0-9]*$ ]] || die "CHATTER_THREADS must be a positive integer"

mkdir -p "$EBIN"
erlc -o "$EBIN" "$PEERS"/*.erl || die "erlc failed on $PEERS"

# N per benchmark: empty = each program's default (the issue's sizes).
declare -A NARG=([pingpong]="" [ring]="" [skynet]="" [fanout]="" [restart]="" [memory]="")
if [ "${QUICK:-0}" = 1 ]; then
  NARG=([pingpong]=200000 [ring]=200000 [skynet]=10000 [fanout]=10 [restart]=2000 [memory]=10000)
fi

export ERL_CRASH_DUMP_SECONDS=0
LOG=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
trap 'rm -rf "$LOG"' EXIT
FAILED=0

# run_one <label> <cmd...>: prints the result line (name=...) or returns 1.
run_one() {
  local label=$1; shift
  local out="$LOG/out" err="$LOG/err" rc=0
  timeout "$TIMEOUT" "$@" >"$out" 2>"$err" || rc=$?
  local line
  line=$(grep -m1 '^name=' "$out" || true)
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    {
      echo "compare.sh: $label failed (exit $rc${line:+, after printing its result}):"
      [ $rc -eq 124 ] && echo "  timed out after ${TIMEOUT}s"
      tail -n 5 "$err" | sed 's/^/  | /'
    } >&2
    return 1
  fi
  echo "$line"
}

# field <line> <key>
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n1; }

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {
  if (NR == 0) exit 1; if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }

declare -A OURS_RATE BEAM_RATE OURS_SEC BEAM_SEC OURS_BPA BEAM_BPA BEAM_RSS_BPA

# collect <key> <bench> [<beam-extra-arg> [beam-only [runs]]]
collect() {
  local key=$1 b=$2 extra=${3:-} only=${4:-} runs=${5:-$RUNS}
  local -a our_rates=() beam_rates=() our_secs=() beam_secs=() our_bpa=() beam_bpa=() beam_rss=()
  local i line side n=${NARG[$b]}
  local -a ours=("$BIN_DIR/$b") beam=(erl -noshell +S "$CHATTER_THREADS" -pa "$EBIN" -run "$b" main)
  [ -n "$n" ] && ours+=("$n")
  [ "$b" = skynet ] && beam=(erl -noshell +S "$CHATTER_THREADS" +P 2000000 -pa "$EBIN" -run "$b" main)
  [ -n "$extra" ] && [ -z "$n" ] && n=100000 # the peer's default, needed before `extra`
  [ -n "$n" ] && beam+=("$n")
  [ -n "$extra" ] && beam+=("$extra")
  for ((i = 1; i <= runs; i++)); do
    local order="ours beam"; [ $((i % 2)) -eq 0 ] && order="beam ours"
    for side in $order; do
      [ "$only" = beam-only ] && [ "$side" = ours ] && continue
      if [ "$side" = ours ]; then
        line=$(run_one "$b (ours, run $i)" "${ours[@]}") || { FAILED=1; continue; }
        our_rates+=("$(field "$line" rate)"); our_secs+=("$(field "$line" seconds)")
        [ "$b" = memory ] && our_bpa+=("$(field "$line" bytes_per_actor)")
      else
        line=$(run_one "$key (BEAM, run $i)" "${beam[@]}") || { FAILED=1; continue; }
        beam_rates+=("$(field "$line" rate)"); beam_secs+=("$(field "$line" seconds)")
        if [ "$b" = memory ]; then
          beam_bpa+=("$(field "$line" bytes_per_actor)")
          beam_rss+=("$(field "$line" rss_bytes_per_actor)")
        fi
      fi
      echo "  $side: $line" >&2
    done
  done
  [ ${#our_rates[@]} -gt 0 ] && OURS_RATE[$key]=$(median "${our_rates[@]}") && OURS_SEC[$key]=$(median "${our_secs[@]}")
  [ ${#beam_rates[@]} -gt 0 ] && BEAM_RATE[$key]=$(median "${beam_rates[@]}") && BEAM_SEC[$key]=$(median "${beam_secs[@]}")
  [ ${#our_bpa[@]} -gt 0 ] && OURS_BPA[$key]=$(median "${our_bpa[@]}")
  [ ${#beam_bpa[@]} -gt 0 ] && BEAM_BPA[$key]=$(median "${beam_bpa[@]}") && BEAM_RSS_BPA[$key]=$(median "${beam_rss[@]}")
  return 0
}

echo "compare.sh: $RUNS runs per side, $CHATTER_THREADS schedulers each," \
  "$(erl -noshell -eval 'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().')," \
  "$(nproc) cores$([ "${QUICK:-0}" = 1 ] && echo ", QUICK sizes")" >&2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for b in "${BENCHES[@]}"; do
  echo "== $b" >&2
  collect "$b" "$b"
done
# The restart peer silences OTP's logger by default (ours logs nothing on a
# crash); this extra row keeps OTP's logger as shipped (two crash reports per
# restart), the figure the issue quotes.
echo "== restart (BEAM with OTP's default logger)" >&2
collect restart_logger restart logger beam-only "$LOGGER_RUNS"
OURS_RATE[restart_logger]=${OURS_RATE[restart]:-} # ours: the same program as the restart row

# ------------------------------------------------------------------ table
fmt() { # integer with thousands separators, or "-"
  [ -n "${1:-}" ] || { echo "-"; return; }
  awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = "";
    while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    print s o }'
}
ratio() { # a / b with 2 decimals, or "-"
  [ -n "${1:-}" ] && [ -n "${2:-}" ] || { echo "-"; return; }
  awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx\n", a / b }'
}

row() { printf '| %-34s | %14s | %14s | %8s | %-14s |\n' "$@"; }

echo
echo "Ratio: rates ours/BEAM; skynet seconds and memory BEAM/ours. In every row ratio > 1 means ours is better."
row "benchmark" "ours" "BEAM" "ratio" "target"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "----------------" \
  "----------------" "----------" "----------------"
row "pingpong (round trips/s)" "$(fmt "${OURS_RATE[pingpong]:-}")" "$(fmt "${BEAM_RATE[pingpong]:-}")" \
  "$(ratio "${OURS_RATE[pingpong]:-}" "${BEAM_RATE[pingpong]:-}")" ">= 3x"
row "ring (hops/s)" "$(fmt "${OURS_RATE[ring]:-}")" "$(fmt "${BEAM_RATE[ring]:-}")" \
  "$(ratio "${OURS_RATE[ring]:-}" "${BEAM_RATE[ring]:-}")" ">= 3x"
row "skynet (actors/s)" "$(fmt "${OURS_RATE[skynet]:-}")" "$(fmt "${BEAM_RATE[skynet]:-}")" \
  "$(ratio "${OURS_RATE[skynet]:-}" "${BEAM_RATE[skynet]:-}")" ">= 3x"
row "skynet (seconds, lower is better)" "${OURS_SEC[skynet]:--}" "${BEAM_SEC[skynet]:--}" \
  "$(ratio "${BEAM_SEC[skynet]:-}" "${OURS_SEC[skynet]:-}")" ">= 3x"
row "fanout (deliveries/s)" "$(fmt "${OURS_RATE[fanout]:-}")" "$(fmt "${BEAM_RATE[fanout]:-}")" \
  "$(ratio "${OURS_RATE[fanout]:-}" "${BEAM_RATE[fanout]:-}")" ">= 3x"
row "restart (restarts/s)" "$(fmt "${OURS_RATE[restart]:-}")" "$(fmt "${BEAM_RATE[restart]:-}")" \
  "$(ratio "${OURS_RATE[restart]:-}" "${BEAM_RATE[restart]:-}")" ">= 10x"
row "restart, BEAM logging crashes" "$(fmt "${OURS_RATE[restart_logger]:-}")" \
  "$(fmt "${BEAM_RATE[restart_logger]:-}")" \
  "$(ratio "${OURS_RATE[restart_logger]:-}" "${BEAM_RATE[restart_logger]:-}")" "(information)"
row "memory (bytes per idle actor)" "$(fmt "${OURS_BPA[memory]:-}")" "$(fmt "${BEAM_BPA[memory]:-}")" \
  "$(ratio "${BEAM_BPA[memory]:-}" "${OURS_BPA[memory]:-}")" "<= 512 B"
echo
echo "Medians of $RUNS runs. Memory: ours from the RSS delta; BEAM's from erlang:memory(processes)" \
  "(its RSS delta: $(fmt "${BEAM_RSS_BPA[memory]:-}") B). BEAM restart: logger silenced, as ours" \
  "logs nothing; the next row keeps OTP's default logger (two crash reports per restart;" \
  "$LOGGER_RUNS run)."
echo "Load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews both sides)."

[ "$FAILED" = 0 ] || die "some runs failed (see above); their figures are missing from the medians"
