// Ghost users (issue 8): presence killed while sessions are closing.  A
// leave that was in the dead presence's mailbox is lost; the restarted
// presence is rebuilt from the sessions that re-track themselves.  After
// the rebuild nobody may stay online without a live socket, and nobody
// with a live socket may be offline.  Needs CHATTER_DEBUG=1 (POST
// /debug/kill).
//
// Written first, to find the ghost of the closing note; it passed on the
// code as it was, and reading why: a session re-tracks only while its
// connection is still in its acceptor's table, and the connection, its
// session and its acceptor run on one scheduler thread.  A socket that
// closed before the re-track is gone from the table (no re-track, the lost
// leave does not matter: the old presence's meta died with it); one that
// closes after sends its leave from that thread after the session's
// PRESENCE_TRACK, so the new presence gets them in that order.  A join in
// flight to the dying presence fails by the session's monitor (the client
// is told `unavailable`), so nobody is online without being told either.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, kill, readDirectory, sleep } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_DEBUG: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

// The directory as a fresh socket reads it, until it agrees with what is
// open and closed (the leaves and re-tracks are asynchronous) or 10 s
// have passed; returns the last disagreement ([] when none).
async function directoryAgrees(open, closed) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const c = await connect(server.wsUrl);
    const view = await readDirectory(c);
    await c.close();
    const wrong = [
      ...open.filter((s) => !view.isOnline(s.user.name)).map((s) => `${s.user.name} offline while connected`),
      ...closed.filter((s) => view.isOnline(s.user.name)).map((s) => `${s.user.name} online with no socket (ghost)`),
    ];
    if (wrong.length === 0 || Date.now() > deadline) return wrong;
    await sleep(100); // re-read: the state we wait for has no event of its own on this socket
  }
}

// Each round closes half the sockets and kills presence `delay` ms later
// (0: in the same tick), so that leaves are in its mailbox or half done;
// a negative delay kills first and closes while the sessions re-track
// themselves in the new presence.  The root allows 3 restarts in 5 s: one
// kill per round, 5.5 s apart.
for (const [round, delay] of [0, 15, -3, -15].entries()) {
  const when = delay >= 0 ? `${delay} ms after half the sockets closed` : `${-delay} ms before half the sockets closed`;
  test(`presence killed ${when}: no ghost, nobody missing`, async () => {
    if (round > 0) await sleep(5500);
    const N = 80;
    const socks = await Promise.all(Array.from({ length: N }, () => joined(server.wsUrl, uniq(`g${round}`))));
    const closing = socks.slice(0, N / 2);
    const open = socks.slice(N / 2);
    let closes;
    if (delay >= 0) {
      closes = closing.map((s) => s.close());
      if (delay) await sleep(delay);
      await kill(assert, server, 'presence');
    } else {
      const killed = kill(assert, server, 'presence');
      await sleep(-delay);
      closes = closing.map((s) => s.close());
      await killed;
    }
    await Promise.all(closes);
    const wrong = await directoryAgrees(open, closing);
    assert.deepEqual(wrong, []);
    for (const s of open) assert.ok(s.isOpen(), 'nobody disconnected');
    await Promise.all(open.map((s) => s.close()));
    assert.deepEqual(await directoryAgrees([], open), [], 'the last ones leave too');
  });
}
