// The supervision tree at work under live sockets: a killed pubsub or
// presence is restarted by the root supervisor, and the sessions, which
// watch both, restart themselves and catch up.  Needs CHATTER_DEBUG=1, which
// enables POST /debug/kill?name=NAME (exit(kill) to a registered actor).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, checkAlive } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_DEBUG: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

async function kill(name) {
  const r = await fetch(`${server.base}/debug/kill?name=${name}`, { method: 'POST' });
  await r.text(); // an unread body keeps the connection (and node) alive
  assert.equal(r.status, 200, `kill ${name}`);
}

async function healthy() {
  for (let i = 0; i < 200; i++) {
    const r = await fetch(`${server.base}/healthz`);
    await r.text();
    if (r.status === 200) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('not healthy again after 10 s');
}

test('the debug hook is off unless asked for, and names only registered actors', async () => {
  const r = await fetch(`${server.base}/debug/kill?name=nobody`, { method: 'POST' });
  await r.text();
  assert.equal(r.status, 404);
  const g = await fetch(`${server.base}/debug/kill?name=pubsub`);
  await g.text();
  assert.equal(g.status, 400, 'GET must not kill');
});

test('pubsub killed: sessions restart, nothing lost, nothing twice, nobody goes offline', async () => {
  const a = await joined(server.wsUrl, uniq('sa'));
  const b = await joined(server.wsUrl, uniq('sb'));
  const since = b.mark();
  await kill('pubsub');
  const acked = [];
  for (let i = 0; i < 8; i++) {
    const rep = await a.request({ type: 'send', content: `after the kill ${i}` }, { timeout: 20000 });
    assert.equal(rep.type, 'sent', JSON.stringify(rep));
    acked.push(rep.message);
  }
  for (const m of acked) await b.push('message', (f) => f.message.id === m.id, { since, timeout: 20000 });
  await b.settle(500);
  const got = b.messages(since).filter((m) => acked.some((x) => x.id === m.id));
  assert.deepEqual(got.map((m) => m.id), acked.map((m) => m.id), 'each once, in order');
  const churn = b.pushes('presence_diff', since)
    .filter((d) => a.user.name in d.leaves || b.user.name in d.leaves);
  assert.equal(churn.length, 0, 'no one went offline');
  assert.ok(a.isOpen() && b.isOpen());
  await healthy();
});

test('presence killed: sockets are told to start over (1011), and starting over works', async () => {
  const a = await joined(server.wsUrl, uniq('pa'));
  await kill('presence');
  const info = await a.waitClose(20000);
  assert.equal(info.code, 1011);
  await healthy();
  const again = await connect(server.wsUrl);
  assert.ok(again.welcome.users.some((u) => u.name === a.user.name && !u.online));
  const r = await again.joinOk(a.user.name);
  assert.equal(r.user.id, a.user.id);
});

test('server still running', () => checkAlive(assert, server));
