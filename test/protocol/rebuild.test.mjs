// A restarted presence must never hand out a name a live session holds
// (issue 8 item 12).  Presence is killed with many joined sessions and, at
// once, new sockets ask to join those same names without the token: while
// the old sessions are still re-tracking themselves in the new presence,
// every such join must be answered name_taken (never joined, and the holder
// is never sent taken_over).  A join with the holder's token still takes
// the name over.  Needs CHATTER_DEBUG=1 (POST /debug/kill).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, kill, sleep, checkAlive } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_DEBUG: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

const N = Number(process.env.REBUILD_SESSIONS || 150);
// The root supervisor allows 3 restarts in 5 s: one kill per round, 5.5 s
// apart (a rule of the supervisor, not a synchronisation).
const ROUNDS = Number(process.env.REBUILD_ROUNDS || 2);

for (let round = 0; round < ROUNDS; round++) {
  test(`round ${round}: presence killed, ${N} names asked for at once by other sockets: all name_taken`, async () => {
    if (round > 0) await sleep(5500);
    const holders = [];
    for (let i = 0; i < N; i += 50) {
      holders.push(...await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => joined(server.wsUrl, uniq(`rb${round}`)))));
    }
    const thieves = await Promise.all(holders.map(() => connect(server.wsUrl)));
    const marks = holders.map((h) => h.mark());
    const killed = kill(assert, server, 'presence');
    // the joins leave at once, racing the sessions' re-tracks
    // `unavailable` means retry (PROTOCOL.md), as a client would, a few ms
    // apart (pacing, not synchronisation), until another answer comes
    const ask = async (t, name) => {
      for (let i = 0; i < 500; i++) {
        const r = await t.request({ type: 'join', name }, { timeout: 20000 });
        if (r.code !== 'unavailable') return r;
        await sleep(10);
      }
      return { type: 'error', code: 'unavailable for 5 s' };
    };
    const replies = await Promise.all(thieves.map((t, k) => ask(t, holders[k].user.name)));
    await killed;
    const wrong = replies.map((r, k) => [holders[k].user.name, r]).filter(([, r]) => r.code !== 'name_taken');
    assert.deepEqual(wrong.map(([n, r]) => `${n}: ${r.type} ${r.code ?? ''}`), [], 'every join of a held name is name_taken');
    for (const [k, h] of holders.entries()) {
      assert.ok(h.isOpen(), 'holder still connected');
      const lost = h.frames.slice(marks[k]).filter((f) => f.type === 'error' && f.code === 'taken_over');
      assert.equal(lost.length, 0, `${h.user.name} was told taken_over`);
    }
    // the holders are still joined: a send works
    await holders[0].sendOk('still mine');
    // the right token still takes a name over
    const t = await connect(server.wsUrl);
    assert.equal((await t.join(holders[1].user.name, holders[1].token)).type, 'joined');
    await holders[1].push('error', (f) => f.code === 'taken_over');
    await Promise.all([...holders, ...thieves, t].map((c) => c.close()));
  });
}

test('server still running', () => checkAlive(assert, server));
