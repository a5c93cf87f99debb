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
import { joined, closeAll, checkAlive } from './client.mjs';

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

test('server still running', () => checkAlive(assert, server));
