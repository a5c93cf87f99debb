// Reconnecting (PROTOCOL.md "Reconnecting"): a tab whose socket died joins
// again with its name and token, then catches up from the highest seq it holds,
// and has every message exactly once.  Token lifetime.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, checkError, checkAlive } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
afterEach(closeAll);
after(async () => { await closeAll(); await server?.stop(); });

test('a dropped socket re-joins with its token before the server noticed, catches up, no gap, no duplicate', async () => {
  const name = uniq('rc');
  const a = await joined(server.wsUrl, name);
  const b = await joined(server.wsUrl);
  const seen = [];
  for (let i = 0; i < 3; i++) {
    const m = await b.sendOk(`before drop ${i}`);
    seen.push((await a.push('message', (f) => f.message.id === m.id)).message);
  }
  const highest = Math.max(...seen.map((m) => m.seq));
  // the tab loses its connection without a close frame; the server may not know yet
  a.ws.terminate();
  const missed = [];
  for (let i = 0; i < 3; i++) missed.push(await b.sendOk(`while away ${i}`));
  const a2 = await connect(server.wsUrl);
  const r = await a2.request({ type: 'join', name, token: a.token });
  assert.equal(r.type, 'joined', JSON.stringify(r));
  assert.equal(r.user.id, a.user.id);
  const pushedSince = a2.mark();
  for (let i = 0; i < 2; i++) missed.push(await b.sendOk(`after rejoin ${i}`));
  const cu = await a2.read({ type: 'catch_up', after: highest });
  assert.equal(cu.type, 'history');
  for (const m of missed.slice(3)) await a2.push('message', (f) => f.message.id === m.id, { since: pushedSince });
  // what the client shows: catch_up + pushes, deduplicated by id
  const shown = new Map();
  for (const m of [...seen, ...cu.messages, ...a2.messages()]) shown.set(m.id, m);
  for (const m of missed) assert.deepEqual(shown.get(m.id), m, `missed message ${m.seq} not recovered`);
  // pushes themselves are never duplicated
  const ids = a2.messages().map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length);
  // the name stayed or came back online exactly under the same user.  A
  // new socket's directory is as of the diffs it will be sent (PROTOCOL.md
  // "users"): a join presence has not yet taken (changes wait up to 100 ms)
  // is in neither list and comes in a diff instead.
  const w = await connect(server.wsUrl);
  const u = await w.findUser(name);
  if (u) assert.equal(u.id, a.user.id);
  if (!u || !u.online) {
    const d = await w.push('presence_diff', (f) => f.joins && name in f.joins);
    assert.equal(d.joins[name].metas.at(-1).user_id, a.user.id);
  }
});

test('a token for an offline name is no obstacle (the name is simply reused)', async () => {
  const name = uniq('ro');
  const a = await joined(server.wsUrl, name);
  const w = await connect(server.wsUrl);
  await a.close();
  await w.push('presence_diff', (d) => d.leaves && name in d.leaves);
  const r = await w.request({ type: 'join', name, token: a.token });
  assert.equal(r.type, 'joined', JSON.stringify(r));
  assert.equal(r.user.id, a.user.id);
});

test('a token is no longer valid once its holder left', async () => {
  const name = uniq('rl');
  const a = await joined(server.wsUrl, name);
  const oldToken = a.token;
  const since = a.mark();
  assert.equal((await a.request({ type: 'leave' })).type, 'left');
  await a.push('presence_diff', (d) => d.leaves && name in d.leaves, { since });
  const b = await joined(server.wsUrl, name);
  assert.equal(b.user.id, a.user.id);
  assert.notEqual(b.token, oldToken);
  const c = await connect(server.wsUrl);
  checkError(assert, await c.request({ type: 'join', name, token: oldToken, ref: 'old' }), 'name_taken', 'old');
  // b was not disturbed
  assert.equal((await b.request({ type: 'send', content: 'still mine' })).type, 'sent');
  assert.equal(b.pushes('error').length, 0);
});

test('server still running', () => checkAlive(assert, server));
