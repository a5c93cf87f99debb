// 50 joined sockets, 10 of them sending at once: every socket receives every
// message exactly once, in strictly increasing seq order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { joined, closeAll, uniq, checkAlive, checkMessage } from './client.mjs';

const SOCKETS = 50;
const SENDERS = 10;
const EACH = 8; // within the burst of 10

let server;
before(async () => { server = await startServer(); });
after(async () => { await closeAll(); await server?.stop(); });

test(`${SOCKETS} sockets, ${SENDERS} senders x ${EACH}: every message once, in seq order`, async () => {
  const socks = [];
  for (let i = 0; i < SOCKETS; i += 10) {
    socks.push(...await Promise.all(Array.from({ length: 10 }, () => joined(server.wsUrl, uniq('f')))));
  }
  const marks = socks.map((s) => s.mark());
  const senders = socks.slice(0, SENDERS);
  const acked = (await Promise.all(senders.map(async (s, k) => {
    const refs = [];
    for (let i = 0; i < EACH; i++) refs.push(s.sendReq({ type: 'send', content: `fan ${k}.${i} ${uniq()}` }));
    const out = [];
    for (const r of refs) {
      const rep = await s.reply(r, { timeout: 20000 });
      assert.equal(rep.type, 'sent', JSON.stringify(rep));
      out.push(rep.message);
    }
    return out;
  }))).flat();
  assert.equal(acked.length, SENDERS * EACH);
  const ids = new Map(acked.map((m) => [m.id, m]));
  assert.equal(ids.size, acked.length);
  // every socket gets every acknowledged message
  await Promise.all(socks.map((s, i) => Promise.all(acked.map((m) =>
    s.push('message', (f) => f.message.id === m.id, { since: marks[i], timeout: 20000 })))));
  await Promise.all(socks.map((s) => s.settle(300)));
  for (let i = 0; i < socks.length; i++) {
    const got = socks[i].messages(marks[i]);
    for (let j = 1; j < got.length; j++) {
      assert.ok(got[j].seq > got[j - 1].seq, `socket ${i}: seq ${got[j - 1].seq} then ${got[j].seq}`);
    }
    const ours = got.filter((m) => ids.has(m.id));
    assert.equal(ours.length, acked.length, `socket ${i}: ${ours.length} of ours (duplicates?)`);
    for (const m of ours) { checkMessage(assert, m); assert.deepEqual(m, ids.get(m.id)); }
  }
  // each sender's own messages keep their order
  for (const s of senders) {
    const own = acked.filter((m) => m.user_id === s.user.id).map((m) => m.seq);
    assert.deepEqual(own, [...own].sort((a, b) => a - b));
  }
});

test('server still running', () => checkAlive(assert, server));
