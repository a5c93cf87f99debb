#!/usr/bin/env node
// bench/load.mjs: load generator for Chatter (protocol v1, /work/shared/PROTOCOL.md).
//
// Usage:
//   node bench/load.mjs [--url ws://127.0.0.1:PORT/ws | --spawn]
//                       [--sessions N=1000] [--senders S=50] [--messages M=20]
//                       [--rate R=4] [--ramp SECONDS=5] [--timeout SECONDS=120]
//
//   --url U        drive a running server (must be 127.0.0.1 / localhost)
//   --spawn        start our own server with test/lib/server.mjs (free port,
//                  binary $CHATTER_BIN or _build/default/chatter, database
//                  $DATABASE_URL, else `bash sql/devdb.sh url`) and stop it at
//                  the end.  The default when no --url is given.
//   --sessions N   WebSockets to open, 1..8000 (the machine allows 20,000 open
//                  files; server and generator each hold N)
//   --senders S    how many of the joined sessions send (S <= N; default min(50, N))
//   --messages M   messages per sender (T = S*M in all)
//   --rate R       sends per second per sender (server limit: 5/s, burst 10)
//   --ramp SEC     open the N sockets evenly over SEC seconds
//   --timeout SEC  hard limit for the whole run (after the server is up): on
//                  expiry it reports what it has and exits 2
//   Both `--key value` and `--key=value` work.
//
// What it does: opens N sockets (ramped), each awaits `welcome`, then `join`s
// with a unique name (random run prefix, since the database persists; retries
// `unavailable` 3 times).  When every socket has joined or failed, S joined
// sockets send M messages each at R/s; the content is "load <run> <s> <k> <t0>"
// (t0 = the sender's performance.now()).  Every socket counts the `message`
// pushes it receives and checks that they come in increasing `seq` order and
// that each message acknowledged with `sent` arrives exactly once.  The message
// phase ends when every joined socket holds every acknowledged message (then a
// 300 ms grace for late duplicates), when nothing has moved for 10 s, or at
// the timeout.
//
// Measured: connect+welcome latency, join latency, send->`sent` ack latency,
// send->push latency at every socket (p50/p95/p99/max), push throughput
// (our message pushes delivered / message phase seconds), errors by code,
// closes by code, other pushes, the generator's CPU use and event-loop delay
// and (with --spawn) the server's CPU use.  If the generator is near 100 % of
// a core, it is the limit; a large loop delay at low CPU means the machine is
// short of CPU (check the load average printed), and every latency with it.
//
// Output: a human-readable block, then one line (existing keys first, extra
// keys appended):
//   name=load sessions=N senders=S messages=T seconds=X rate=<pushes/s>
//   join_p50_ms=.. join_p99_ms=.. ack_p50_ms=.. ack_p99_ms=.. push_p50_ms=..
//   push_p99_ms=.. lost=0 dup=0 order=0 errors=0 closed=0 ...
// lost = (socket, acknowledged message) pairs never delivered to a socket that
// was joined when sending began (a socket closed by the server counts its
// missing messages as lost); dup = deliveries beyond the first; order = pushes
// whose seq was not above the previous one on that socket.
//
// Exit code: 0 clean; 1 if anything went wrong (lost, dup, order, error
// replies, sockets that failed to connect/join or were closed by the server,
// a server that died); 2 on timeout.
//
// Every run adds N users for good, and `welcome`/`joined` list every user: on
// a shared database, large runs change what everyone else's server sends (and
// with the server's 256 KiB per-socket outbound bound, a few thousand users
// make every join fail with 1008).  For figures, give each run a fresh
// database, e.g. `createdb load_1` and DATABASE_URL=.../load_1.
//
// Example:
//   cd /work/main && make build && bash sql/devdb.sh start &&
//   export DATABASE_URL=$(bash sql/devdb.sh url) &&
//   node bench/load.mjs --spawn --sessions 200 --senders 50 --messages 20
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { performance, monitorEventLoopDelay } from 'node:perf_hooks';
import fs from 'node:fs';
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(path.join(root, 'test', 'package.json'));
const WebSocket = require('ws');

// ------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = { url: null, spawn: false, sessions: 1000, senders: null, messages: 20, rate: 4, ramp: 5, timeout: 120 };
  const num = new Set(['sessions', 'senders', 'messages', 'rate', 'ramp', 'timeout']);
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') { o.help = true; continue; }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    a = a.slice(2);
    let v;
    const eq = a.indexOf('=');
    if (eq >= 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    if (a === 'spawn') { o.spawn = true; continue; }
    if (a !== 'url' && !num.has(a)) throw new Error(`unknown option --${a}`);
    if (v === undefined) { v = argv[++i]; if (v === undefined) throw new Error(`--${a} needs a value`); }
    if (a === 'url') o.url = v;
    else {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${a}: not a number: ${v}`);
      o[a] = n;
    }
  }
  if (o.url && o.spawn) throw new Error('--url and --spawn exclude each other');
  if (!o.url) o.spawn = true;
  o.sessions = Math.floor(o.sessions); o.messages = Math.floor(o.messages);
  if (o.sessions < 1 || o.sessions > 8000) throw new Error('--sessions must be 1..8000 (20,000 open files on this machine)');
  if (o.senders === null) o.senders = Math.min(50, o.sessions);
  o.senders = Math.floor(o.senders);
  if (o.senders > o.sessions) throw new Error('--senders must be <= --sessions');
  if (o.rate <= 0 || o.rate > 50) throw new Error('--rate must be in (0, 50]');
  if (o.timeout <= 0) throw new Error('--timeout must be > 0');
  if (o.url) {
    const u = new URL(o.url);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) throw new Error('--url must point at 127.0.0.1');
  }
  return o;
}

// ------------------------------------------------------------------ samples
class Samples {
  constructor() { this.a = new Float64Array(1024); this.n = 0; }
  push(v) {
    if (this.n === this.a.length) { const b = new Float64Array(this.a.length * 2); b.set(this.a); this.a = b; }
    this.a[this.n++] = v;
  }
  stats() {
    const s = this.a.subarray(0, this.n).slice().sort();
    const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] : NaN);
    let sum = 0; for (let i = 0; i < s.length; i++) sum += s[i];
    return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s.length ? s[s.length - 1] : NaN, mean: s.length ? sum / s.length : NaN };
  }
}
const fmt = (x) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(2)) : 'nan');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const inc = (obj, k, by = 1) => { obj[k] = (obj[k] || 0) + by; };

// ------------------------------------------------------------------ main
async function main() {
  let opt;
  try { opt = parseArgs(process.argv.slice(2)); } catch (e) {
    console.error(`load: ${e.message}\n(see the header of bench/load.mjs for usage)`); process.exit(64);
  }
  if (opt.help) {
    const src = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
    console.log(src.slice(1, src.findIndex((l) => l.startsWith('import'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
    return 0;
  }
  const N = opt.sessions, S = opt.senders, M = opt.messages, T = S * M;

  // ---- server
  let srv = null, url = opt.url;
  if (opt.spawn) {
    if (!process.env.DATABASE_URL) {
      try { process.env.DATABASE_URL = execFileSync('bash', [path.join(root, 'sql/devdb.sh'), 'url'], { encoding: 'utf8' }).trim(); } catch { /* startServer will say */ }
    }
    const { startServer } = await import(path.join(root, 'test/lib/server.mjs'));
    try { srv = await startServer({ env: { LOG_LEVEL: process.env.LOG_LEVEL || 'warn' } }); } catch (e) {
      console.error(`load: could not start the server: ${e.message}`); return 1;
    }
    url = srv.wsUrl;
  }

  const tStart = performance.now();
  const deadline = tStart + opt.timeout * 1000;
  const cpu0 = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  // The spawned server's CPU seconds (Linux /proc), to tell a busy server from a busy generator.
  const serverCpu = () => {
    try {
      const f = fs.readFileSync(`/proc/${srv.proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks (100/s)
    } catch { return NaN; }
  };
  const srvCpu0 = srv ? serverCpu() : NaN;
  const run = crypto.randomBytes(4).toString('hex');
  const tag = `load ${run} `;

  const lat = { connect: new Samples(), join: new Samples(), ack: new Samples(), push: new Samples() };
  const errors = {};       // code -> count (error replies and unsolicited errors)
  const closes = {};       // close code -> count (closes we did not ask for)
  const connectFails = {}; // reason -> count
  const pushCounts = {};   // type -> count, pushes other than our messages
  let foreign = 0;         // message pushes not from this run
  let lateMsgs = 0;        // our messages at sockets that joined after sending began
  let idMismatch = 0;      // same (s,k) pushed with different ids
  let pushedDespiteError = 0;
  let unparseable = 0;
  let delivered = 0, firstSend = 0, lastDelivery = 0, lastProgress = 0;
  let stopping = false, timedOut = false, serverDied = null;

  const ackedId = new Array(T).fill(null);   // message id from `sent`
  const pushId = new Array(T).fill(null);    // message id from the first push seen
  const status = new Uint8Array(T);          // 0 not sent, 1 in flight, 2 acked, 3 error reply, 4 no reply (sender closed)
  let acked = 0, answered = 0, sendsIssued = 0;

  const socks = [];
  const HEAD_RE = /^\{"type":"([a-z_]+)"(?:,"ref":(-?\d+|"[^"]*"))?/;

  function onFrame(c, data) {
    const now = performance.now();
    const head = data.toString('latin1', 0, Math.min(data.length, 64));
    const m = HEAD_RE.exec(head);
    let type, ref, f = null;
    if (m) { type = m[1]; ref = m[2]; }
    if (!m || type === 'message' || type === 'sent' || type === 'error' || type === 'history') {
      try { f = JSON.parse(data.toString('utf8')); } catch { unparseable++; return; }
      if (!f || typeof f !== 'object') { unparseable++; return; }
      type = f.type; ref = f.ref;
    } else if (ref !== undefined && ref[0] !== '"') ref = Number(ref);
    else if (ref !== undefined) ref = ref.slice(1, -1);

    if (type === 'message') {
      const msg = f.message || {};
      c.pushes++;
      if (!(msg.seq > c.lastSeq)) c.order++; else c.lastSeq = msg.seq;
      const content = msg.content;
      if (typeof content !== 'string' || !content.startsWith(tag)) { foreign++; return; }
      const p = content.split(' ');
      const s = Number(p[2]), k = Number(p[3]), t0 = Number(p[4]);
      const idx = s * M + k;
      if (!(idx >= 0 && idx < T)) { foreign++; return; }
      if (pushId[idx] === null) pushId[idx] = msg.id; else if (pushId[idx] !== msg.id) idMismatch++;
      if (status[idx] === 3) pushedDespiteError++;
      lat.push.push(now - t0);
      delivered++; lastDelivery = now; lastProgress = now;
      if (!c.recv) { lateMsgs++; return; }
      const r = c.recv[idx];
      if (r === 0) c.distinct++; else c.dup++;
      if (r < 255) c.recv[idx] = r + 1;
      return;
    }
    if (type === 'welcome' && !c.welcomed) {
      c.welcomed = true;
      lat.connect.push(now - c.t0);
      sendJoin(c);
      return;
    }
    if (type === 'joined' && ref === c.joinRef) {
      c.joined = true;
      lat.join.push(now - c.tJoin);
      c.settle();
      return;
    }
    if (type === 'sent' && c.sender) {
      const k = ref - 1;
      const idx = c.s * M + k;
      if (k >= 0 && k < M && status[idx] === 1) {
        status[idx] = 2; acked++; answered++; lastProgress = now;
        lat.ack.push(now - c.sendT[k]);
        ackedId[idx] = f.message && f.message.id;
      }
      return;
    }
    if (type === 'error') {
      inc(errors, f.code || '?');
      if (ref !== undefined && ref === c.joinRef) { // join failed
        if (f.code === 'unavailable' && c.joinTries < 4 && !stopping) { setTimeout(() => sendJoin(c), 250 * c.joinTries); return; }
        c.joinFailed = f.code; c.settle(); return;
      }
      if (c.sender && typeof ref === 'number') {
        const k = ref - 1, idx = c.s * M + k;
        if (k >= 0 && k < M && status[idx] === 1) { status[idx] = 3; answered++; lastProgress = now; }
      }
      return;
    }
    inc(pushCounts, type);
  }

  function sendJoin(c) {
    if (c.closed || stopping) return;
    c.joinTries++;
    c.joinRef = 1000000 + c.joinTries;
    c.tJoin = performance.now();
    c.ws.send(JSON.stringify({ type: 'join', ref: c.joinRef, name: `${run}_${c.i}` }));
  }

  function open(i) {
    const c = {
      i, t0: performance.now(), ws: null, welcomed: false, joined: false, joinFailed: null, joinTries: 0,
      joinRef: null, tJoin: 0, opened: false, closed: false, closeCode: null, weClosed: false,
      pushes: 0, lastSeq: -Infinity, order: 0, recv: null, distinct: 0, dup: 0,
      sender: false, s: -1, sendT: null, settled: false, settle: null,
    };
    c.done = new Promise((r) => { c.settle = () => { if (!c.settled) { c.settled = true; r(); } }; });
    socks.push(c);
    let ws;
    try {
      ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 15000 });
    } catch (e) { inc(connectFails, e.code || e.message); c.closed = true; c.settle(); return; }
    c.ws = ws;
    ws.on('open', () => { c.opened = true; });
    ws.on('message', (data) => onFrame(c, data));
    ws.on('error', (e) => { if (!c.welcomed && !c.weClosed) inc(connectFails, e.code || e.message); });
    ws.on('close', (code) => {
      c.closed = true; c.closeCode = code;
      if (!c.weClosed && c.opened) inc(closes, code);
      if (c.sender) for (let k = 0; k < M; k++) { const idx = c.s * M + k; if (status[idx] === 1) { status[idx] = 4; answered++; } }
      c.settle();
    });
  }

  // ---- watchdogs: timeout and the spawned server's health
  const stopAll = () => { stopping = true; for (const c of socks) c.settle(); };
  const guard = setInterval(() => {
    if (performance.now() > deadline && !timedOut) { timedOut = true; stopAll(); }
    if (srv && srv.exited() && !serverDied) { serverDied = srv.exited(); stopAll(); }
  }, 100);

  // ---- phase 1: connect + welcome + join, ramped
  const rampMs = opt.ramp * 1000;
  const tRamp = performance.now();
  for (let i = 0; i < N && !stopping;) {
    const due = rampMs > 0 ? Math.min(N, Math.floor(((performance.now() - tRamp) / rampMs) * N) + 1) : N;
    while (i < due) open(i++);
    if (i < N) await sleep(Math.min(10, rampMs / N));
  }
  // Sockets that have neither joined nor failed 60 s after the ramp count as not joined.
  const phase1End = Math.min(deadline, tRamp + rampMs + 60000);
  await Promise.race([Promise.all(socks.map((c) => c.done)), new Promise((r) => {
    const t = setInterval(() => { if (stopping || performance.now() > phase1End) { clearInterval(t); r(); } }, 50);
  })]);
  const tJoined = performance.now();
  const joined = socks.filter((c) => c.joined && !c.closed);

  // ---- phase 2: S senders x M messages at R/s; every joined socket receives
  for (const c of joined) c.recv = new Uint8Array(T);
  const senders = stopping ? [] : joined.slice(0, S);
  senders.forEach((c, s) => { c.sender = true; c.s = s; c.sendT = new Float64Array(M); });
  const interval = 1000 / opt.rate;
  firstSend = performance.now(); lastProgress = firstSend;
  const timers = [];
  if (!stopping) {
    senders.forEach((c) => {
      const offset = Math.random() * interval;
      for (let k = 0; k < M; k++) {
        timers.push(setTimeout(() => {
          if (stopping) return;
          const idx = c.s * M + k;
          if (c.closed) { status[idx] = 4; answered++; sendsIssued++; return; }
          const t0 = performance.now();
          c.sendT[k] = t0;
          status[idx] = 1; sendsIssued++;
          c.ws.send(`{"type":"send","ref":${k + 1},"content":"${tag}${c.s} ${k} ${t0.toFixed(3)}"}`);
        }, offset + k * interval));
      }
    });
  }
  const planned = senders.length * M;
  let stalled = false;
  await new Promise((resolve) => {
    let graceFrom = 0;
    const t = setInterval(() => {
      const now = performance.now();
      if (stopping) { clearInterval(t); resolve(); return; }
      const allAnswered = sendsIssued === planned && answered === planned;
      let complete = allAnswered;
      if (complete) for (const c of joined) { if (!c.closed && c.distinct < acked) { complete = false; break; } }
      if (complete) {
        if (!graceFrom) graceFrom = now;
        if (now - graceFrom >= 300) { clearInterval(t); resolve(); }
      } else graceFrom = 0;
      if (sendsIssued === planned && now - lastProgress > 10000) { stalled = true; clearInterval(t); resolve(); }
    }, 50);
  });
  for (const t of timers) clearTimeout(t);
  const tEnd = performance.now();
  stopping = true;

  // ---- verdict
  let lost = 0, dup = 0, order = 0, lostOnClosed = 0, receivers = 0;
  for (const c of joined) {
    receivers++;
    order += c.order; dup += c.dup;
    let miss = 0;
    for (let idx = 0; idx < T; idx++) if (status[idx] === 2 && c.recv[idx] === 0) miss++;
    lost += miss;
    if (c.closed) lostOnClosed += miss;
  }
  for (let idx = 0; idx < T; idx++) if (status[idx] === 2 && pushId[idx] !== null && ackedId[idx] !== pushId[idx]) idMismatch++;
  const noReply = status.reduce((n, v) => n + (v === 1 || v === 4 ? 1 : 0), 0);
  const errReplies = status.reduce((n, v) => n + (v === 3 ? 1 : 0), 0);

  // ---- stop: close our sockets, then the server
  const closing = socks.filter((c) => c.ws && !c.closed);
  for (const c of closing) { c.weClosed = true; try { c.ws.close(1000); } catch { /* already gone */ } }
  await Promise.race([Promise.all(closing.map((c) => new Promise((r) => { if (c.closed) r(); else c.ws.once('close', r); }))), sleep(3000)]);
  for (const c of closing) if (!c.closed) c.ws.terminate();
  clearInterval(guard);
  const cpu = process.cpuUsage(cpu0);
  loopDelay.disable();
  const srvCpu = srv && !serverDied ? serverCpu() - srvCpu0 : NaN;
  let serverExit = null, serverLog = '';
  if (srv) {
    if (!serverDied) serverExit = await srv.stop(); else serverExit = serverDied;
    serverLog = srv.logs();
  }

  // ---- report
  const st = Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, v.stats()]));
  const phaseS = Math.max(1e-3, ((lastDelivery || tEnd) - firstSend) / 1000);
  const rate = delivered / phaseS;
  const wall = (tEnd - tStart) / 1000;
  const nErr = Object.values(errors).reduce((a, b) => a + b, 0);
  const nClosed = Object.values(closes).reduce((a, b) => a + b, 0);
  const nConnFail = Object.values(connectFails).reduce((a, b) => a + b, 0);
  const notJoined = N - joined.length;
  const kv = (o) => (Object.keys(o).length ? Object.entries(o).map(([k, v]) => `${k}:${v}`).join(',') : '-');
  const line = (name, s) => `  ${name.padEnd(16)} n=${String(s.n).padEnd(8)} p50=${fmt(s.p50)}  p95=${fmt(s.p95)}  p99=${fmt(s.p99)}  max=${fmt(s.max)} ms`;
  const crashed = serverDied || (serverExit && (serverExit.sig ? serverExit.sig !== 'SIGTERM' : serverExit.code !== 0));
  const slowLines = (serverLog.match(/cannot keep up/g) || []).length;

  const out = [];
  out.push(`chatter load run ${run}: ${url}${srv ? ' (spawned)' : ''}`);
  out.push(`  sessions ${N} (joined ${joined.length}, not joined ${notJoined}), senders ${senders.length} x ${M} msgs at ${opt.rate}/s, ramp ${opt.ramp}s`);
  out.push(`  phases: connect+join ${((tJoined - tStart) / 1000).toFixed(2)}s, messages ${phaseS.toFixed(2)}s, total ${wall.toFixed(2)}s${timedOut ? ' (TIMED OUT)' : ''}${stalled ? ' (STALLED 10s)' : ''}`);
  out.push(line('connect+welcome', st.connect));
  out.push(line('join', st.join));
  out.push(line('send->sent', st.ack));
  out.push(line('send->push', st.push));
  out.push(`  sends ${sendsIssued}/${planned}: acked ${acked}, error replies ${errReplies}, no reply ${noReply}`);
  out.push(`  pushes delivered ${delivered} (expected ${acked * receivers} to ${receivers} sockets), ${fmt(rate)}/s`);
  out.push(`  lost ${lost}${lostOnClosed ? ` (${lostOnClosed} on closed sockets)` : ''}, dup ${dup}, out of order ${order}, id mismatch ${idMismatch}, pushed despite error ${pushedDespiteError}, at late joiners ${lateMsgs}, foreign ${foreign}, unparseable ${unparseable}`);
  out.push(`  errors ${kv(errors)}; server closes ${kv(closes)}; connect failures ${kv(connectFails)}`);
  out.push(`  other pushes ${kv(pushCounts)}`);
  out.push(`  machine: ${os.cpus().length} cpus, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (other work on the machine skews every figure)`);
  out.push(`  generator cpu ${(((cpu.user + cpu.system) / 1e6) / wall * 100).toFixed(0)}% of one core (user ${(cpu.user / 1e6).toFixed(1)}s, sys ${(cpu.system / 1e6).toFixed(1)}s), event-loop delay p99 ${fmt(loopDelay.percentile(99) / 1e6)} max ${fmt(loopDelay.max / 1e6)} ms`);
  if (srv && Number.isFinite(srvCpu)) out.push(`  server cpu ${(srvCpu / wall * 100).toFixed(0)}% of one core (${srvCpu.toFixed(1)}s)`);
  if (srv) {
    out.push(`  server: ${serverDied ? 'DIED during the run ' : 'stopped '}${JSON.stringify(serverExit)}${slowLines ? `, ${slowLines} "cannot keep up" closes logged` : ''}`);
    if (crashed || slowLines || nClosed) {
      const tail = serverLog.split('\n').filter((l) => /warn|error|crash|fatal|abort|assert/i.test(l)).slice(-15);
      if (tail.length) out.push('  server log (last warnings):\n    ' + tail.join('\n    '));
    }
  }
  console.log(out.join('\n'));
  console.log([
    'name=load', `sessions=${N}`, `senders=${senders.length}`, `messages=${sendsIssued}`, `seconds=${phaseS.toFixed(2)}`,
    `rate=${rate.toFixed(0)}`, `join_p50_ms=${fmt(st.join.p50)}`, `join_p99_ms=${fmt(st.join.p99)}`,
    `ack_p50_ms=${fmt(st.ack.p50)}`, `ack_p99_ms=${fmt(st.ack.p99)}`, `push_p50_ms=${fmt(st.push.p50)}`,
    `push_p99_ms=${fmt(st.push.p99)}`, `lost=${lost}`, `dup=${dup}`, `order=${order}`,
    `errors=${nErr}`, `closed=${nClosed}`, `connect_fail=${nConnFail}`, `not_joined=${notJoined}`,
    `no_reply=${noReply}`, `connect_p50_ms=${fmt(st.connect.p50)}`, `connect_p99_ms=${fmt(st.connect.p99)}`,
    `join_p95_ms=${fmt(st.join.p95)}`, `ack_p95_ms=${fmt(st.ack.p95)}`, `push_p95_ms=${fmt(st.push.p95)}`,
    `push_max_ms=${fmt(st.push.max)}`, `timeout=${timedOut ? 1 : 0}`, `server_died=${crashed ? 1 : 0}`,
  ].join(' '));
  if (timedOut) return 2;
  const bad = lost || dup || order || idMismatch || pushedDespiteError || nErr || nClosed || nConnFail || notJoined || noReply || unparseable || crashed || stalled;
  return bad ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => { console.error('load: ' + (e && e.stack || e)); process.exit(1); });
