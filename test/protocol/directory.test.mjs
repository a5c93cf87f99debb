// The directory (PROTOCOL.md `users`, protocol 2): online and offline apart,
// ordered by UTF-8 bytes, `after`, exact `prefix`, `limit` 1..500, `more`,
// legal at home and joined.  Every user here shares one random prefix, so
// the suite is exact however many users the database already holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, closeAll, uniq, checkUser, checkError, checkAlive, byteCompare, MANY_USERS,
} from './client.mjs';

let server;
const P = uniq('dir').replace('_', '') + '_'; // e.g. "dir1a2b3c4d_"
// Suffixes whose UTF-8 byte order differs from UTF-16 (JavaScript's) order:
// U+FF71 sorts before U+1D49C in bytes, after it in UTF-16 code units.
const SUFFIXES = ['A', 'Z', 'a', 'b', '0', '_x', '-y', '.z', 'a b', 'é', 'Ω', '名', 'ｱ', '𝒜',
  ...Array.from({ length: 16 }, (_, i) => `n${String(i).padStart(2, '0')}`)];
const online = [];  // names kept online
const offline = []; // names that joined and left
let reader;         // a home socket connected before any of them

before(async () => {
  server = await startServer({ env: MANY_USERS });
  reader = await connect(server.wsUrl);
  for (const [i, sfx] of SUFFIXES.entries()) {
    const name = P + sfx;
    const c = await connect(server.wsUrl);
    await c.joinOk(name);
    if (i % 2 === 0) online.push(name);
    else { offline.push(name); await c.close(); }
  }
  for (const n of offline) await reader.push('presence_diff', (d) => n in d.leaves);
  for (const n of online) await reader.push('presence_diff', (d) => n in d.joins);
  online.sort(byteCompare);
  offline.sort(byteCompare);
});
after(async () => { await closeAll(); await server?.stop(); });

test('the byte order of the suffixes is not JavaScript\'s order (the test means something)', () => {
  const all = SUFFIXES.map((s) => P + s);
  assert.notDeepEqual([...all].sort(byteCompare), [...all].sort());
});

test('users: online and offline apart, each ordered by UTF-8 bytes, with a prefix', async () => {
  const on = await reader.users(true, { prefix: P });
  assert.equal(on.type, 'users');
  assert.equal(on.more, false);
  on.users.forEach((u) => { checkUser(assert, u); assert.equal(u.online, true); });
  assert.deepEqual(on.users.map((u) => u.name), online);
  const off = await reader.users(false, { prefix: P });
  off.users.forEach((u) => { checkUser(assert, u); assert.equal(u.online, false); });
  assert.deepEqual(off.users.map((u) => u.name), offline);
});

test('users: pages of `limit`, `more` until the last, `after` the last name', async () => {
  for (const [flag, want] of [[true, online], [false, offline]]) {
    for (const limit of [1, 3, 7]) {
      const got = [];
      let after;
      for (;;) {
        const r = await reader.users(flag, { prefix: P, limit, after });
        got.push(...r.users.map((u) => u.name));
        if (r.more) assert.equal(r.users.length, limit, 'a page holds L users whenever L or more match');
        else { assert.ok(r.users.length <= limit); break; }
        after = r.users.at(-1).name;
      }
      assert.deepEqual(got, want, `online=${flag} limit=${limit}`);
    }
  }
  // exactly L left: the page is full and more is false
  const r = await reader.users(true, { prefix: P, limit: online.length });
  assert.equal(r.users.length, online.length);
  assert.equal(r.more, false);
  const r2 = await reader.users(true, { prefix: P, limit: online.length - 1 });
  assert.equal(r2.more, true);
});

test('users: `after` is any string compared as bytes (not necessarily a name)', async () => {
  const all = [...online];
  // strictly greater than after: the named user itself is not repeated
  const mid = all[5];
  const r = await reader.users(true, { prefix: P, after: mid });
  assert.deepEqual(r.users.map((u) => u.name), all.filter((n) => byteCompare(n, mid) > 0));
  // a string between names, with characters no name may hold
  const odd = P + 'a!';
  const r2 = await reader.users(true, { prefix: P, after: odd });
  assert.deepEqual(r2.users.map((u) => u.name), all.filter((n) => byteCompare(n, odd) > 0));
  // after below the prefix: the prefix wins; after beyond every name: empty
  const r3 = await reader.users(true, { prefix: P, after: '' });
  assert.deepEqual(r3.users.map((u) => u.name), all);
  const r4 = await reader.users(true, { prefix: P, after: P + '\u{10FFFF}' });
  assert.deepEqual(r4.users, []);
  assert.equal(r4.more, false);
  // after without a prefix: the page starts right after it, in byte order
  const r5 = await reader.users(true, { after: all[0], limit: 2 });
  assert.equal(r5.users[0].name, all[1]);
  // a 128-byte after is legal
  const r6 = await reader.users(false, { after: 'z'.repeat(128), limit: 1 });
  assert.equal(r6.type, 'users');
});

test('users: prefix is exact (no case folding, no trimming)', async () => {
  assert.deepEqual((await reader.users(true, { prefix: P.toUpperCase() })).users, []);
  assert.deepEqual((await reader.users(false, { prefix: ' ' + P })).users, []);
  const ab = await reader.users(online.includes(P + 'a b'), { prefix: P + 'a ' });
  assert.deepEqual(ab.users.map((u) => u.name), [P + 'a b']);
  const n0 = await reader.users(true, { prefix: P + 'n0' });
  assert.deepEqual(n0.users.map((u) => u.name), online.filter((n) => n.startsWith(P + 'n0')));
  // a prefix of multi-byte characters: 32 code points is legal
  assert.equal((await reader.users(true, { prefix: '名'.repeat(32) })).users.length, 0);
});

test('users: legal at home and joined, answers with the ref, errors are bad_request', async () => {
  const c = await connect(server.wsUrl);
  const r = await c.request({ type: 'users', online: true, prefix: P, limit: 500, ref: 'u1' });
  assert.equal(r.ref, 'u1');
  assert.equal(r.users.length, online.length);
  await c.joinOk(uniq('dj'));
  const r2 = await c.request({ type: 'users', online: false, prefix: P, limit: 2, ref: 'u2' });
  assert.equal(r2.ref, 'u2');
  assert.equal(r2.users.length, 2);
  checkError(assert, await c.request({ type: 'users', online: true, limit: 501, ref: 'e1' }), 'bad_request', 'e1');
  checkError(assert, await c.request({ type: 'users', online: true, limit: 5, prefix: '', ref: 'e2' }), 'bad_request', 'e2');
  checkError(assert, await c.request({ type: 'users', online: true, limit: 5, after: 'x'.repeat(129), ref: 'e3' }), 'bad_request', 'e3');
  assert.equal((await c.request({ type: 'send', content: 'still joined' })).type, 'sent');
});

test('users: a name moves between the indexes with its presence_diff', async () => {
  const name = P + 'mover';
  const m = await connect(server.wsUrl);
  const since = reader.mark();
  await m.joinOk(name);
  await reader.push('presence_diff', (d) => name in d.joins, { since });
  assert.deepEqual((await reader.users(true, { prefix: name })).users.map((u) => u.name), [name]);
  assert.deepEqual((await reader.users(false, { prefix: name })).users, []);
  const s2 = reader.mark();
  await m.request({ type: 'leave' });
  await reader.push('presence_diff', (d) => name in d.leaves, { since: s2 });
  assert.deepEqual((await reader.users(true, { prefix: name })).users, []);
  assert.deepEqual((await reader.users(false, { prefix: name })).users.map((u) => u.name), [name]);
});

test('users: a page never shows a change whose diff this socket has not been sent', async () => {
  // A joins; B asks for pages as fast as it can.  The first page that lists A
  // online must come after the diff that announced A to B.  300 sockets
  // subscribed before B make pubsub's fan-out reach B late, so that a page,
  // which presence sends to B directly, would overtake the diff if the
  // session did not hold it.
  const crowd = [];
  for (let i = 0; i < 300; i += 50) crowd.push(...await Promise.all(Array.from({ length: 50 }, () => connect(server.wsUrl))));
  const b = await connect(server.wsUrl);
  const name = P + 'race';
  const a = await connect(server.wsUrl);
  const pages = [];
  let stop = false;
  const asker = (async () => {
    while (!stop) pages.push(await b.users(true, { prefix: name, limit: 1 }));
  })();
  await a.joinOk(name);
  await b.push('presence_diff', (d) => name in d.joins);
  const after = b.mark();
  await b.users(true, { prefix: name }); // one more page after the diff
  stop = true;
  await asker;
  const diffAt = b.frames.findIndex((f) => f.type === 'presence_diff' && name in f.joins);
  b.frames.forEach((f, i) => {
    if (f.type === 'users' && f.users.length > 0) assert.ok(i > diffAt, `page at ${i} lists ${name} before its diff at ${diffAt}`);
    if (f.type === 'users' && i > diffAt) assert.equal(f.users.length, 1, `page at ${i} after the diff does not list ${name}`);
  });
  assert.ok(b.frames.slice(after).some((f) => f.type === 'users' && f.users.length === 1));
  await Promise.all(crowd.map((c) => c.close()));
});

test('server still running', () => checkAlive(assert, server));
