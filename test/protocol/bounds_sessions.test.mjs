// A connection whose session is gone for good is closed with 1011, never left
// open and deaf (issue 8 item 13, the acceptor's part).  Killing the sessions
// supervisor kills every session under it, and its successor starts empty:
// nothing would ever serve those sockets again.  Needs CHATTER_DEBUG=1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { joined, closeAll, uniq, checkAlive, kill } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_DEBUG: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

test('the sessions supervisor killed: every WebSocket is closed with 1011, and clients get back in', async () => {
  const socks = await Promise.all(Array.from({ length: 6 }, () => joined(server.wsUrl, uniq('ss'))));
  await kill(assert, server, 'sessions');
  for (const s of socks) {
    const info = await s.waitClose(20000);
    assert.equal(info.code, 1011, 'closed with 1011, not left open without a session');
  }
  // The root restarted the supervisor: a client that reconnects is served.
  let again;
  for (let i = 0; i < 100 && !again; i++) {
    try { again = await joined(server.wsUrl, socks[0].user.name); } catch { await new Promise((res) => setTimeout(res, 100)); }
  }
  assert.ok(again, 'rejoined after the restart');
  const p = await again.request({ type: 'ping' });
  assert.equal(p.type, 'pong');
});

test('server still running', () => checkAlive(assert, server));
