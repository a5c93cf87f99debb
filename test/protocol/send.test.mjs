// send: sent after commit, message pushes (joined sockets once, home none),
// trimming, content_invalid, not_joined, the rate limit, client_id
// idempotency (protocol 2).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, joined, closeAll, uniq, checkMessage, checkError, checkAlive, sleep,
} from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
afterEach(closeAll);
after(async () => { await closeAll(); await server?.stop(); });

test('send: sent reply with the committed message', async () => {
  const a = await joined(server.wsUrl);
  const content = 'hello ' + uniq();
  const r = await a.request({ type: 'send', content, ref: 'm1' });
  assert.equal(r.type, 'sent', JSON.stringify(r));
  assert.equal(r.ref, 'm1');
  checkMessage(assert, r.message);
  assert.equal(r.message.content, content);
  assert.equal(r.message.user_id, a.user.id);
  assert.equal(r.message.name, a.user.name);
  // committed: another connection reads it back at once
  const b = await joined(server.wsUrl);
  const h = await b.read({ type: 'history', before: r.message.seq + 1, limit: 1 });
  assert.equal(h.type, 'history', JSON.stringify(h));
  assert.deepEqual(h.messages, [r.message]);
  const cu = await b.read({ type: 'catch_up', after: r.message.seq - 1 });
  assert.deepEqual(cu.messages[0], r.message);
});

test('send: every joined socket (sender included) gets the push once; home sockets none', async () => {
  const senders = await Promise.all([0, 1, 2].map(() => joined(server.wsUrl)));
  const home = await Promise.all([0, 1].map(() => connect(server.wsUrl)));
  const sent = [];
  for (const s of senders) {
    for (let i = 0; i < 3; i++) sent.push(await s.sendOk(`fan ${i} from ${s.user.name}`));
  }
  const ids = sent.map((m) => m.id);
  for (const s of senders) {
    for (const m of sent) await s.push('message', (f) => f.message.id === m.id);
  }
  for (const s of [...senders, ...home]) await s.settle();
  for (const s of senders) {
    const got = s.messages().filter((m) => ids.includes(m.id));
    assert.equal(got.length, sent.length, `socket of ${s.user.name} got ${got.length} of ${sent.length}`);
    assert.equal(new Set(got.map((m) => m.id)).size, sent.length, 'duplicates');
    for (const m of got) assert.deepEqual(m, sent.find((x) => x.id === m.id));
    for (let i = 1; i < got.length; i++) assert.ok(got[i].seq > got[i - 1].seq, 'increasing seq');
  }
  for (const h of home) assert.equal(h.pushes('message').length, 0, 'home socket got a message push');
});

test('send: content trimmed of Unicode white space', async () => {
  const a = await joined(server.wsUrl);
  for (const [pre, post] of [['  ', '  '], ['\n\t', '\r\n'], ['\u00a0', '\u3000'], ['\u2028', '\u205f']]) {
    const body = 'trim me ' + uniq();
    const m = await a.sendOk(pre + body + post);
    assert.equal(m.content, body, JSON.stringify([pre, post]));
    const push = await a.push('message', (f) => f.message.id === m.id);
    assert.equal(push.message.content, body);
  }
  // NEL and other White_Space; not U+200B / U+FEFF, which are not White_Space
  const n = await a.sendOk('\u0085\u1680 nel \u000b\u000c');
  assert.equal(n.content, 'nel');
  const z = await a.sendOk('\u200bzw\ufeff');
  assert.equal(z.content, '\u200bzw\ufeff');
  // inner white space and newlines are kept
  const m = await a.sendOk('  a  b\n\nc  ');
  assert.equal(m.content, 'a  b\n\nc');
});

test('send: valid edge cases (2,000 code points, astral, HTML as text)', async () => {
  const a = await joined(server.wsUrl);
  const c2000 = 'x'.repeat(2000);
  assert.equal((await a.sendOk(c2000)).content, c2000);
  const astral = '😀'.repeat(2000); // 2,000 code points, 4,000 UTF-16 units, 8,000 bytes
  assert.equal((await a.sendOk(astral)).content, astral);
  const html = '<img src=x onerror=alert(1)> & "quotes" \\ \u2028 é';
  assert.equal((await a.sendOk(html)).content, html);
  const one = '.';
  assert.equal((await a.sendOk(one)).content, one);
});

test('send: content_invalid (empty, blank, 2,001 code points, U+0000) persists nothing', async () => {
  const a = await joined(server.wsUrl);
  const watcher = await joined(server.wsUrl);
  const before = await a.sendOk('marker ' + uniq());
  const bad = ['', '   ', '\u00a0\n\t', 'y'.repeat(2001), '😀'.repeat(2001), 'a\u0000b', '\u0000', ' '.repeat(10) + 'z'.repeat(2001)];
  for (let i = 0; i < bad.length; i++) {
    checkError(assert, await a.request({ type: 'send', content: bad[i], ref: i }), 'content_invalid', i);
  }
  await a.settle(); await watcher.settle();
  const cu = await a.read({ type: 'catch_up', after: before.seq });
  assert.equal(cu.messages.filter((m) => m.user_id === a.user.id).length, 0, 'an invalid send was stored');
  assert.equal(watcher.messages().filter((m) => m.user_id === a.user.id && m.seq > before.seq).length, 0, 'an invalid send was pushed');
});

test('send: not_joined at home', async () => {
  const c = await connect(server.wsUrl);
  checkError(assert, await c.request({ type: 'send', content: 'hi', ref: 1 }), 'not_joined', 1);
  checkError(assert, await c.request({ type: 'send', content: '', ref: 2 }), 'not_joined', 2);
  checkError(assert, await c.request({ type: 'send', content: 'x'.repeat(2001), ref: 3 }), 'not_joined', 3);
});

test('rate limit: burst of 10, then rate_limited; rejected sends persist nothing', async () => {
  const a = await joined(server.wsUrl);
  const watcher = await joined(server.wsUrl);
  const marker = await watcher.sendOk('rl marker ' + uniq());
  // invalid sends do not use up the limit
  for (let i = 0; i < 5; i++) checkError(assert, await a.request({ type: 'send', content: '', ref: `bad${i}` }), 'content_invalid', `bad${i}`);
  // pipeline 15 sends at once: the first 10 are accepted, the rest rate_limited
  const refs = [];
  for (let i = 0; i < 15; i++) refs.push(a.sendReq({ type: 'send', content: `burst ${i}` }));
  const replies = [];
  for (const r of refs) replies.push(await a.reply(r));
  const accepted = replies.filter((r) => r.type === 'sent');
  const limited = replies.filter((r) => r.type === 'error');
  assert.ok(accepted.length >= 10 && accepted.length <= 11, `accepted ${accepted.length}: ${replies.map((r) => r.type + ':' + (r.code || '')).join(',')}`);
  assert.ok(replies.slice(0, 10).every((r) => r.type === 'sent'), 'the first 10 are accepted');
  for (const r of limited) checkError(assert, r, 'rate_limited', r.ref);
  assert.ok(limited.length >= 4, `only ${limited.length} rate_limited`);
  // validity comes before rate_limited
  checkError(assert, await a.request({ type: 'send', content: '', ref: 'v' }), 'content_invalid', 'v');
  await a.settle(); await watcher.settle();
  const cu = await watcher.read({ type: 'catch_up', after: marker.seq });
  const stored = cu.messages.filter((m) => m.user_id === a.user.id);
  assert.deepEqual(stored.map((m) => m.id), accepted.map((r) => r.message.id), 'exactly the accepted sends are stored');
  const pushed = watcher.messages().filter((m) => m.user_id === a.user.id);
  assert.equal(pushed.length, accepted.length, 'exactly the accepted sends are pushed');
  // sustained 5 a second: after a little more than a token's worth, one more is accepted
  await sleep(450);
  const ok = await a.request({ type: 'send', content: 'after refill' });
  assert.equal(ok.type, 'sent', JSON.stringify(ok));
});

test('rate limit: sustained rate of about 5 a second', async () => {
  const a = await joined(server.wsUrl);
  for (let i = 0; i < 10; i++) await a.sendOk(`drain ${i}`);
  // over ~2 s at 10/s, about 10 of 20 should pass (5/s), allow for timing slack
  let ok = 0; let limited = 0;
  const t0 = Date.now();
  for (let i = 0; i < 20; i++) {
    const r = await a.request({ type: 'send', content: `s ${i}` });
    if (r.type === 'sent') ok++; else { checkError(assert, r, 'rate_limited', r.ref); limited++; }
    await sleep(Math.max(0, t0 + (i + 1) * 100 - Date.now()));
  }
  const secs = (Date.now() - t0) / 1000;
  assert.ok(ok >= Math.floor(5 * secs) - 3 && ok <= Math.ceil(5 * secs) + 2, `accepted ${ok} in ${secs.toFixed(2)} s`);
  assert.ok(limited > 0);
});

test('client_id: a retry stores nothing new, pushes nothing again, and answers the stored message', async () => {
  const a = await joined(server.wsUrl);
  const b = await joined(server.wsUrl);
  const cid = 'cid-' + uniq().replace('_', '-');
  const since = b.mark();
  const r1 = await a.request({ type: 'send', content: 'once only', client_id: cid, ref: 'c1' });
  assert.equal(r1.type, 'sent', JSON.stringify(r1));
  checkMessage(assert, r1.message);
  // the same CID again: same content, other content, blank content -- all `sent` with the stored message
  for (const [ref, content] of [['c2', 'once only'], ['c3', 'something else'], ['c4', '   ']]) {
    const r = await a.request({ type: 'send', content, client_id: cid, ref });
    assert.equal(r.type, 'sent', `${ref}: ${JSON.stringify(r)}`);
    assert.equal(r.ref, ref);
    assert.deepEqual(r.message, r1.message);
  }
  // one push, one stored message
  const marker = await a.sendOk('marker ' + uniq());
  await b.push('message', (f) => f.message.id === marker.id, { since });
  assert.equal(b.messages(since).filter((m) => m.id === r1.message.id).length, 1);
  const h = await b.read({ type: 'history', before: marker.seq, limit: 500 });
  assert.equal(h.messages.filter((m) => m.content === 'once only' && m.user_id === a.user.id).length, 1);
  // another user's CID space is its own
  const r5 = await b.request({ type: 'send', content: 'mine', client_id: cid });
  assert.equal(r5.type, 'sent');
  assert.notEqual(r5.message.id, r1.message.id);
  // a reconnect (same name, new socket) retries with the CID: the stored message
  const name = a.user.name;
  await a.close();
  const a2 = await connect(server.wsUrl);
  await a2.joinOk(name);
  const r6 = await a2.request({ type: 'send', content: 'once only', client_id: cid });
  assert.deepEqual(r6.message, r1.message);
});

test('client_id: a stored CID is answered without a rate-limit token; a refused send leaves its CID unused', async () => {
  const a = await joined(server.wsUrl);
  const cid = 'rl' + uniq().replace('_', '');
  const first = await a.request({ type: 'send', content: 'stored first', client_id: cid });
  assert.equal(first.type, 'sent');
  // use up the burst
  const refs = [];
  for (let i = 0; i < 12; i++) refs.push(a.sendReq({ type: 'send', content: `burst ${i}` }));
  const replies = await Promise.all(refs.map((r) => a.reply(r)));
  assert.ok(replies.some((r) => r.code === 'rate_limited'), 'the burst was crossed');
  // while limited: the stored CID is still answered `sent`, a fresh one is rate_limited
  const again = await a.request({ type: 'send', content: 'stored first', client_id: cid });
  assert.deepEqual(again.message, first.message);
  const fresh = 'fresh' + uniq().replace('_', '');
  checkError(assert, await a.request({ type: 'send', content: 'new', client_id: fresh, ref: 'f' }), 'rate_limited', 'f');
  // content_invalid with a fresh CID: refused, and the CID stays unused
  const blank = 'blank' + uniq().replace('_', '');
  checkError(assert, await a.request({ type: 'send', content: ' ', client_id: blank, ref: 'b' }), 'content_invalid', 'b');
  // once tokens are back, the refused CIDs store their message normally
  const eventually = async (req) => {
    let r;
    for (let i = 0; i < 40; i++) {
      r = await a.request(req);
      if (r.code !== 'rate_limited') return r;
      await sleep(100); // waiting for the token bucket to refill (5 per second)
    }
    return r;
  };
  const r = await eventually({ type: 'send', content: 'new', client_id: fresh });
  assert.equal(r.type, 'sent', JSON.stringify(r));
  assert.equal(r.message.content, 'new');
  const rb = await eventually({ type: 'send', content: 'now valid', client_id: blank });
  assert.equal(rb.type, 'sent', JSON.stringify(rb));
  assert.equal(rb.message.content, 'now valid');
});

test('server still running', () => checkAlive(assert, server));
