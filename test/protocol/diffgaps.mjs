// The 50 ms rule of presence diffs (PROTOCOL.md), as two tests check it:
// an observer socket in a worker thread of its own records when each
// presence_diff arrives (the main thread is busy driving the load, and a
// busy reader sees frames bunched however they were sent), and the gaps
// between them are judged here.
//
// The observer also ticks every 5 ms and records when its thread was held
// up (on a shared 2-core machine it can be descheduled for 100 ms): two
// diffs that arrive closer than 40 ms are excused only when such a stall
// explains it, that is, when they came out of one stall together, or
// (once) when the earlier one came late and the gap before it is long by as
// much.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

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

// Start an observer on url; resolves once it is welcomed.  Its stop()
// resolves to { diffs: [{at, joins, leaves}], stalls: [[from, to]] }.
export async function startObserver(url) {
  const wsPath = createRequire(import.meta.url).resolve('ws');
  const worker = new Worker(OBSERVER, { eval: true, workerData: { url, ws: wsPath } });
  let failed;
  worker.once('error', (e) => { failed = e; });
  const fromWorker = () => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(failed || new Error('observer worker: no answer in 10 s')), 10000);
    worker.once('message', (m) => { clearTimeout(t); resolve(m); });
    worker.once('error', (e) => { clearTimeout(t); reject(e); });
  });
  await fromWorker(); // welcomed
  return {
    async stop() {
      worker.postMessage('stop');
      const r = await fromWorker();
      await worker.terminate();
      return r;
    },
  };
}

// The gaps under 40 ms that no stall of the observer explains, as strings
// of their milliseconds: [] when the server kept every diff 50 ms apart.
export function shortGaps({ diffs, stalls }) {
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
  return short;
}
