// A restarted session catches up on the diffs it missed (PRESENCE_SINCE)
// and must still write them 50 ms apart (PROTOCOL.md): its pacer's queue
// died with it, and the catch-up can hold several.  A restart takes about
// a millisecond, so here CHATTER_CHAOS_RESTART_MS holds each restarted
// session back 150 ms, three diff windows: every diff crashes the
// observers' sessions (CHATTER_CHAOS=1), and a wave of joins and leaves
// publishes a diff every window, so each catch-up has two or more.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive, httpGet } from './client.mjs';
import { startObserver, shortGaps } from './diffgaps.mjs';

let server;
before(async () => {
  server = await startServer({
    env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_CHAOS: '1', CHATTER_CHAOS_RESTART_MS: '150' },
  });
});
after(async () => { await closeAll(); await server?.stop(); });

const restarts = async () => {
  const m = /^chatter_session_restarts_total (\d+)$/m.exec((await httpGet(server.port, '/metrics')).text);
  assert.ok(m, 'chatter_session_restarts_total in /metrics');
  return Number(m[1]);
};

test('chaos: diffs caught up after a restart still go out 50 ms apart, none lost', async () => {
  const observers = await Promise.all(Array.from({ length: 4 }, () => startObserver(server.wsUrl)));
  const obs = await connect(server.wsUrl);
  const before = await restarts();
  const names = [];
  for (let round = 0; round < 4; round++) {
    const socks = await Promise.all(Array.from({ length: 15 }, () => connect(server.wsUrl)));
    const ns = socks.map(() => uniq('cg'));
    names.push(...ns);
    await Promise.all(socks.map((c, i) => c.joinOk(ns[i])));
    await Promise.all(socks.map((c) => c.close()));
  }
  for (const n of names) await obs.push('presence_diff', (d) => n in d.leaves, { timeout: 20000 });
  await obs.settle(500);
  assert.ok(await restarts() > before + 4, 'the observers\' sessions restarted');
  for (const [i, o] of observers.entries()) {
    const seen = await o.stop();
    assert.deepEqual(shortGaps(seen), [], `observer ${i}: diffs closer than 50 ms`);
    for (const n of names) {
      assert.ok(seen.diffs.some((d) => d.joins.includes(n)), `observer ${i}: join of ${n} missing`);
      assert.ok(seen.diffs.some((d) => d.leaves.includes(n)), `observer ${i}: leave of ${n} missing`);
    }
  }
});

test('server still running', () => checkAlive(assert, server));
