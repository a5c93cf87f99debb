// CHATTER_CHAOS=1: every session handler crashes once per message and is
// restarted on the same socket.  Nothing is lost or duplicated, nobody sees
// a leave or a join for a restart, sockets stay open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive, checkMessage, httpGet } from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0', CHATTER_CHAOS: '1' } }); });
after(async () => { await closeAll(); await server?.stop(); });

const T = { timeout: 10000 };

test('chaos: a few users chat; every send acknowledged, every message seen once, no presence churn', async () => {
  const obs = await connect(server.wsUrl);
  const users = [];
  for (let i = 0; i < 3; i++) {
    const c = await connect(server.wsUrl);
    const r = await c.request({ type: 'join', name: uniq('cx') }, T);
    assert.equal(r.type, 'joined', JSON.stringify(r));
    c.user = r.user;
    users.push(c);
  }
  const names = users.map((c) => c.user.name);
  for (const n of names) await obs.push('presence_diff', (d) => d.joins && n in d.joins, T);
  const marks = users.map((c) => c.mark());
  const obsMark = obs.mark();

  const acked = [];
  for (let round = 0; round < 4; round++) {
    for (const c of users) {
      const r = await c.request({ type: 'send', content: `chaos ${round} ${c.user.name}` }, T);
      assert.equal(r.type, 'sent', JSON.stringify(r));
      checkMessage(assert, r.message);
      acked.push(r.message);
    }
  }
  // pipelined as well
  const refs = users.map((c) => [c, [0, 1, 2].map((i) => c.sendReq({ type: 'send', content: `piped ${i} ${c.user.name}` }))]);
  for (const [c, rs] of refs) {
    for (const ref of rs) {
      const r = await c.reply(ref, T);
      assert.equal(r.type, 'sent', JSON.stringify(r));
      acked.push(r.message);
    }
  }
  const ids = new Map(acked.map((m) => [m.id, m]));
  for (let i = 0; i < users.length; i++) {
    for (const m of acked) await users[i].push('message', (f) => f.message.id === m.id, { since: marks[i], ...T });
  }
  for (const c of [...users, obs]) {
    const p = await c.request({ type: 'ping' }, T);
    assert.equal(p.type, 'pong');
  }
  await Promise.all([...users, obs].map((c) => c.settle(500)));
  for (let i = 0; i < users.length; i++) {
    const got = users[i].messages(marks[i]);
    const ours = got.filter((m) => ids.has(m.id));
    assert.equal(ours.length, acked.length, `socket ${i} saw ${ours.length} of ${acked.length} (duplicates or losses)`);
    assert.equal(new Set(ours.map((m) => m.id)).size, acked.length);
    for (let j = 1; j < got.length; j++) assert.ok(got[j].seq > got[j - 1].seq, `socket ${i}: seq order`);
    assert.ok(users[i].isOpen(), `socket ${i} closed: ${JSON.stringify(users[i].closeInfo)}`);
    // no taken_over or other error pushes
    assert.equal(users[i].pushes('error').length, 0, JSON.stringify(users[i].pushes('error')));
  }
  // nobody saw these users leave or join again
  const churn = obs.pushes('presence_diff', obsMark)
    .filter((d) => names.some((n) => n in d.joins || n in d.leaves));
  assert.equal(churn.length, 0, `presence churn on restarts: ${JSON.stringify(churn).slice(0, 500)}`);
  assert.equal(obs.messages().length, 0, 'home socket got messages');
  assert.ok(obs.isOpen());
  // the sessions are still joined as the same users
  for (const c of users) {
    const r = await c.request({ type: 'join', name: c.user.name }, T);
    assert.equal(r.code, 'already_joined', JSON.stringify(r));
  }
  // history still complete
  const minSeq = Math.min(...acked.map((m) => m.seq));
  const h = await users[0].read({ type: 'catch_up', after: minSeq - 1 }, T);
  const stored = h.messages.filter((m) => ids.has(m.id));
  assert.equal(stored.length, acked.length);
});

test('chaos: leave and rejoin still work', async () => {
  const c = await connect(server.wsUrl);
  const name = uniq('cl');
  const r = await c.request({ type: 'join', name }, T);
  assert.equal(r.type, 'joined', JSON.stringify(r));
  assert.equal((await c.request({ type: 'leave' }, T)).type, 'left');
  assert.equal((await c.request({ type: 'send', content: 'x' }, T)).code, 'not_joined');
  const r2 = await c.request({ type: 'join', name }, T);
  assert.equal(r2.type, 'joined', JSON.stringify(r2));
  assert.equal(r2.user.id, r.user.id);
});

test('chaos: concurrent senders, every message once and in seq order on every socket', async () => {
  const socks = await Promise.all(Array.from({ length: 6 }, async () => {
    const c = await connect(server.wsUrl);
    const r = await c.request({ type: 'join', name: uniq('cc') }, T);
    assert.equal(r.type, 'joined', JSON.stringify(r));
    c.user = r.user;
    return c;
  }));
  const marks = socks.map((c) => c.mark());
  const acked = (await Promise.all(socks.map(async (c, k) => {
    const refs = Array.from({ length: 8 }, (_, i) => c.sendReq({ type: 'send', content: `cc ${k}.${i}` }));
    const out = [];
    for (const ref of refs) {
      const r = await c.reply(ref, T);
      assert.equal(r.type, 'sent', JSON.stringify(r));
      out.push(r.message);
    }
    return out;
  }))).flat();
  const ids = new Set(acked.map((m) => m.id));
  await Promise.all(socks.map((c, i) => Promise.all(acked.map((m) =>
    c.push('message', (f) => f.message.id === m.id, { since: marks[i], ...T })))));
  await Promise.all(socks.map((c) => c.settle(300)));
  socks.forEach((c, i) => {
    const got = c.messages(marks[i]);
    for (let j = 1; j < got.length; j++) assert.ok(got[j].seq > got[j - 1].seq, `socket ${i}: seq order`);
    assert.equal(got.filter((m) => ids.has(m.id)).length, acked.length, `socket ${i}: duplicates`);
    assert.ok(c.isOpen());
  });
});

test('chaos: a leave and a take-over each give exactly one presence_diff', async () => {
  const obs = await connect(server.wsUrl);
  const name = uniq('ct');
  const a = await connect(server.wsUrl);
  const r = await a.request({ type: 'join', name }, T);
  assert.equal(r.type, 'joined', JSON.stringify(r));
  await obs.push('presence_diff', (d) => d.joins && name in d.joins, T);
  const since = obs.mark();
  const b = await connect(server.wsUrl);
  const r2 = await b.request({ type: 'join', name, token: r.token }, T);
  assert.equal(r2.type, 'joined', JSON.stringify(r2));
  await a.push('error', (f) => f.code === 'taken_over', T);
  const d = await obs.push('presence_diff', (x) => name in x.joins || name in x.leaves, { since, ...T });
  assert.ok(name in d.joins && name in d.leaves, JSON.stringify(d));
  const since2 = obs.mark();
  assert.equal((await b.request({ type: 'leave' }, T)).type, 'left');
  await obs.push('presence_diff', (x) => name in x.leaves, { since: since2, ...T });
  await obs.settle(500);
  const all = obs.pushes('presence_diff', since).filter((x) => name in x.joins || name in x.leaves);
  assert.equal(all.length, 2, JSON.stringify(all));
});

test('chaos: pipelined requests are all answered, in request order', async () => {
  const c = await connect(server.wsUrl);
  const name = uniq('cp');
  const reqs = [
    { type: 'ping' }, { type: 'join', name }, { type: 'send', content: 'one' }, { type: 'history', before: 1e12, limit: 2 },
    { type: 'nope' }, { type: 'send', content: '' }, { type: 'catch_up', after: 0 }, { type: 'send', content: 'two' },
    { type: 'join', name }, { type: 'leave' }, { type: 'send', content: 'three' }, { type: 'ping' },
  ];
  const want = ['pong', 'joined', 'sent', 'history', 'error:bad_request', 'error:content_invalid', 'history', 'sent',
    'error:already_joined', 'left', 'error:not_joined', 'pong'];
  const refs = reqs.map((r, i) => c.sendReq({ ...r, ref: `c${i}` }));
  await c.reply(refs[refs.length - 1], T);
  const replies = c.frames.filter((f) => 'ref' in f);
  assert.deepEqual(replies.map((f) => f.ref), refs, 'replies out of request order, missing or doubled');
  assert.deepEqual(replies.map((f) => (f.type === 'error' ? `error:${f.code}` : f.type)), want);
  assert.ok(c.isOpen());
});

test('chaos: after restarts, closing the socket still takes the name offline, and the name is free again', async () => {
  const obs = await connect(server.wsUrl);
  const name = uniq('cz');
  const a = await connect(server.wsUrl);
  const r = await a.request({ type: 'join', name }, T);
  assert.equal(r.type, 'joined', JSON.stringify(r));
  for (let i = 0; i < 3; i++) assert.equal((await a.request({ type: 'send', content: `crash ${i}` }, T)).type, 'sent');
  await obs.push('presence_diff', (d) => name in d.joins, T);
  const since = obs.mark();
  await a.close();
  await obs.push('presence_diff', (d) => name in d.leaves, { since, ...T });
  const b = await connect(server.wsUrl);
  const r2 = await b.request({ type: 'join', name }, T);
  assert.equal(r2.type, 'joined', JSON.stringify(r2));
  assert.equal(r2.user.id, r.user.id);
  // and a hard drop (no close frame) too
  const since2 = obs.mark();
  for (let i = 0; i < 2; i++) assert.equal((await b.request({ type: 'ping' }, T)).type, 'pong');
  b.ws.terminate();
  await obs.push('presence_diff', (d) => name in d.leaves, { since: since2, ...T });
});

test('chaos: restarts are counted in /metrics', async () => {
  const res = await httpGet(server.port, '/metrics');
  assert.equal(res.status, 200);
  const lines = res.text.split('\n').filter((l) => !l.startsWith('#') && /restart/i.test(l));
  assert.ok(lines.length > 0, 'no restart metric');
  assert.ok(lines.some((l) => Number((l.match(/\s(\S+)(\s+-?\d+)?$/) || [])[1]) > 0), `no restart counted: ${lines.join(' | ')}`);
});

test('server still running', () => checkAlive(assert, server));
