// welcome, join (shape, name rules, reuse, name_taken, take-over with token,
// already_joined), leave and ping.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, joined, closeAll, uniq, checkUser, checkMessage, checkIncreasing, checkError,
  checkAlive, ISO_RE, dbQueries as readDbQueries,
} from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
afterEach(closeAll);
after(async () => { await closeAll(); await server?.stop(); });

function checkCounts(s) {
  assert.ok(Number.isInteger(s.total_users) && s.total_users >= 0, `total_users ${JSON.stringify(s).slice(0, 200)}`);
  assert.ok(Number.isInteger(s.online_count) && s.online_count >= 0 && s.online_count <= s.total_users,
    `online_count ${JSON.stringify(s).slice(0, 200)}`);
  assert.ok(!('users' in s), 'protocol 2: no users list in a snapshot');
}

test('welcome: protocol 2, counts only; the directory lists joined and offline users', async () => {
  const a = await joined(server.wsUrl);
  const c = await connect(server.wsUrl);
  const w = c.welcome;
  assert.equal(w.type, 'welcome');
  assert.equal(w.protocol, 2);
  assert.ok(!('ref' in w));
  checkCounts(w);
  assert.ok(w.total_users >= 1 && w.online_count >= 1 || (await c.push('presence_diff')).online_count >= 1);
  assert.ok(JSON.stringify(w).length < 120, 'a welcome is a few counts');
  // a join presence has not taken yet (up to 100 ms) is in neither list:
  // it comes in a diff, and the directory lists it from then on
  let me = await c.findUser(a.user.name);
  if (!me) {
    await c.push('presence_diff', (d) => d.joins && a.user.name in d.joins);
    me = await c.findUser(a.user.name);
  }
  assert.ok(me, 'the directory lists a joined user');
  assert.equal(me.id, a.user.id);
  // online in the page, or (had its diff not gone out yet) by a later diff
  if (!me.online) await c.push('presence_diff', (d) => d.joins && a.user.name in d.joins);
  // a user who went offline is listed, offline
  const b = await joined(server.wsUrl);
  const since = a.mark();
  await b.close();
  await a.push('presence_diff', (d) => d.leaves && b.user.name in d.leaves, { since });
  const c2 = await connect(server.wsUrl);
  checkCounts(c2.welcome);
  const off = await c2.findUser(b.user.name);
  assert.ok(off && off.online === false && off.name === b.user.name, JSON.stringify(off));
  assert.equal((await c2.findUser(a.user.name)).online, true);
});

test('join: joined reply shape', async () => {
  const c = await connect(server.wsUrl);
  const name = uniq('j');
  const r = await c.request({ type: 'join', name, ref: 'j1' });
  assert.equal(r.type, 'joined', JSON.stringify(r));
  assert.equal(r.ref, 'j1');
  checkUser(assert, r.user);
  assert.equal(r.user.name, name);
  assert.equal(r.user.online, true);
  assert.equal(typeof r.token, 'string');
  assert.ok(r.token.length > 0);
  assert.ok(Array.isArray(r.messages));
  assert.ok(r.messages.length <= 500, `messages ${r.messages.length} > 500`);
  r.messages.forEach((m) => checkMessage(assert, m));
  checkIncreasing(assert, r.messages, 'joined.messages');
  assert.equal(typeof r.more, 'boolean');
  if (r.messages.length < 500) assert.equal(r.more, false, 'more with fewer than 500 messages');
  checkCounts(r);
  // more says whether older messages exist
  if (r.messages.length > 0) {
    const h = await c.read({ type: 'history', before: r.messages[0].seq, limit: 1 });
    assert.equal(h.type, 'history', JSON.stringify(h));
    assert.equal(r.more, h.messages.length > 0, 'joined.more vs. existence of older messages');
  }
});

test('join: messages are the most recent, oldest first', async () => {
  const s = await joined(server.wsUrl);
  const m1 = await s.sendOk('recent one ' + uniq());
  const m2 = await s.sendOk('recent two ' + uniq());
  const c = await connect(server.wsUrl);
  const r = await c.joinOk(uniq('j'));
  const ids = r.messages.map((m) => m.id);
  const i1 = ids.indexOf(m1.id); const i2 = ids.indexOf(m2.id);
  assert.ok(i1 >= 0 && i2 > i1, 'recent messages in joined, oldest first');
  assert.deepEqual(r.messages[i2], m2);
  // nothing newer than the last one returned is missing: catch_up after it is empty
  // unless someone else wrote meanwhile (then only newer seqs)
  const last = r.messages[r.messages.length - 1];
  const cu = await c.read({ type: 'catch_up', after: last.seq });
  assert.equal(cu.type, 'history');
  for (const m of cu.messages) assert.ok(m.seq > last.seq);
  assert.ok(!cu.messages.some((m) => ids.includes(m.id)));
});

test('join: name is trimmed of Unicode white space', async () => {
  for (const pad of [['  ', '  '], ['\t', '\n'], ['\u00a0', '\u3000'], ['\u2003 ', '\r\n'], ['\u0085', '\u1680'], ['\u202f\u2028', '\u205f\u000b\u000c']]) {
    const c = await connect(server.wsUrl);
    const name = uniq('t');
    const r = await c.join(pad[0] + name + pad[1]);
    assert.equal(r.type, 'joined', `${JSON.stringify(pad)}: ${JSON.stringify(r)}`);
    assert.equal(r.user.name, name);
    await c.close();
  }
});

test('join: valid names (letters, digits, _ - . inner single spaces, 32 code points)', async () => {
  const hex = () => uniq('').slice(1); // "_xxxxxxxx" -> 8 hex digits w/o "_"
  const names = [
    'a.b-c_d ' + hex(),
    'Zoë Ωμέγα ' + hex(),
    '日本語 ' + hex(),
    '٣٤ ' + hex(),                                  // Nd digits (Arabic-Indic)
    'ǅʰ ' + hex(),                                   // Lt and Lm letters
    'x'.repeat(24) + hex(),                          // exactly 32
    '𝒜'.repeat(24) + hex(),                          // 32 code points, 56 UTF-16 units
  ];
  for (const n0 of names) {
    const n = n0;
    const c = await connect(server.wsUrl);
    const r = await c.join(n);
    assert.equal(r.type, 'joined', `${JSON.stringify(n)} (${[...n].length} cp): ${JSON.stringify(r)}`);
    assert.equal(r.user.name, n);
    await c.close();
  }
});

test('join: name_invalid', async () => {
  const c = await connect(server.wsUrl);
  const bad = [
    '', '   ', '\u00a0\t', 'y'.repeat(33), '𝒜'.repeat(33), 'a  b', 'a\tb', 'a\nb',
    '<b>', 'a<b>b', 'a\u0001b', 'a\u0000b', 'a\u007fb', 'a\u200bb', 'a!b', 'a@b', 'a/b',
    'emoji😀', 'a,b', "a'b", 'a"b',
    'a²', 'Ⅳx', 'e\u0301', '\ufeffabc', 'abc\u200b', '\u180eabc', 'a\u00a0b', 'a\u3000b',
    // names that render blank (letters that are default-ignorable) and bidi controls
    '\u3164', '\u115f', '\u1160\u1160', '\uffa0', '\u3164 \u3164', '\u202eabc', 'a\u2066b', '\u200f',
  ];
  for (const n of bad) {
    const ref = uniq('r');
    const r = await c.request({ type: 'join', name: n, ref });
    checkError(assert, r, 'name_invalid', ref);
  }
  // the socket is still at home and can join
  const ok = await c.join(uniq('ok'));
  assert.equal(ok.type, 'joined');
  // a filler beside a visible character is a visible name
  const v = await connect(server.wsUrl);
  assert.equal((await v.join(uniq('\u3164v'))).type, 'joined');
});

test('join: an offline name is reused with the same id', async () => {
  const name = uniq('re');
  const a = await connect(server.wsUrl);
  const r1 = await a.joinOk(name);
  const watcher = await connect(server.wsUrl);
  const since = watcher.mark();
  await a.close();
  await watcher.push('presence_diff', (d) => d.leaves && name in d.leaves, { since });
  const b = await connect(server.wsUrl);
  const r2 = await b.joinOk(name);
  assert.equal(r2.user.id, r1.user.id);
  assert.equal(r2.user.name, name);
  // after a leave, too
  const bSince = b.mark();
  const left = await b.request({ type: 'leave' });
  assert.equal(left.type, 'left');
  await b.push('presence_diff', (d) => d.leaves && name in d.leaves, { since: bSince });
  const c = await connect(server.wsUrl);
  const r3 = await c.join(name);
  assert.equal(r3.type, 'joined', JSON.stringify(r3));
  assert.equal(r3.user.id, r1.user.id);
});

// A returning name is known to presence (every user is loaded at start and
// added as it is created), so its join asks nothing of the database: before,
// each join was an upsert on the one writer connection, and a storm of 5,000
// reconnects queued behind each other past the query deadline.  The latest
// messages of `joined` come from the shared copy (no message was sent in
// between), so the round-trip counter of /metrics must not move.
const dbQueries = () => readDbQueries(assert, server);

test('join: a returning name joins with no database round trip', async () => {
  const name = uniq('rt');
  const a = await connect(server.wsUrl);
  await a.joinOk(name);
  const watcher = await connect(server.wsUrl);
  const since = watcher.mark();
  await a.close();
  await watcher.push('presence_diff', (d) => d.leaves && name in d.leaves, { since });
  const before = await dbQueries();
  const b = await connect(server.wsUrl);
  await b.joinOk(name);
  assert.equal(await dbQueries(), before, 'no query for a known user');
  // a new name still goes to the database (the repo creates it)
  const c = await connect(server.wsUrl);
  await c.joinOk(uniq('rn'));
  assert.ok(await dbQueries() > before, 'a new user is created by a query');
});

test('join: name_taken for a name online elsewhere (also with a wrong token)', async () => {
  const name = uniq('tk');
  const a = await joined(server.wsUrl, name);
  const b = await connect(server.wsUrl);
  checkError(assert, await b.request({ type: 'join', name, ref: 5 }), 'name_taken', 5);
  checkError(assert, await b.request({ type: 'join', name: `  ${name} `, ref: 6 }), 'name_taken', 6);
  checkError(assert, await b.request({ type: 'join', name, token: 'not-the-token', ref: 7 }), 'name_taken', 7);
  // changed nothing: a is still joined and can send
  const m = await a.sendOk('still here');
  assert.equal(m.user_id, a.user.id);
  // b can still join another name
  await b.joinOk(uniq('tk2'));
});

test('join: take-over with the token', async () => {
  const name = uniq('to');
  const watcher = await connect(server.wsUrl);
  const old = await connect(server.wsUrl);
  const r1 = await old.joinOk(name);
  const d1 = await watcher.push('presence_diff', (d) => d.joins && name in d.joins);
  const oldMetas = d1.joins[name].metas;
  assert.equal(oldMetas.length, 1);
  const oldMeta = oldMetas[0];
  assert.equal(oldMeta.user_id, r1.user.id);
  assert.equal(oldMeta.name, name);
  assert.match(oldMeta.joined_at, ISO_RE);
  assert.equal(typeof oldMeta.phx_ref, 'string');

  const since = watcher.mark();
  const oldSince = old.mark();
  const neu = await connect(server.wsUrl);
  const r2 = await neu.request({ type: 'join', name, token: r1.token, ref: 'take' });
  assert.equal(r2.type, 'joined', JSON.stringify(r2));
  assert.equal(r2.ref, 'take');
  assert.equal(r2.user.id, r1.user.id);
  assert.equal(typeof r2.token, 'string');

  // the old socket is told, without a ref, and is back home
  const tk = await old.push('error', (f) => f.code === 'taken_over', { since: oldSince });
  assert.ok(!('ref' in tk));
  assert.ok(old.isOpen());
  checkError(assert, await old.request({ type: 'send', content: 'x', ref: 1 }), 'not_joined', 1);
  const j = await old.request({ type: 'leave', ref: 2 });
  checkError(assert, j, 'not_joined', 2);

  // exactly one presence_diff with the old meta leaving and the new one joining
  const diff = await watcher.push('presence_diff',
    (d) => (d.joins && name in d.joins) || (d.leaves && name in d.leaves), { since });
  assert.ok(diff.leaves && diff.leaves[name], `take-over diff lacks leaves: ${JSON.stringify(diff)}`);
  assert.ok(diff.joins && diff.joins[name], `take-over diff lacks joins: ${JSON.stringify(diff)}`);
  assert.deepEqual(diff.leaves[name].metas.map((m) => m.phx_ref), [oldMeta.phx_ref]);
  assert.equal(diff.joins[name].metas.length, 1);
  const newMeta = diff.joins[name].metas[0];
  assert.notEqual(newMeta.phx_ref, oldMeta.phx_ref);
  assert.equal(newMeta.user_id, r1.user.id);
  assert.equal(newMeta.name, name);
  await watcher.settle();
  const more = watcher.pushes('presence_diff', since)
    .filter((d) => (d.joins && name in d.joins) || (d.leaves && name in d.leaves));
  assert.equal(more.length, 1, `take-over diffs: ${JSON.stringify(more)}`);

  // the new socket is joined; the name stays online
  const m = await neu.sendOk('took over');
  assert.equal(m.user_id, r1.user.id);
  const look = await connect(server.wsUrl);
  assert.equal((await look.findUser(name)).online, true);

  // the old token is no longer valid; the new one is
  checkError(assert, await look.request({ type: 'join', name, token: r1.token, ref: 3 }), 'name_taken', 3);
  const again = await connect(server.wsUrl);
  const r3 = await again.request({ type: 'join', name, token: r2.token });
  assert.equal(r3.type, 'joined', JSON.stringify(r3));
  await neu.push('error', (f) => f.code === 'taken_over');
});

test('join: already_joined (same or other name), nothing changes', async () => {
  const a = await joined(server.wsUrl);
  checkError(assert, await a.request({ type: 'join', name: a.user.name, ref: 1 }), 'already_joined', 1);
  checkError(assert, await a.request({ type: 'join', name: uniq('other'), ref: 2 }), 'already_joined', 2);
  const m = await a.sendOk('still me');
  assert.equal(m.user_id, a.user.id);
  assert.equal(m.name, a.user.name);
});

test('leave: left, back home; send is not_joined afterwards; join again works', async () => {
  const a = await joined(server.wsUrl);
  const r = await a.request({ type: 'leave', ref: 'bye' });
  assert.deepEqual(r, { type: 'left', ref: 'bye' });
  checkError(assert, await a.request({ type: 'send', content: 'after leave', ref: 2 }), 'not_joined', 2);
  checkError(assert, await a.request({ type: 'history', before: 1000, limit: 5, ref: 3 }), 'not_joined', 3);
  checkError(assert, await a.request({ type: 'catch_up', after: 0, ref: 4 }), 'not_joined', 4);
  checkError(assert, await a.request({ type: 'leave', ref: 5 }), 'not_joined', 5);
  // home sockets still get presence pushes
  const since = a.mark();
  const b = await joined(server.wsUrl);
  await a.push('presence_diff', (d) => d.joins && b.user.name in d.joins, { since });
  const again = await a.join(uniq('back'));
  assert.equal(again.type, 'joined');
});

test('ping: pong with the same ref, at home and joined', async () => {
  const c = await connect(server.wsUrl);
  assert.deepEqual(await c.request({ type: 'ping', ref: 'p' }), { type: 'pong', ref: 'p' });
  assert.deepEqual(await c.request({ type: 'ping', ref: 9 }), { type: 'pong', ref: 9 });
  await c.joinOk(uniq('p'));
  assert.deepEqual(await c.request({ type: 'ping', ref: 10 }), { type: 'pong', ref: 10 });
});

test('server still running', () => checkAlive(assert, server));
