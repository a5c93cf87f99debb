// A welcome asked while presence's window is open waits for that window's
// flush (app/presence.c, hold_welcome).  If presence dies meanwhile, the
// held welcomes die with it: each session's request fails with the
// presence, the session starts over and asks the restarted one.  So every
// socket that connected around the kill is welcomed, and the counts a fresh
// socket is given come back exact.  Needs CHATTER_DEBUG=1 (POST /debug/kill).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, kill, sleep, at, checkAlive } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_DEBUG: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

test('presence killed while welcomes wait for its window: every socket welcomed, counts exact', async () => {
  const holders = await Promise.all(Array.from({ length: 20 }, () => joined(server.wsUrl, uniq('wk'))));
  // For 200 ms, a join and a new socket every 2 ms: presence's window is
  // open all along, so each new socket's welcome waits up to 50 ms for its
  // flush, and presence is killed in the middle, with some of them held.
  const joiners = await Promise.all(Array.from({ length: 100 }, () => connect(server.wsUrl)));
  const joins = joiners.map((c, i) => at(2 * i, () => c.join(uniq('wj'))));
  const newcomers = Array.from({ length: 100 }, (_, i) => at(2 * i, () => connect(server.wsUrl)));
  await sleep(100); // the kill's place in that schedule, not a synchronisation
  await kill(assert, server, 'presence');
  const welcomed = await Promise.all(newcomers);
  for (const c of welcomed) {
    const w = c.frames.find((f) => f.type === 'welcome');
    assert.ok(w && Number.isInteger(w.online_count) && Number.isInteger(w.total_users), 'a welcome with counts');
    assert.ok(c.isOpen(), 'not closed');
  }
  const replies = await Promise.all(joins);
  const ok = replies.filter((r) => r.type === 'joined').length;
  for (const r of replies) assert.ok(r.type === 'joined' || (r.type === 'error' && r.code === 'unavailable'), JSON.stringify(r));
  // The restarted presence is rebuilt from the sessions' re-tracks: a fresh
  // socket's welcome counts every joined socket once it is done.
  const want = holders.length + ok;
  const deadline = Date.now() + 10000;
  let online;
  for (;;) {
    const c = await connect(server.wsUrl);
    online = c.frames.find((f) => f.type === 'welcome').online_count;
    await c.close();
    if (online === want || Date.now() > deadline) break;
    await sleep(100); // re-read: the rebuild's end has no event of its own on a new socket
  }
  assert.equal(online, want, 'online_count after the rebuild');
});

test('server still running', () => checkAlive(assert, server));
