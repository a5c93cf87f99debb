// Large but valid replies: with the 200 most recent messages at 2,000
// characters each, `joined` (500 messages), `catch_up` and `history` with
// limit 500 are each well over 400 KB.  PROTOCOL.md requires them; a healthy
// client that reads them must not be treated as one that "cannot keep up".
// Runs last; the sockets that bury the long messages under short ones
// afterwards join before them, so that the clean-up works even when joining is
// broken by the long messages, and later runs start from ordinary history.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, checkAlive } from './client.mjs';

const LONG = 200;
let server;
let first;        // the first long message
let buriers = []; // joined before the long messages, send short ones in after()

async function sockets(n) {
  const out = [];
  for (let i = 0; i < n; i += 10) out.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => joined(server.wsUrl, uniq('lg')))));
  return out;
}

// 10 sends per socket (the burst), all at once; returns the acks in seq order.
async function fill(socks, content) {
  const acks = await Promise.all(socks.map(async (s) => {
    const refs = Array.from({ length: 10 }, (_, i) => s.sendReq({ type: 'send', content: content(i) }));
    const out = [];
    for (const r of refs) {
      const rep = await s.reply(r, { timeout: 30000 });
      if (rep.type !== 'sent') throw new Error(`fill: ${JSON.stringify(rep)}`);
      out.push(rep.message);
    }
    return out;
  }));
  return acks.flat().sort((a, b) => a.seq - b.seq);
}

before(async () => {
  server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } });
  buriers = await sockets(50); // 500 short messages: the long ones leave the 500 that joined carries
  const fillers = await sockets(LONG / 10);
  first = (await fill(fillers, (i) => `${i} ${uniq()} `.padEnd(2000, 'x')))[0];
  await Promise.all(fillers.map((s) => s.close()));
});
after(async () => {
  try {
    process.env.PROTO_DEBUG && console.log('buriers open:', buriers.filter((s) => s.isOpen()).length, buriers.map((s) => s.closeInfo?.code).join(','));
    if (server && !server.exited()) await fill(buriers.filter((s) => s.isOpen()), (i) => `short ${i}`);
  } finally {
    await closeAll();
    await server?.stop();
  }
});

const BIG = { timeout: 20000 };

test('join while the 200 latest messages have 2,000 characters (a ~500 KB joined reply)', async () => {
  const c = await connect(server.wsUrl);
  const r = await c.request({ type: 'join', name: uniq('lj') }, BIG);
  assert.equal(r.type, 'joined', JSON.stringify(r).slice(0, 300));
  assert.equal(r.messages.length, 500);
  assert.ok(r.messages.some((m) => m.id === first.id), "the long messages are among the 500 latest");
  assert.ok(c.isOpen());
});

test('catch_up over 200 messages of 2,000 characters', async () => {
  const c = await joined(server.wsUrl).catch((e) => assert.fail(`join: ${e.message.slice(0, 200)}`));
  const r = await c.request({ type: 'catch_up', after: first.seq - 1 }, BIG);
  assert.equal(r.type, 'history', JSON.stringify(r).slice(0, 300));
  assert.ok(r.messages.length >= LONG);
  assert.ok(c.isOpen());
});

test('history with limit 500 over 200 messages of 2,000 characters', async () => {
  const c = await joined(server.wsUrl).catch((e) => assert.fail(`join: ${e.message.slice(0, 200)}`));
  const r = await c.request({ type: 'history', before: 1e15, limit: 500 }, BIG);
  assert.equal(r.type, 'history', JSON.stringify(r).slice(0, 300));
  assert.equal(r.messages.length, 500);
  assert.ok(c.isOpen());
});

test('server still running', () => checkAlive(assert, server));
