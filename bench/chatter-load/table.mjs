// bench/chatter-load/table.mjs: the one table of `make bench-chat`, from the
// JSON files chatter-load wrote (DIR/{chatter,node}-SCENARIO.json) and the
// floor's output lines (DIR/floor-N.txt).
// and floor-gap's (DIR/floor-gap-N-GAP.txt: floor.c's measurement at the
// scenario's cadence, one message per socket every GAP ms; and
// DIR/floor-gap-N-GAP-poisson.txt: at random times, GAP ms apart on average,
// as chat's messages reach a socket).
//   node bench/chatter-load/table.mjs DIR N_FANOUT N_SMALL GAP_FANOUT GAP_CHAT
import fs from 'node:fs';
import path from 'node:path';

const [dir, nBig, nSmall, gapFanout, gapChat] = process.argv.slice(2);
const load = (f) => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')); } catch { return null; } };
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};
const keysOf = (f) => {
  try {
    const line = fs.readFileSync(path.join(dir, f), 'utf8');
    return Object.fromEntries([...line.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])]));
  } catch { return null; }
};
// floor.c's runs at N sockets (DIR/floor-N-K.txt, bench-chat.sh FLOOR_RUNS):
// each figure is the median of the runs'; floor-gap's are one run each.
const floorRuns = {};
// variant: '', 'poisson', 'batched' or 'poisson-batched' (bench-chat.sh floor_gap)
const floorOf = (n, gap, variant = '') => {
  if (gap) return keysOf(`floor-gap-${n}-${gap}${variant ? `-${variant}` : ''}.txt`);
  const runs = fs.readdirSync(dir).filter((f) => new RegExp(`^floor-${n}-\\d+\\.txt$`).test(f))
    .sort((a, b) => Number(a.match(/-(\d+)\.txt$/)[1]) - Number(b.match(/-(\d+)\.txt$/)[1]))
    .map(keysOf).filter((k) => k && k.round_ms_mean != null);
  if (!runs.length) return keysOf(`floor-${n}.txt`);
  floorRuns[n] = runs;
  const keys = Object.keys(runs[0]);
  return Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k]))]));
};
const flSmall = floorOf(nSmall);
const fl = { fanout: floorOf(nBig), fanout2k: flSmall, chat: flSmall };
// The same floor with the scenario's time between two messages to a socket:
// past the receiver's 200 ms retransmission timeout its kernel ACKs at once,
// on the sender's core (floor_gap.c says what that costs).
const flGap = { fanout: floorOf(nBig, gapFanout), fanout2k: floorOf(nSmall, gapFanout), chat: floorOf(nSmall, gapChat) };
// The same sends through the server's own batches (floor_gap.c "batched"):
// floor.c's 2 ms rounds, and fanout's cadence.
const flBatched = { fanout: floorOf(nBig, 2, 'batched'), fanout2k: floorOf(nSmall, 2, 'batched') };
const flBatchedGap = { fanout: floorOf(nBig, gapFanout, 'batched'), fanout2k: floorOf(nSmall, gapFanout, 'batched') };

const fmt = (v, d = 1) => (v == null || Number.isNaN(v) ? '' : typeof v === 'string' ? v
  : Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(d));
const ratio = (a, b) => (a == null || b == null || !b || typeof a === 'string' ? '' : (a / b).toFixed(2) + 'x');

const rows = [];
function row(sc, figure, get, floorVal, d) {
  const c = load(`chatter-${sc}.json`), n = load(`node-${sc}.json`);
  // a latency figure of a run where nothing arrived is no figure
  const has = (j) => j && !(/delivery|spread/.test(figure) && !(j.deliver_n > 0));
  const cv = has(c) ? get(c, 'chatter') : null, nv = has(n) ? get(n, 'node') : null;
  const mark = (j, v) => (j && j.harness_bound && v != null ? ' (h)' : '');
  rows.push([sc, figure, fmt(cv, d) + mark(c, cv), fmt(nv, d) + mark(n, nv), fmt(floorVal, d), ratio(cv, nv), ratio(cv, floorVal)]);
}
// "*": the drain hit its bound; what was missing then was late, maybe not lost
const lostDup = (j) => `${j.lost}${j.drain_cut ? '*' : ''}/${j.dups}/${j.order}`;

row('idle', 'sessions joined', (j) => j.joined, null, 0);
row('idle', 'server RSS per joined session (B)', (j) => j.server_rss_per_session_b, null, 0);
row('idle', 'join p99 (ms)', (j) => j.join_p99_ms, null, 0);
row('idle', 'closed by the server (1008: outbound bound)', (j) => j.closed_by_server, null, 0);
for (const sc of ['fanout', 'fanout2k']) {
  const f = fl[sc];
  row(sc, 'sessions joined', (j) => j.joined, null, 0);
  row(sc, 'closed by the server', (j) => j.closed_by_server, null, 0);
  row(sc, 'delivery p50 (ms)', (j) => j.deliver_p50_ms, null);
  row(sc, 'delivery p99 (ms)', (j) => j.deliver_p99_ms, null);
  row(sc, 'burst spread p50 (ms; floor: one round)', (j) => j.spread_p50_ms, f && f.round_ms_mean);
  row(sc, 'server CPU-s per 100k deliveries', (j) => j.server_cpu_per_100k, f && f.cpu_s_per_100k, 3);
  const g = flGap[sc];
  row(sc, `burst spread p50 (ms; floor: one round ${gapFanout} ms apart)`, (j) => j.spread_p50_ms, g && g.round_ms_mean);
  row(sc, `server CPU-s per 100k (floor: rounds ${gapFanout} ms apart)`, (j) => j.server_cpu_per_100k, g && g.cpu_s_per_100k, 3);
  const b = flBatched[sc], bg = flBatchedGap[sc];
  if (b) row(sc, 'burst spread p50 (ms; floor: one round, sends batched)', (j) => j.spread_p50_ms, b.round_ms_mean);
  if (b) row(sc, 'server CPU-s per 100k (floor: the same, batched)', (j) => j.server_cpu_per_100k, b.cpu_s_per_100k, 3);
  if (bg) row(sc, `server CPU-s per 100k (floor: rounds ${gapFanout} ms apart, batched)`, (j) => j.server_cpu_per_100k, bg.cpu_s_per_100k, 3);
  row(sc, 'lost/dup/order', lostDup, null);
}
row('chat', 'highest rate held, p99<50ms (deliveries/s)', (j) => j.held_deliveries_per_s, null, 0);
row('chat', 'highest rate held (msgs/s)', (j) => j.held_msgs_per_s, null, 0);
row('chat', 'delivery p99, all stages run (ms)', (j) => j.deliver_p99_ms, null);
row('chat', 'server CPU-s per 100k deliveries, all stages run', (j) => j.server_cpu_per_100k, fl.chat && fl.chat.cpu_s_per_100k, 3);
// Both servers run the first stage (4 msg/s): the same load, compared alike.
row('chat', 'server CPU-s per 100k deliveries, first stage', (j) => j.stage0_server_cpu_per_100k, fl.chat && fl.chat.cpu_s_per_100k, 3);
// A chat stage's CPU against floor_gap.c at its cadence, one message to
// every socket every GAP ms: rounds that far apart (unless the stage's own
// row is already against them), then rounds at random times as often (the
// stage's arrivals: 200 senders' timers at random phases).
function stageFloorRows(sc, get, gap, evenToo = true) {
  const even = floorOf(nSmall, gap), random = floorOf(nSmall, gap, 'poisson');
  if (evenToo && even) row(sc, `the same, floor: rounds ${gap} ms apart (the stage's cadence)`, get, even.cpu_s_per_100k, 3);
  if (random)
    row(sc, `the same, floor: rounds at random, ${gap} ms apart on average (the stage's arrivals)`, get, random.cpu_s_per_100k, 3);
}
stageFloorRows('chat', (j) => j.stage0_server_cpu_per_100k, gapChat);
{
  const b = flBatched.fanout2k, bp = floorOf(nSmall, gapChat, 'poisson-batched');
  if (b) row('chat', 'the same, floor: floor.c\'s rounds, sends batched', (j) => j.stage0_server_cpu_per_100k, b.cpu_s_per_100k, 3);
  if (bp) row('chat', `the same, floor: the stage's arrivals, sends batched`, (j) => j.stage0_server_cpu_per_100k, bp.cpu_s_per_100k, 3);
}
row('chat', 'lost/dup/order', lostDup, null);
// ladder: chat's stages, every one run by both servers whatever its p99
// (chatter-load --every-stage), so that CPU is compared at equal rates;
// past about 4 msg/s per socket a server that writes several messages in
// one sendmsg pays less than one write per delivery
{
  const c = load('chatter-ladder.json'), n = load('node-ladder.json');
  for (let g = 0; ; g++) {
    const rate = (c && c[`stage${g}_msgs_per_s`]) ?? (n && n[`stage${g}_msgs_per_s`]);
    if (rate == null) break; /* past the last stage either server ran */
    row('ladder', `${rate} msg/s: delivery p99 (ms)`, (j) => j[`stage${g}_p99_ms`], null);
    row('ladder', `${rate} msg/s: server CPU-s per 100k deliveries`, (j) => j[`stage${g}_server_cpu_per_100k`],
      g === 0 ? flGap.chat && flGap.chat.cpu_s_per_100k : fl.chat && fl.chat.cpu_s_per_100k, 3);
    // the first stage's row is against its cadence already
    stageFloorRows('ladder', (j) => j[`stage${g}_server_cpu_per_100k`], Math.round(1000 / rate), g > 0);
  }
  row('ladder', 'lost/dup/order', lostDup, null);
}
// chat2, slow and crash run one load (bench-chat.sh SLOW_LOAD)
row('chat2', "plain chat at slow's load: delivery p99 (ms)", (j) => j.deliver_p99_ms, null);
// (2 kB frames: the floor's 230-byte ones are no floor for them)
row('chat2', 'server CPU-s per 100k deliveries', (j) => j.server_cpu_per_100k, null, 3);
row('chat2', 'server RSS peak while sending (MB)', (j) => j.server_rss_peak_kb / 1024, null);
row('chat2', 'lost/dup/order', lostDup, null);
for (const sc of ['fanout', 'fanout2k', 'chat', 'chat2', 'storm', 'slow'])
  row(sc, 'server waited for a CPU (% of the window)', (j) => (j.window_s ? 100 * j.server_runq_wait_s / j.window_s : null), null, 0);
row('storm', 'sessions back and caught up', (j) => j.storm_back, null, 0);
row('storm', 'drop to caught up, max (ms)', (j) => j.recovery_max_ms, null, 0);
row('storm', 'lost/dup/order', lostDup, null);
row('slow', 'delivery p99 of the readers (ms)', (j) => j.deliver_p99_ms, null);
// issue 6's target: within 10% of the plain run (chat2) of the same server
// (pairs: bench-chat.sh SLOW_PAIRS; the first is chat2 and slow above)
const pairRatios = (who) => {
  const out = [];
  for (let k = 1; ; k++) {
    const sfx = k === 1 ? '' : `-${k}`;
    const a = load(`${who}-slow${sfx}.json`), b = load(`${who}-chat2${sfx}.json`);
    if (!a || !b) break;
    if (b.deliver_p99_ms > 0 && a.deliver_p99_ms != null) out.push(a.deliver_p99_ms / b.deliver_p99_ms);
  }
  return out;
};
const pairs = { chatter: pairRatios('chatter'), node: pairRatios('node') };
row('slow', "the readers' p99 over chat2's (x), median of the pairs", (j, who) => median(pairs[who]), null, 2);
row('slow', "the same, each pair (chat2's run and then slow's)", (j, who) =>
  pairs[who].map((r) => r.toFixed(2)).join(', ') || null, null);
row('slow', 'slow sessions closed by the server', (j) => (j.slow_closed == null ? null : `${j.slow_closed} of ${j.slow}`), null);
row('slow', 'server RSS peak while sending (MB)', (j) => j.server_rss_peak_kb / 1024, null);
row('slow', 'lost/dup/order', lostDup, null);
row('crash', 'delivery p99 (ms)', (j) => j.deliver_p99_ms, null);
row('crash', 'lost/dup/order', lostDup, null);

const head = ['scenario', 'figure', 'Chatter', 'Node peer', 'floor', 'Chatter/Node', 'Chatter/floor'];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (r) => '| ' + r.map((c, i) => (i < 2 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join(' | ') + ' |';
console.log(line(head));
console.log('|' + w.map((x, i) => (i < 2 ? '-'.repeat(x + 2) : '-'.repeat(x + 1) + ':')).join('|') + '|');
for (const r of rows) console.log(line(r));
console.log('\n(h): the harness was runnable (running or waiting for a CPU) over 85% of the send window of that run: the figure is a floor for that server, not its ceiling.' +
  ' lost/dup/order: (receiver, message) pairs never delivered / delivered twice / out of seq order; * the drain hit its 30 s bound, so missing ones may be late rather than lost. Ratios: Chatter divided by the other;' +
  ' for latency, RSS and CPU lower is better, for rates higher is better. The Node peer has no chaos switch, so crash is Chatter only.' +
  ' floor: ../shared/floor/floor.c (rounds 2 ms apart), the median of its runs (below); "rounds N ms apart": the same measurement by bench/chatter-load/floor_gap.c at the scenario\'s cadence;' +
  ` ladder: its first stage against floor_gap.c at ${gapChat} ms (its cadence), the others against floor.c and then floor_gap.c at their own cadence;` +
  ' "rounds at random": floor_gap.c poisson, rounds at random times as often, as 200 senders at random phases reach a socket;' +
  ' "sends batched": floor_gap.c batched, the same sends 128 per system call through the server\'s own app/sendbatch.c (io_uring), one run each.');
const runsLine = Object.entries(floorRuns).map(([n, runs]) => `${Number(n).toLocaleString('en-US')} sockets, round ${
  runs.map((r) => r.round_ms_mean.toFixed(1)).join(', ')} ms, CPU-s per 100k ${runs.map((r) => r.cpu_s_per_100k.toFixed(3)).join(', ')}`);
if (runsLine.length) console.log(`\nfloor.c's runs (one before the scenarios, the others after): ${runsLine.join('; ')}.`);
