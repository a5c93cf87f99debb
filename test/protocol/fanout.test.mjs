// 50 joined sockets, 10 of them sending at once: every socket receives every
// message exactly once, in strictly increasing seq order.
import fs from 'node:fs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { joined, closeAll, uniq, checkAlive, checkMessage, sleep, metric } from './client.mjs';

const SOCKETS = 50;
const SENDERS = 10;
const EACH = 8; // within the burst of 10

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
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

test('sockets joining while messages flow: joined.messages + pushes leave no gap, pushes never repeat', async () => {
  const senders = await Promise.all(Array.from({ length: 5 }, () => joined(server.wsUrl, uniq('fs'))));
  const acked = [];
  const flows = senders.map(async (s, k) => {
    for (let i = 0; i < 10; i++) {
      const r = await s.request({ type: 'send', content: `flow ${k}.${i}` }, { timeout: 20000 });
      assert.equal(r.type, 'sent', JSON.stringify(r));
      acked.push(r.message);
      await sleep(30); // spreads the flow over the joins below (pacing, not synchronisation)
    }
  });
  const joiners = [];
  for (let i = 0; i < 8; i++) joiners.push(await joined(server.wsUrl, uniq('fj')));
  await Promise.all(flows);
  const overlap = joiners.filter((j) => acked.some((m) => m.seq > (j.joinedReply.messages.at(-1)?.seq ?? 0))).length;
  assert.ok(overlap >= 2, `only ${overlap} joiners joined while messages flowed`);
  for (const j of joiners) {
    const snap = j.joinedReply.messages;
    const last = snap.length ? snap[snap.length - 1].seq : 0;
    const want = acked.filter((m) => m.seq > last);
    for (const m of want) await j.push('message', (f) => f.message.id === m.id, { timeout: 10000 });
    await j.settle(100);
    const pushed = j.messages();
    assert.equal(new Set(pushed.map((m) => m.id)).size, pushed.length, 'a message pushed twice');
    for (let i = 1; i < pushed.length; i++) assert.ok(pushed[i].seq > pushed[i - 1].seq, 'push order');
    const have = new Set([...snap, ...pushed].map((m) => m.id));
    const first = snap.length ? snap[0].seq : 0;
    for (const m of acked) if (m.seq >= first) assert.ok(have.has(m.id), `message ${m.seq} in neither joined nor pushes`);
  }
});

test('server still running', () => checkAlive(assert, server));

// app/sendbatch.c: each scheduler's pushes leave through an io_uring of its
// own, unless CHATTER_IO_URING=0 (make test-protocol runs this file that way
// too) or the kernel refuses one, which the log then says.
test('pushes leave through one io_uring per scheduler, many per system call, or the log says why not', async (t) => {
  const dir = `/proc/${server.proc.pid}/fd`;
  const rings = fs.readdirSync(dir).filter((f) => {
    try { return fs.readlinkSync(`${dir}/${f}`) === 'anon_inode:[io_uring]'; } catch { return false; }
  }).length;
  const scheds = Number(/\((\d+) schedulers?/.exec(server.logs())?.[1]);
  assert.ok(scheds >= 1, 'the start line names the schedulers');
  // the fan-outs above went through the flush's batches
  const sends = await metric(assert, server, 'chatter_push_sends_total');
  const calls = await metric(assert, server, 'chatter_push_syscalls_total');
  assert.ok(sends >= SOCKETS * SENDERS * EACH / 16, `${sends} batched sends`);
  const refused = /pushes leave by one send\(2\) each: ([^"\n]*)/.exec(server.logs());
  if (process.env.CHATTER_IO_URING === '0' || refused) {
    if (refused) t.diagnostic(`io_uring refused here: ${refused[1]}`);
    assert.equal(rings, 0);
    assert.equal(calls, sends, 'one send(2) per send');
    return;
  }
  assert.equal(rings, scheds, `${rings} io_uring descriptors for ${scheds} schedulers`);
  assert.ok(calls * 2 <= sends, `${calls} system calls for ${sends} sends: batched`);
  t.diagnostic(`${sends} sends in ${calls} system calls`);
});
