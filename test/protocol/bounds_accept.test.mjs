// The accept policy at the descriptor limit (issue 7 item 1): a server under
// `ulimit -n 256` flooded with idle connections neither spins nor stops
// serving.  Checked: its CPU over an interval (from /proc/PID/stat: a bound,
// not a speed), that /healthz answers during the flood, that a normal client
// joins once the flood lets go, and that SIGTERM still ends it.
//
// Two ways to the limit: with the default reserve (CHATTER_FD_RESERVE), the
// cap is below the descriptor limit and the oldest idle connections make room;
// with CHATTER_MAX_CONNS above the limit, accept4() meets EMFILE itself, and
// the listener pauses instead of asking again at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../lib/server.mjs';
import { joined, httpGet, closeAll } from './client.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.CHATTER_BIN || path.join(root, '_build/default/chatter');
const FD_LIMIT = 256;
const FLOOD = 700;          // idle connections, well past the limit
const CLK_TCK = 100;        // Linux's USER_HZ
const MAX_CPU_SHARE = 0.25; // a spinning server used 1.5 cores; an idle one ~0

// Starts chatter under `ulimit -n FD_LIMIT`; resolves once /healthz is 200.
async function startLimited(env) {
  const port = await freePort();
  let out = '';
  const proc = spawn('bash', ['-c', `ulimit -n ${FD_LIMIT} && exec "$0"`, bin], {
    cwd: root,
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let exited = null;
  const exit = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; r(exited); }));
  const deadline = Date.now() + 20000;
  for (;;) {
    if (exited) throw new Error(`chatter exited early: ${out}`);
    try { if ((await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200) break; } catch {}
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`not healthy: ${out}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, proc, exit, logs: () => out, wsUrl: `ws://127.0.0.1:${port}/ws` };
}

function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

// Opens n connections that never send; resolves once each is connected or
// refused (the kernel completes the handshake before the server accepts).
async function flood(port, n) {
  const socks = [];
  let closedByServer = 0;
  await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', resolve);
    s.on('error', () => resolve());
    s.on('close', () => { closedByServer++; resolve(); });
    s.on('data', () => {});
    socks.push(s);
  })));
  return { socks, closed: () => closedByServer };
}

async function scenario(env) {
  const srv = await startLimited({ CHATTER_MAX_CONNS_PER_ADDR: '0', CHATTER_IDLE_TIMEOUT_MS: '600000', ...env });
  try {
    const f = await flood(srv.port, FLOOD);
    // /healthz queues behind the flood: its answer means the flood was taken.
    const h = await httpGet(srv.port, '/healthz');
    assert.equal(h.status, 200, '/healthz during the flood');
    const t0 = cpuTicks(srv.proc.pid);
    const w0 = Date.now();
    await new Promise((r) => setTimeout(r, 2000)); // the interval measured, not a wait for an event
    const cpu = (cpuTicks(srv.proc.pid) - t0) / CLK_TCK;
    const wall = (Date.now() - w0) / 1000;
    assert.ok(cpu / wall < MAX_CPU_SHARE, `server CPU ${cpu.toFixed(2)} s in ${wall.toFixed(1)} s while flooded: spinning?`);
    const h2 = await httpGet(srv.port, '/healthz');
    assert.equal(h2.status, 200, '/healthz still answers');
    // Let go; a normal client gets in and joins.
    for (const s of f.socks) s.destroy();
    const c = await joined(srv.wsUrl);
    assert.ok(c.joinedReply, 'joined after the flood');
    await closeAll();
    return srv;
  } finally {
    const t = setTimeout(() => srv.proc.kill('SIGKILL'), 10000);
    srv.proc.kill('SIGTERM');
    const res = await srv.exit;
    clearTimeout(t);
    assert.equal(res.sig, null, `SIGTERM did not end the server (${JSON.stringify(res)}):\n${srv.logs().slice(-2000)}`);
  }
}

test('flooded past the descriptor limit, default reserve: no spinning, /healthz answers, clients get back in', async () => {
  await scenario({});
});

test('accept4 at EMFILE (cap above the limit): paused, not spinning, recovers', async () => {
  await scenario({ CHATTER_MAX_CONNS: '100000', CHATTER_FD_RESERVE: '0' });
});
