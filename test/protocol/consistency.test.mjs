// "A welcome or joined snapshot's counts, and every users page, are
// consistent with the pushes that follow them: a client that applies every
// later diff to what it has read has the true state."  Observers connect and
// read the whole directory while names churn online and offline; each
// applies every later push, and at the end all agree with a fresh reader.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive, readDirectory } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
after(async () => { await closeAll(); await server?.stop(); });

test('snapshots + pushes = the true state, under churn', async () => {
  const names = Array.from({ length: 8 }, () => uniq('cs'));
  // create the users first, so that churn below is only online/offline
  for (const n of names) { const c = await connect(server.wsUrl); await c.joinOk(n); await c.close(); }
  const observers = [];
  let stop = false;
  const workers = names.map(async (name, k) => {
    let round = 0;
    while (!stop) {
      const c = await connect(server.wsUrl);
      const r = await c.join(name);
      if (r.type !== 'joined') { await c.close(); continue; } // the previous socket not yet seen gone
      if (k % 3 === 0) await c.request({ type: 'leave' });
      if (k % 3 === 1 && round % 2 === 0) { // a take-over
        const t = await connect(server.wsUrl);
        const r2 = await t.join(name, r.token);
        if (r2.type !== 'joined') throw new Error(`take-over: ${JSON.stringify(r2)}`);
        await c.close();
        if (stop) return;
        await t.close();
      } else {
        await c.close();
      }
      round++;
    }
  });
  const churnSeen = () => observers[0].pushes('presence_diff').filter((d) => names.some((n) => n in d.joins || n in d.leaves)).length;
  const deadline = Date.now() + 8000;
  for (let i = 0; (i < 12 || churnSeen() < 30) && Date.now() < deadline; i++) {
    const o = await connect(server.wsUrl);
    observers.push(o);
    o.view = await readDirectory(o); // reads pages while the names churn
  }
  stop = true;
  await Promise.all(workers);
  // the last names to go offline: wait until every observer has seen each name settle
  await Promise.all(observers.map((o) => o.settle(400)));
  const fresh = await connect(server.wsUrl);
  const truth = await readDirectory(fresh);
  assert.deepEqual(truth.errors, []);
  const churn = churnSeen();
  assert.ok(churn >= 10, `only ${churn} diffs of churn seen`);
  process.env.PROTO_DEBUG && console.log('churn diffs seen by the first observer:', churn);
  for (const [i, o] of observers.entries()) {
    const v = o.view;
    for (const f of o.frames.slice(v.applied)) v.apply(f);
    assert.deepEqual(v.errors, [], `observer ${i}: ${v.errors.slice(0, 5).join('; ')}`);
    for (const n of names) assert.equal(v.isOnline(n), truth.isOnline(n), `observer ${i}: online of ${n}`);
    assert.equal(v.users.size, truth.users.size, `observer ${i}: users known`);
    assert.equal(v.total, truth.total, `observer ${i}: total_users`);
    assert.equal(v.onlineCount(), truth.onlineCount(), `observer ${i}: online users`);
    assert.equal(v.online, truth.online, `observer ${i}: online_count`);
  }
});

test('server still running', () => checkAlive(assert, server));
