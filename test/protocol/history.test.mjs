// history (before/limit, more) and catch_up (after, 500 per page, more).
// Inserts a little over 500 messages from many sockets (10 each: the burst).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, joined, closeAll, uniq, checkMessage, checkIncreasing, checkError, checkAlive,
  dbQueries as readDbQueries,
} from './client.mjs';

let server;
let reader;       // a joined socket used for reads
let marker;       // a message sent before the bulk
let mine = [];    // the bulk messages, as acknowledged, in seq order
let all = [];     // every message with seq > marker.seq up to the last of ours, from catch_up

const SOCKETS = 52;
const PER_SOCKET = 10;

before(async () => {
  server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } });
  reader = await joined(server.wsUrl);
  marker = await reader.sendOk('history marker ' + uniq());
  const socks = [];
  for (let i = 0; i < SOCKETS; i += 13) {
    socks.push(...await Promise.all(Array.from({ length: Math.min(13, SOCKETS - i) }, () => joined(server.wsUrl, uniq('h')))));
  }
  const acks = await Promise.all(socks.map(async (s, k) => {
    const refs = [];
    for (let i = 0; i < PER_SOCKET; i++) refs.push(s.sendReq({ type: 'send', content: `bulk ${k}.${i}` }));
    const out = [];
    for (const r of refs) {
      const rep = await s.reply(r, { timeout: 20000 });
      if (rep.type !== 'sent') throw new Error(`bulk send: ${JSON.stringify(rep)}`);
      out.push(rep.message);
    }
    return out;
  }));
  mine = acks.flat().sort((a, b) => a.seq - b.seq);
  await Promise.all(socks.map((s) => s.close()));
});
after(async () => { await closeAll(); await server?.stop(); });

test('catch_up: 500 per page, oldest first, more while more remain', async () => {
  const p1 = await reader.read({ type: 'catch_up', after: marker.seq, ref: 'c1' });
  assert.equal(p1.type, 'history', JSON.stringify(p1).slice(0, 300));
  assert.equal(p1.ref, 'c1');
  assert.equal(p1.messages.length, 500);
  assert.equal(p1.more, true);
  p1.messages.forEach((m) => checkMessage(assert, m));
  checkIncreasing(assert, p1.messages, 'catch_up page 1');
  assert.ok(p1.messages[0].seq > marker.seq);
  const p2 = await reader.read({ type: 'catch_up', after: p1.messages[499].seq });
  assert.equal(p2.type, 'history');
  checkIncreasing(assert, p2.messages, 'catch_up page 2');
  assert.ok(p2.messages.length > 0 && p2.messages[0].seq > p1.messages[499].seq);
  if (p2.messages.length < 500) assert.equal(p2.more, false);
  all = [...p1.messages, ...p2.messages];
  const byId = new Map(all.map((m) => [m.id, m]));
  assert.equal(byId.size, all.length, 'duplicate ids across pages');
  for (const m of mine) assert.deepEqual(byId.get(m.id), m, `acknowledged message ${m.seq} missing or different`);
  // the first page starts right after the marker: no message with marker < seq < first is skipped
  assert.deepEqual(all.slice(0, 3).map((m) => m.seq), all.slice(0, 3).map((m) => m.seq).sort((a, b) => a - b));
  all = all.filter((m) => m.seq <= mine[mine.length - 1].seq);
});

test('catch_up: after the newest -> empty, more false', async () => {
  const last = await reader.sendOk('newest ' + uniq());
  const r = await reader.read({ type: 'catch_up', after: last.seq });
  assert.equal(r.type, 'history');
  // someone else may write meanwhile; then only newer messages
  for (const m of r.messages) assert.ok(m.seq > last.seq);
  assert.equal(r.more, false);
  const r2 = await reader.read({ type: 'catch_up', after: last.seq - 1 });
  assert.deepEqual(r2.messages[0], last);
});

// The messages pushed since the server started are kept encoded in memory
// (app/repo.c's recent ring): a catch_up among them, as every client sends
// after a reconnect, and the 500 of `joined` ask nothing of the database.
// The answer is the database's (the test above compared both pages with the
// acknowledged messages); /metrics' round-trip counter must not move.
const dbQueries = () => readDbQueries(assert, server);

test('catch_up: recent messages are answered from memory, the same as the database', async () => {
  const before = await dbQueries();
  const from = mine[mine.length - 40];
  const r = await reader.read({ type: 'catch_up', after: from.seq });
  assert.equal(r.type, 'history');
  checkIncreasing(assert, r.messages, 'catch_up from memory');
  assert.equal(r.more, false);
  const want = all.filter((m) => m.seq > from.seq);
  assert.deepEqual(r.messages.slice(0, want.length), want, 'the same messages, byte for byte');
  for (const m of r.messages.slice(want.length)) assert.ok(m.seq > want[want.length - 1].seq);
  assert.equal(await dbQueries(), before, 'no query for a catch_up of recent messages');
});

test('history: up to L newest with seq < before, oldest first', async () => {
  assert.ok(all.length >= mine.length, 'catch_up test ran first');
  const cases = [[mine[mine.length - 1].seq + 1, 1], [mine[300].seq, 10], [mine[300].seq, 500], [mine[10].seq, 7], [mine[100].seq, 100]];
  for (const [before, limit] of cases) {
    const r = await reader.read({ type: 'history', before, limit, ref: `h${before}.${limit}` });
    assert.equal(r.type, 'history', JSON.stringify(r).slice(0, 300));
    assert.equal(r.ref, `h${before}.${limit}`);
    assert.ok(r.messages.length <= limit);
    checkIncreasing(assert, r.messages, 'history');
    for (const m of r.messages) assert.ok(m.seq < before);
    // the newest of those: compare with the window we know completely
    const known = [marker, ...all].filter((m) => m.seq < before);
    if (known.length >= limit) {
      assert.deepEqual(r.messages, known.slice(-limit), `history before ${before} limit ${limit}`);
    } else {
      assert.deepEqual(r.messages.slice(-known.length), known, `history before ${before} limit ${limit}`);
      if (r.messages.length < limit) assert.equal(r.more, false);
    }
    // more: whether messages older than the first returned exist
    const older = await reader.read({ type: 'history', before: r.messages[0].seq, limit: 1 });
    assert.equal(r.more, older.messages.length > 0, `more for before ${before} limit ${limit}`);
  }
});

test('history: more is false at the oldest message; before beyond -> empty', async () => {
  const first = await reader.read({ type: 'catch_up', after: 0 });
  assert.ok(first.messages.length > 0);
  const [m0, m1] = first.messages;
  const a = await reader.read({ type: 'history', before: m0.seq + 1, limit: 5 });
  assert.deepEqual(a.messages, [m0]);
  assert.equal(a.more, false);
  const b = await reader.read({ type: 'history', before: m0.seq, limit: 5 });
  assert.deepEqual(b.messages, []);
  assert.equal(b.more, false);
  if (m1) {
    const c = await reader.read({ type: 'history', before: m1.seq + 1, limit: 1 });
    assert.deepEqual(c.messages, [m1]);
    assert.equal(c.more, true);
    const d = await reader.read({ type: 'history', before: m1.seq + 1, limit: 2 });
    assert.deepEqual(d.messages, [m0, m1]);
    assert.equal(d.more, false);
  }
  const e = await reader.read({ type: 'history', before: 0, limit: 5 });
  assert.deepEqual(e.messages, []);
  assert.equal(e.more, false);
});

test('history: limit outside 1..500 or of the wrong kind is bad_request', async () => {
  for (const [limit, ref] of [[0, 'l0'], [501, 'l501'], ['x', 'lx'], [-1, 'lm'], ['10', 'ls'], [null, 'ln'], [[5], 'la']]) {
    checkError(assert, await reader.request({ type: 'history', before: 100, limit, ref }), 'bad_request', ref);
  }
  checkError(assert, await reader.request({ type: 'history', before: 'x', limit: 5, ref: 'b' }), 'bad_request', 'b');
  checkError(assert, await reader.request({ type: 'history', limit: 5, ref: 'nb' }), 'bad_request', 'nb');
  checkError(assert, await reader.request({ type: 'history', before: 5, ref: 'nl' }), 'bad_request', 'nl');
  checkError(assert, await reader.request({ type: 'catch_up', after: 'x', ref: 'a' }), 'bad_request', 'a');
  checkError(assert, await reader.request({ type: 'catch_up', ref: 'na' }), 'bad_request', 'na');
  const ok1 = await reader.read({ type: 'history', before: mine[5].seq, limit: 1 });
  assert.equal(ok1.messages.length, 1);
  const ok500 = await reader.read({ type: 'history', before: mine[mine.length - 1].seq + 1, limit: 500 });
  assert.equal(ok500.messages.length, 500);
});

test('history and catch_up: not_joined at home; bad_request before not_joined', async () => {
  const c = await connect(server.wsUrl);
  checkError(assert, await c.request({ type: 'history', before: 10, limit: 5, ref: 1 }), 'not_joined', 1);
  checkError(assert, await c.request({ type: 'catch_up', after: 0, ref: 2 }), 'not_joined', 2);
  checkError(assert, await c.request({ type: 'history', before: 10, limit: 0, ref: 3 }), 'bad_request', 3);
  checkError(assert, await c.request({ type: 'catch_up', after: 'x', ref: 4 }), 'bad_request', 4);
});

test('join: 500 most recent messages and more=true when older exist', async () => {
  const c = await connect(server.wsUrl);
  const r = await c.joinOk(uniq('hj'));
  assert.equal(r.messages.length, 500);
  assert.equal(r.more, true);
  checkIncreasing(assert, r.messages, 'joined.messages');
  assert.ok(r.messages[r.messages.length - 1].seq >= mine[mine.length - 1].seq);
});

test('server still running', () => checkAlive(assert, server));
