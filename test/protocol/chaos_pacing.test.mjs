// A restarted session catches up on the diffs it missed (PRESENCE_SINCE):
// several come merged into one diff, which must still leave 50 ms after the
// last (PROTOCOL.md): its pacer's queue died with it.  A restart takes about
// a millisecond, so here CHATTER_CHAOS_RESTART_MS holds each restarted
// session back 150 ms, three diff windows: every diff crashes the
// observers' sessions (CHATTER_CHAOS=1), and a churn of joins and leaves
// publishes a diff every window, so catch-ups hold two or more.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive, metric, at } from './client.mjs';
import { startObserver, shortGaps } from './diffgaps.mjs';

let server;
before(async () => {
  server = await startServer({
    env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_CHAOS: '1', CHATTER_CHAOS_RESTART_MS: '150' },
  });
});
after(async () => { await closeAll(); await server?.stop(); });

const counter = (name) => metric(assert, server, name);
const restarts = () => counter('chatter_session_restarts_total');

test('chaos: diffs caught up after a restart go out as one, 50 ms after the last, none lost', async () => {
  const published = await counter('chatter_presence_diffs_total');
  const merged = await counter('chatter_presence_catchups_merged_total');
  const observers = await Promise.all(Array.from({ length: 4 }, () => startObserver(server.wsUrl)));
  const obs = await connect(server.wsUrl);
  const before = await restarts();
  // Churn: 60 sockets, connected beforehand, join one every 5 ms and leave
  // once joined; their own sessions restart on every diff too, so the joins
  // and leaves land all over the next second, a few per window, and
  // presence publishes a diff every window while the observers' sessions
  // wait out their restarts.  Again until a catch-up was merged (at most 5
  // times: a server that never merges fails below).
  const names = [];
  for (let round = 0; round < 5; round++) {
    const socks = await Promise.all(Array.from({ length: 60 }, () => connect(server.wsUrl)));
    const ns = socks.map(() => uniq('cg'));
    names.push(...ns);
    await Promise.all(socks.map((c, i) => at(5 * i, async () => { await c.joinOk(ns[i]); await c.close(); })));
    if (await counter('chatter_presence_catchups_merged_total') > merged) break;
  }
  for (const n of names) await obs.push('presence_diff', (d) => n in d.leaves, { timeout: 20000 });
  await obs.settle(500);
  assert.ok(await restarts() > before + 4, 'the observers\' sessions restarted');
  // Every catch-up of several diffs is one diff (presence.c on_since): the
  // observers, restarted on every push, get fewer diffs than were published.
  // Sent one by one, they got them all, each restart further behind.
  assert.ok(await counter('chatter_presence_catchups_merged_total') > merged, 'catch-ups merged');
  const diffs = (await counter('chatter_presence_diffs_total')) - published;
  for (const [i, o] of observers.entries()) {
    const seen = await o.stop();
    assert.ok(seen.diffs.length < diffs,
      `observer ${i}: ${seen.diffs.length} diffs of ${diffs} published, none merged`);
    assert.deepEqual(shortGaps(seen), [], `observer ${i}: diffs closer than 50 ms`);
    for (const n of names) {
      assert.ok(seen.diffs.some((d) => d.joins.includes(n)), `observer ${i}: join of ${n} missing`);
      assert.ok(seen.diffs.some((d) => d.leaves.includes(n)), `observer ${i}: leave of ${n} missing`);
    }
  }
});

test('server still running', () => checkAlive(assert, server));
