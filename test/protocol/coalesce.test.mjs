// Presence diffs are coalesced (PROTOCOL.md): two diffs to one socket are at
// least 50 ms apart, no change waits more than 100 ms, and a wave of N joins
// costs each socket a few diffs, not N.  Arrival times are taken by an
// observer in its own worker thread (the main thread is busy driving the
// wave, and a busy reader sees frames bunched however they were sent).  The
// observer also ticks every 5 ms and records when its thread was held up
// (on a shared 2-core machine it can be descheduled for 100 ms): two diffs
// that arrive closer than 40 ms are excused only when such a stall explains
// it, that is, when they came out of one stall together, or (once) when the
// earlier one came late and the gap before it is long by as much.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive, MANY_USERS } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: MANY_USERS }); });
after(async () => { await closeAll(); await server?.stop(); });

// The observer: connects, reports when welcomed, records the arrival time of
// every presence_diff (with the names it carries) until told to stop.
const OBSERVER = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const WebSocket = require(workerData.ws);
const ws = new WebSocket(workerData.url, { perMessageDeflate: false });
const diffs = [];
const stalls = [];
let last = performance.now();
setInterval(() => {
  const now = performance.now();
  if (now - last > 15) stalls.push([last, now]);
  last = now;
}, 5);
ws.on('message', (data) => {
  const at = performance.now();
  const f = JSON.parse(data.toString());
  if (f.type === 'welcome') parentPort.postMessage({ welcomed: true });
  if (f.type === 'presence_diff') diffs.push({ at, joins: Object.keys(f.joins), leaves: Object.keys(f.leaves) });
});
parentPort.on('message', () => { ws.terminate(); parentPort.postMessage({ diffs, stalls }); });
`;

test('a wave of joins and leaves: diffs >= 50 ms apart, far fewer than changes, none lost', async () => {
  const { createRequire } = await import('node:module');
  const wsPath = createRequire(import.meta.url).resolve('ws');
  const worker = new Worker(OBSERVER, { eval: true, workerData: { url: server.wsUrl, ws: wsPath } });
  let failed;
  worker.once('error', (e) => { failed = e; });
  const fromWorker = () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(failed || new Error('observer worker: no answer in 10 s')), 10000);
    worker.once('message', (m) => { clearTimeout(t); resolve(m); });
    worker.once('error', (e) => { clearTimeout(t); reject(e); });
  });
  await fromWorker(); // welcomed
  // a second observer on this thread says when every leave has gone out
  const obs = await connect(server.wsUrl);
  const N = 40;
  const t0 = performance.now();
  const socks = await Promise.all(Array.from({ length: N }, () => connect(server.wsUrl)));
  const names = socks.map(() => uniq('co'));
  await Promise.all(socks.map((s, i) => s.joinOk(names[i])));
  await Promise.all(socks.map((s) => s.close()));
  for (const n of names) await obs.push('presence_diff', (d) => n in d.leaves, { timeout: 10000 });
  await obs.settle(300);
  const elapsed = performance.now() - t0;
  worker.postMessage('stop');
  const { diffs, stalls } = await fromWorker();
  await worker.terminate();
  const times = diffs.map((d) => d.at);
  // A short gap is the observer's doing when a stall of its thread (or the
  // event loop) long enough to have swallowed the missing time ended just
  // before the earlier of the two diffs was read.
  const stalled = (a, b) => stalls.some(([s, e]) => Math.abs(e - a) <= 10 && e - s >= 40 - (b - a));
  // A short gap is also the transport's doing when the earlier diff came
  // late and the gap before it is long by as much: on a loaded machine a
  // loopback segment can wait in ksoftirqd after the server's write.  Then
  // the two gaps around the late diff still add up to two windows; a
  // server that paced at 45 ms, or not at all, fails that.  Once per run.
  const late = (i) => i >= 2 && times[i] - times[i - 2] >= 95;
  const short = [];
  let lateExcused = 0;
  for (let i = 1; i < times.length; i++) {
    const g = times[i] - times[i - 1];
    if (g >= 40 || stalled(times[i - 1], times[i])) continue;
    if (lateExcused === 0 && late(i)) { lateExcused++; continue; }
    short.push(g.toFixed(1));
  }
  assert.deepEqual(short, [], `diffs closer than 50 ms with no stall of the observer to explain it`);
  assert.ok(times.length <= elapsed / 40 + 1, `${times.length} diffs in ${elapsed.toFixed(0)} ms`);
  assert.ok(times.length < 2 * N, `${times.length} diffs for ${2 * N} changes`);
  // every change is in some diff: each name joined and left
  for (const n of names) {
    assert.ok(diffs.some((d) => d.joins.includes(n)), `join of ${n} missing`);
    assert.ok(diffs.some((d) => d.leaves.includes(n)), `leave of ${n} missing`);
  }
});

test('a lone change is sent within the window', async () => {
  const obs = await connect(server.wsUrl);
  const c = await connect(server.wsUrl);
  const name = uniq('lone');
  const t0 = performance.now();
  await c.joinOk(name);
  await obs.push('presence_diff', (d) => name in d.joins);
  const waited = performance.now() - t0;
  // 100 ms by the protocol, measured here from before the join's round trip
  assert.ok(waited < 100 + 400, `the join's diff came after ${waited.toFixed(0)} ms`);
});

// A socket that connects while a window is open is welcomed at its flush,
// with the counts after it, and is never sent that window's diff: in a wave
// of reconnects most diff bytes were changes the new sockets had caused
// themselves (issue 6's storm: 850 kB of leaves to each of 5,000 sockets).
// Without the rule, a socket connected right after a join gets that join's
// diff almost every time; five rounds make a pass by luck unlikely.
test('a socket welcomed while a window is open: counted in its welcome, not sent again', async () => {
  const obs = await connect(server.wsUrl);
  for (let round = 0; round < 5; round++) {
    const j = await connect(server.wsUrl);
    const name = uniq('hw');
    const since = obs.mark();
    await j.joinOk(name);
    const b = await connect(server.wsUrl); // within the join's window, most likely
    const welcome = b.frames.find((f) => f.type === 'welcome');
    const d = await obs.push('presence_diff', (x) => name in x.joins, { since });
    // a later change: b must get its diff, and diffs come in order
    const k = await connect(server.wsUrl);
    const later = uniq('hl');
    await k.joinOk(later);
    await b.push('presence_diff', (x) => later in x.joins);
    assert.ok(!b.pushes('presence_diff').some((x) => name in x.joins),
      `round ${round}: the new socket was sent the diff of a join its welcome already counted`);
    assert.equal(welcome.online_count, d.online_count, 'the welcome counts the window it waited for');
    await Promise.all([j.close(), b.close(), k.close()]);
  }
});

test('server still running', () => checkAlive(assert, server));
