// Output bounds (issue 7 items 3 and 4): a client that does not read cannot
// make the server hold its output.
//   - HTTP: one connection pipelines 20,000 GETs in one write and never reads.
//     The server stops reading once CONN_HTTP_MAX_UNSENT (256 KiB) of
//     responses wait, and closes it after CHATTER_SEND_TIMEOUT_MS without
//     progress; its RSS stays bounded (before: +389 MiB).
//   - WebSocket: a joined socket that never reads while it asks for history
//     (replies, not pushes: outside WS_OUTBOUND_MAX) is closed with 1008
//     after CHATTER_SEND_TIMEOUT_MS, whatever is queued.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startServer } from '../lib/server.mjs';
import { joined, closeAll, checkAlive, sleep } from './client.mjs';

const SEND_TIMEOUT_MS = 2000;
// Bytes; one connection's output is bounded by 256 KiB plus one response.
// Under AddressSanitizer freed memory sits in its quarantine (256 MiB by
// default) before reuse, so only the unsanitized build can be held to 48 MiB.
const RSS_GROWTH_MAX = (process.env.ASAN_OPTIONS ? 320 : 48) * 1024 * 1024;
const WAIT_MS = 30000;

let server;
before(async () => {
  server = await startServer({ env: { CHATTER_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), LOG_LEVEL: 'info' } });
});
after(async () => { await closeAll(); await server?.stop(); });

function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// Samples the server's RSS every 50 ms until its log matches re; returns the
// highest sample.  The log line is the event awaited; WAIT_MS bounds it.
async function maxRssUntilLog(re, from) {
  let max = rss(server.proc.pid);
  const deadline = Date.now() + WAIT_MS;
  while (!re.test(server.logs().slice(from))) {
    if (Date.now() > deadline) throw new Error(`no ${re} in the log after ${WAIT_MS} ms (RSS max ${(max / 1048576).toFixed(1)} MiB)`);
    await new Promise((r) => setTimeout(r, 50));
    max = Math.max(max, rss(server.proc.pid));
  }
  return max;
}

test('20,000 pipelined GETs that are never read: RSS bounded, connection closed', async () => {
  const base = rss(server.proc.pid);
  const from = server.logs().length;
  const s = net.connect({ host: '127.0.0.1', port: server.port });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.pause(); // never read
  s.write('GET /js/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(20000));
  const max = await maxRssUntilLog(/response bytes unread for \d+ ms, closing/, from);
  s.destroy();
  assert.ok(max - base < RSS_GROWTH_MAX,
    `server RSS grew by ${((max - base) / 1048576).toFixed(1)} MiB for one connection that does not read`);
  const h = await fetch(`${server.base}/healthz`);
  assert.equal(h.status, 200);
});

test('a joined socket that asks for replies and never reads is closed with 1008', async () => {
  const a = await joined(server.wsUrl);
  // Ten long messages (the rate limiter's burst), so every history reply is large.
  for (let i = 0; i < 10; i++) {
    const r = await a.request({ type: 'send', content: `${i} `.padEnd(2000, 'o') });
    assert.equal(r.type, 'sent', JSON.stringify(r));
  }
  const base = rss(server.proc.pid);
  const from = server.logs().length;
  a.ws._socket.pause(); // never read again
  // ~480 replies of >= 20 KB each: far more than the kernel's socket buffers.
  for (let i = 0; i < 480; i++) a.sendReq({ type: 'history', before: 2 ** 53 - 1, limit: 500 });
  const max = await maxRssUntilLog(/bytes unread for \d+ ms, closing with 1008/, from);
  assert.ok(max - base < RSS_GROWTH_MAX, `server RSS grew by ${((max - base) / 1048576).toFixed(1)} MiB`);
  a.ws._socket.resume();
  const info = await a.waitClose(WAIT_MS);
  assert.ok(info.code === 1008 || info.code === 1006, `closed with ${info.code}`);
});

// CHATTER_WS_SNDBUF (256 KiB, conn.c): the kernel's send buffer of a
// WebSocket is bounded, so a reader that stops pins at most about 512 KiB
// there (the kernel doubles SO_SNDBUF) and the pushes then queue in the
// server, where WS_OUTBOUND_MAX (256 KiB) closes it with 1008.  Autotuned,
// the kernel alone took 3.9 MB of pushes on this loopback before one was
// queued: the reader was not closed before PUSH_BYTES_MAX.
const SENDERS = 40;
const PUSH_BYTES_MAX = 2.5 * 1024 * 1024;
test('a joined socket that stops reading pushes is closed with 1008 within the kernel and push bounds', async () => {
  const a = await joined(server.wsUrl);
  const senders = await Promise.all(Array.from({ length: SENDERS }, () => joined(server.wsUrl)));
  // What was pushed to `a` is what was pushed to any other joined socket:
  // count the message pushes one sender receives, in frame payload bytes.
  let pushed = 0;
  senders[0].ws.on('message', (d) => { if (d.includes('"type":"message"')) pushed += d.length + 4; });
  const base = rss(server.proc.pid);
  const from = server.logs().length;
  a.ws._socket.pause(); // never read again
  const closedRe = /client cannot keep up, closing with 1008/;
  let max = base, round = 0;
  // Rounds of one 2,000-character send per sender: ten at once (the rate
  // limiter's burst), then one round per 200 ms (its 5 a second).
  while (!closedRe.test(server.logs().slice(from))) {
    assert.ok(pushed < PUSH_BYTES_MAX,
      `${pushed} bytes pushed to a socket that reads nothing, and it is not closed`);
    if (round >= 10) await sleep(200);
    const replies = await Promise.all(senders.map((s, i) =>
      s.request({ type: 'send', content: `${round} ${i} `.padEnd(2000, 'o') })));
    for (const r of replies) assert.ok(r.type === 'sent' || (r.type === 'error' && r.code === 'rate_limited'), JSON.stringify(r).slice(0, 200));
    max = Math.max(max, rss(server.proc.pid));
    round++;
  }
  assert.ok(pushed > 256 * 1024, `closed after only ${pushed} bytes of pushes`);
  assert.ok(max - base < RSS_GROWTH_MAX, `server RSS grew by ${((max - base) / 1048576).toFixed(1)} MiB`);
  // the senders were not held back: each still answers at once
  for (const s of senders.slice(0, 3)) assert.equal((await s.request({ type: 'ping' })).type, 'pong');
  a.ws._socket.resume();
  const info = await a.waitClose(WAIT_MS);
  assert.ok(info.code === 1008 || info.code === 1006, `closed with ${info.code}`);
});

test('server still running', () => checkAlive(assert, server));
