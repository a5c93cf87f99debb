// join's rate_limited: a source address may create at most
// CHATTER_NEW_USERS_PER_MINUTE new users in a sliding 60 s (3 here); over
// it a new name is refused and nothing is created; existing names are never
// limited; name_invalid and name_taken come first (PROTOCOL.md precedence).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkError, checkAlive } from './client.mjs';

const LIMIT = 3;
let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: String(LIMIT) } }); });
after(async () => { await closeAll(); await server?.stop(); });

test('new users per address: the limit is crossed, existing names still join', async () => {
  const made = [];
  const watcher = await connect(server.wsUrl);
  // a taken name is refused as name_taken and uses no slot
  const first = await connect(server.wsUrl);
  made.push((await first.joinOk(uniq('rl'))).user);
  const t = await connect(server.wsUrl);
  checkError(assert, await t.request({ type: 'join', name: made[0].name, ref: 't' }), 'name_taken', 't');
  checkError(assert, await t.request({ type: 'join', name: '\u3164', ref: 'i' }), 'name_invalid', 'i');
  for (let i = 1; i < LIMIT; i++) {
    const c = await connect(server.wsUrl);
    made.push((await c.joinOk(uniq('rl'))).user);
    await c.close();
  }
  await watcher.push('presence_diff', (d) => made.at(-1).name in d.joins);
  const before = (await connect(server.wsUrl)).welcome.total_users;
  // one more new name: refused, with the ref, nothing created
  const over = await connect(server.wsUrl);
  const name = uniq('rl');
  checkError(assert, await over.request({ type: 'join', name, ref: 'r1' }), 'rate_limited', 'r1');
  checkError(assert, await over.request({ type: 'join', name, ref: 'r2' }), 'rate_limited', 'r2');
  // invalid still wins over rate_limited
  checkError(assert, await over.request({ type: 'join', name: 'a!', ref: 'r3' }), 'name_invalid', 'r3');
  assert.equal(await over.findUser(name), undefined, 'a refused join creates nothing');
  await watcher.settle(150);
  assert.equal((await connect(server.wsUrl)).welcome.total_users, before);
  assert.equal(watcher.frames.filter((f) => f.type === 'presence_diff' && name in f.joins).length, 0);
  // existing names are never limited: offline ones and a take-over
  for (const u of made.slice(1)) {
    const c = await connect(server.wsUrl);
    assert.equal((await c.joinOk(u.name)).user.id, u.id);
  }
  // the refused socket is still at home and may join an existing name
  await first.close();
  assert.equal((await over.joinOk(made[0].name)).user.id, made[0].id);
});

test('server still running', () => checkAlive(assert, server));
