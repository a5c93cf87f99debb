// Errors: malformed requests, refs, precedence; close codes; replies in
// request order for pipelined requests.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import net from 'node:net';
import crypto from 'node:crypto';
import {
  connect, joined, closeAll, uniq, checkError, checkAlive, sleep,
} from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
afterEach(closeAll);
after(async () => { await closeAll(); await server?.stop(); });

const PUSHES = new Set(['presence_diff', 'message']);

// Sends a raw text frame and returns the next frame that is not a push
// (error replies without a ref look like pushes: nothing else sends those here).
async function rawReply(c, text) {
  const since = c.mark();
  await c.sendRaw(text);
  return c.waitFor((f) => !PUSHES.has(f.type), { since, what: `a reply to ${text.slice(0, 60)}` });
}

test('not JSON, not an object, no or unknown type -> bad_request; the socket stays open', async () => {
  const c = await connect(server.wsUrl);
  for (const text of ['not json', '{"type":"ping"', '', ' ', '{"type":"ping",}', "{'type':'ping'}", 'NaN']) {
    checkError(assert, await rawReply(c, text), 'bad_request');
  }
  for (const text of ['[1,2]', '[{"type":"ping","ref":1}]', '42', 'null', 'true', '"ping"']) {
    checkError(assert, await rawReply(c, text), 'bad_request');
  }
  checkError(assert, await rawReply(c, '{}'), 'bad_request');
  checkError(assert, await rawReply(c, '{"ref":7}'), 'bad_request', 7);
  checkError(assert, await rawReply(c, '{"type":5,"ref":8}'), 'bad_request', 8);
  checkError(assert, await rawReply(c, '{"type":null,"ref":9}'), 'bad_request', 9);
  checkError(assert, await rawReply(c, '{"type":"nope","ref":"u"}'), 'bad_request', 'u');
  checkError(assert, await rawReply(c, '{"type":"PING","ref":"U"}'), 'bad_request', 'U');
  checkError(assert, await rawReply(c, '{"type":"welcome","ref":10}'), 'bad_request', 10);
  checkError(assert, await rawReply(c, '{"type":"message","ref":11}'), 'bad_request', 11);
  assert.ok(c.isOpen());
  assert.deepEqual(await c.request({ type: 'ping', ref: 'alive' }), { type: 'pong', ref: 'alive' });
});

test('refs: strings and numbers echoed; objects, arrays, booleans -> bad_request without ref', async () => {
  const c = await connect(server.wsUrl);
  for (const ref of ['abc', '', 'é😀', 0, 42, -7, 1.5, 123456789]) {
    assert.deepEqual(await c.request({ type: 'ping', ref }), { type: 'pong', ref });
  }
  checkError(assert, await c.request({ type: 'nope', ref: 'r' }), 'bad_request', 'r');
  for (const ref of [{ a: 1 }, [1], [], true, false]) {
    checkError(assert, await rawReply(c, JSON.stringify({ type: 'ping', ref })), 'bad_request');
  }
  // a request without ref gets a reply without ref
  const p = await rawReply(c, '{"type":"ping"}');
  assert.deepEqual(p, { type: 'pong' });
  const e = await rawReply(c, '{"type":"send","content":"x"}');
  checkError(assert, e, 'not_joined');
});

test('refs: any JSON number is echoed as a number (even beyond a double, 1e400)', async () => {
  const c = await connect(server.wsUrl);
  for (const text of ['1e400', '-1e400', '12345678901234567890', '1E2', '0.000001']) {
    const f = await rawReply(c, `{"type":"ping","ref":${text}}`);
    assert.equal(f.type, 'pong', JSON.stringify(f));
    assert.equal(typeof f.ref, 'number', `ref ${text} echoed as ${JSON.stringify(f.ref)}`);
    assert.equal(f.ref, JSON.parse(text), `ref ${text}`);
  }
});

test('fields of the wrong kind or missing -> bad_request', async () => {
  const c = await connect(server.wsUrl);
  const home = [
    { type: 'join' }, { type: 'join', name: 5 }, { type: 'join', name: null }, { type: 'join', name: ['a'] },
    { type: 'join', name: uniq(), token: 5 }, { type: 'join', name: uniq(), token: {} },
    { type: 'send' }, { type: 'send', content: 5 }, { type: 'send', content: null }, { type: 'send', content: { a: 1 } },
    { type: 'history', before: 'x', limit: 5 }, { type: 'history', before: 5, limit: '5' },
    { type: 'catch_up', after: 'x' }, { type: 'catch_up', after: null }, { type: 'catch_up' },
    { type: 'send', content: 'x', client_id: '' }, { type: 'send', content: 'x', client_id: 'a b' },
    { type: 'send', content: 'x', client_id: 'x'.repeat(65) }, { type: 'send', content: 'x', client_id: 7 },
    { type: 'users' }, { type: 'users', online: true }, { type: 'users', limit: 5 },
    { type: 'users', online: 'yes', limit: 5 }, { type: 'users', online: true, limit: 0 },
    { type: 'users', online: true, limit: 501 }, { type: 'users', online: true, limit: 5, after: 5 },
    { type: 'users', online: true, limit: 5, after: 'a'.repeat(129) },
    { type: 'users', online: true, limit: 5, prefix: '' }, { type: 'users', online: true, limit: 5, prefix: 'p'.repeat(33) },
  ];
  for (let i = 0; i < home.length; i++) {
    checkError(assert, await c.request({ ...home[i], ref: i }), 'bad_request', i);
  }
  // none of them changed anything: still at home
  checkError(assert, await c.request({ type: 'send', content: 'x', ref: 'h' }), 'not_joined', 'h');
  await c.joinOk(uniq('bf'));
  for (let i = 0; i < home.length; i++) {
    checkError(assert, await c.request({ ...home[i], ref: 100 + i }), 'bad_request', 100 + i);
  }
  assert.equal((await c.request({ type: 'send', content: 'still joined' })).type, 'sent');
});

test('precedence: bad_request, then state, then validity, then name_taken/rate_limited', async () => {
  const home = await connect(server.wsUrl);
  // bad_request before not_joined
  checkError(assert, await home.request({ type: 'send', content: 5, ref: 1 }), 'bad_request', 1);
  checkError(assert, await home.request({ type: 'history', before: 1, limit: 501, ref: 2 }), 'bad_request', 2);
  // not_joined before content_invalid
  checkError(assert, await home.request({ type: 'send', content: '', ref: 3 }), 'not_joined', 3);
  checkError(assert, await home.request({ type: 'send', content: 'a\u0000', ref: 4 }), 'not_joined', 4);
  // name_invalid before name_taken
  const a = await joined(server.wsUrl);
  checkError(assert, await home.request({ type: 'join', name: a.user.name + '!', ref: 5 }), 'name_invalid', 5);
  checkError(assert, await home.request({ type: 'join', name: a.user.name, ref: 6 }), 'name_taken', 6);
  // joined: bad_request before already_joined, already_joined before name_invalid/name_taken
  checkError(assert, await a.request({ type: 'join', name: 5, ref: 7 }), 'bad_request', 7);
  checkError(assert, await a.request({ type: 'join', name: '<b>', ref: 8 }), 'already_joined', 8);
  checkError(assert, await a.request({ type: 'join', name: '', ref: 9 }), 'already_joined', 9);
  const b = await joined(server.wsUrl);
  checkError(assert, await a.request({ type: 'join', name: b.user.name, ref: 10 }), 'already_joined', 10);
  // content_invalid before rate_limited: 12 sends and a blank one, written at once
  const refs = [];
  for (let i = 0; i < 12; i++) refs.push(a.sendReq({ type: 'send', content: `p${i}` }));
  const blank = a.sendReq({ type: 'send', content: ' ', ref: 'blank' });
  const last = await a.reply(refs[11]);
  checkError(assert, last, 'rate_limited', refs[11]);
  checkError(assert, await a.reply(blank), 'content_invalid', 'blank');
  checkError(assert, await a.request({ type: 'send', content: 7, ref: 13 }), 'bad_request', 13);
  // bad_request (a client_id outside its alphabet) before not_joined and content_invalid
  checkError(assert, await home.request({ type: 'send', content: '', client_id: 'a.b', ref: 14 }), 'bad_request', 14);
  checkError(assert, await a.request({ type: 'send', content: '', client_id: 'a.b', ref: 15 }), 'bad_request', 15);
  // not_joined before everything a client_id could change
  checkError(assert, await home.request({ type: 'send', content: 'x', client_id: 'cid1', ref: 16 }), 'not_joined', 16);
});

test('pipelined requests are answered in request order', async () => {
  const c = await connect(server.wsUrl);
  const name = uniq('pl');
  // everything is written at once, before any reply is read
  const reqs = [
    { type: 'ping' }, { type: 'send', content: 'x' }, { type: 'join', name }, { type: 'history', before: 1e9, limit: 3 },
    { type: 'nope' }, { type: 'send', content: 'one' }, { type: 'catch_up', after: 0 }, { type: 'send', content: 'two' },
    { type: 'ping' }, { type: 'join', name }, { type: 'history', before: 1e9, limit: 0 }, { type: 'send', content: '' },
    { type: 'send', content: 'three' }, { type: 'leave' }, { type: 'send', content: 'four' }, { type: 'ping' },
  ];
  const want = ['pong', 'error:not_joined', 'joined', 'history', 'error:bad_request', 'sent', 'history', 'sent',
    'pong', 'error:already_joined', 'error:bad_request', 'error:content_invalid', 'sent', 'left', 'error:not_joined', 'pong'];
  const refs = reqs.map((r, i) => c.sendReq({ ...r, ref: `q${i}` }));
  await c.reply(refs[refs.length - 1], { timeout: 10000 });
  const replies = c.frames.filter((f) => 'ref' in f);
  assert.deepEqual(replies.map((f) => f.ref), refs, 'replies out of request order');
  assert.deepEqual(replies.map((f) => f.type === 'error' ? `error:${f.code}` : f.type), want);
  // 100 pings in one burst
  const many = Array.from({ length: 100 }, (_, i) => c.sendReq({ type: 'ping', ref: 1000 + i }));
  await c.reply(many[99]);
  const all = c.frames.filter((f) => typeof f.ref === 'number' && f.ref >= 1000).map((f) => f.ref);
  assert.deepEqual(all, many);
});

// A masked client text frame, by hand.
function frame(text) {
  const payload = Buffer.from(text);
  const mask = crypto.randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x81, 0x80 | len])
    : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

// Server frames (unmasked) from raw bytes: [{opcode, payload}], complete ones only.
function parseFrames(b) {
  const out = [];
  let i = 0;
  while (i + 2 <= b.length) {
    const opcode = b[i] & 0x0f;
    let len = b[i + 1] & 0x7f;
    let p = i + 2;
    if (len === 126) { if (p + 2 > b.length) break; len = b.readUInt16BE(p); p += 2; } else if (len === 127) { if (p + 8 > b.length) break; len = Number(b.readBigUInt64BE(p)); p += 8; }
    if (p + len > b.length) break;
    out.push({ opcode, fin: !!(b[i] & 0x80), payload: b.subarray(p, p + len) });
    i = p + len;
  }
  return out;
}

test('raw TCP: a frame split byte by byte, and several frames in one write, are all handled', async () => {
  const { port } = server;
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let body = 0; // where the frames start
  const waiters = [];
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); waiters.forEach((w) => w()); });
  const until = (pred, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${what}; got ${buf.toString('latin1').slice(0, 300)}`)), 5000);
    const w = () => { if (pred()) { clearTimeout(t); resolve(); } };
    waiters.push(w); w();
  });
  const frames = () => parseFrames(buf.subarray(body));
  const texts = () => frames().filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString('utf8')));
  await new Promise((r) => sock.once('connect', r));
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await until(() => buf.includes('\r\n\r\n'), 'the handshake');
  body = buf.indexOf('\r\n\r\n') + 4;
  const head = buf.subarray(0, body).toString();
  assert.match(head, /^HTTP\/1\.1 101/);
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  const accepted = head.split('\r\n').find((l) => /^sec-websocket-accept:/i.test(l));
  assert.equal(accepted && accepted.split(':')[1].trim(), accept, head);
  await until(() => texts().some((f) => f.type === 'welcome'), 'welcome');
  // byte by byte (paced so that TCP sends them apart)
  for (const b of frame('{"type":"ping","ref":"bytes"}')) { sock.write(Buffer.from([b])); await sleep(2); }
  await until(() => texts().some((f) => f.ref === 'bytes'), 'pong to the split frame');
  // three frames in one write
  sock.write(Buffer.concat([frame('{"type":"ping","ref":"m1"}'), frame('{"type":"ping","ref":"m2"}'), frame('{"type":"ping","ref":"m3"}')]));
  await until(() => texts().some((f) => f.ref === 'm3'), 'three pongs');
  assert.deepEqual(texts().filter((f) => 'ref' in f).map((f) => f.ref), ['bytes', 'm1', 'm2', 'm3']);
  // an unmasked client frame is a protocol error (RFC 6455: close 1002)
  sock.write(Buffer.concat([Buffer.from([0x81, 5]), Buffer.from('hello')]));
  await until(() => frames().some((f) => f.opcode === 8), 'a close frame');
  const close = frames().find((f) => f.opcode === 8);
  assert.equal(close.payload.readUInt16BE(0), 1002);
  sock.destroy();
});

// --- close codes -----------------------------------------------------------

test('binary frame -> close 1003', async () => {
  const c = await connect(server.wsUrl);
  await c.sendRaw(Buffer.from(JSON.stringify({ type: 'ping', ref: 1 })), { binary: true });
  const { code } = await c.waitClose();
  assert.equal(code, 1003);
});

test('invalid UTF-8 text -> close 1007', async () => {
  for (const bytes of [
    Buffer.from([0x7b, 0x22, 0x74, 0xff, 0x22, 0x7d]),               // 0xFF
    Buffer.concat([Buffer.from('{"type":"send","content":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
    Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]), // surrogate
    Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]),       // overlong
  ]) {
    const c = await connect(server.wsUrl);
    await c.sendRaw(bytes, { binary: false });
    const { code } = await c.waitClose();
    assert.equal(code, 1007, `bytes ${bytes.toString('hex')}`);
  }
});

test('invalid UTF-8 split across fragments -> close 1007', async () => {
  const c = await connect(server.wsUrl);
  await c.sendRaw(Buffer.from('{"type":"ping","ref":"'), { binary: false, fin: false });
  await c.sendRaw(Buffer.from([0xe2, 0x28, 0xa1]), { fin: false });
  await c.sendRaw(Buffer.from('"}'), { fin: true });
  const { code } = await c.waitClose();
  assert.equal(code, 1007);
});

// A JSON ping padded to exactly n bytes.
function padded(n, ref = 'big') {
  const base = JSON.stringify({ type: 'ping', ref, pad: '' });
  const s = JSON.stringify({ type: 'ping', ref, pad: 'x'.repeat(n - Buffer.byteLength(base)) });
  assert.equal(Buffer.byteLength(s), n);
  return s;
}

test('a 65,536-byte message is accepted, whole or fragmented', async () => {
  const c = await connect(server.wsUrl);
  await c.sendRaw(padded(65536, 'whole'));
  assert.deepEqual(await c.reply('whole'), { type: 'pong', ref: 'whole' });
  const s = Buffer.from(padded(65536, 'frag'));
  await c.sendRaw(s.subarray(0, 30000), { binary: false, fin: false });
  await c.sendRaw(s.subarray(30000, 60000), { fin: false });
  await c.sendRaw(s.subarray(60000), { fin: true });
  assert.deepEqual(await c.reply('frag'), { type: 'pong', ref: 'frag' });
  assert.ok(c.isOpen());
});

test('a 65,537-byte message -> close 1009', async () => {
  const c = await connect(server.wsUrl);
  await c.sendRaw(padded(65537));
  const { code } = await c.waitClose();
  assert.equal(code, 1009);
  const d = await connect(server.wsUrl);
  await d.sendRaw('x'.repeat(200000));
  assert.equal((await d.waitClose()).code, 1009);
});

test('fragments reassembling to 65,537 bytes -> close 1009', async () => {
  const c = await connect(server.wsUrl);
  const s = Buffer.from(padded(65537));
  await c.sendRaw(s.subarray(0, 40000), { binary: false, fin: false });
  await c.sendRaw(s.subarray(40000), { fin: true });
  assert.equal((await c.waitClose()).code, 1009);
  // many small fragments
  const d = await connect(server.wsUrl);
  const t = Buffer.from(padded(65537));
  const step = 4096;
  for (let o = 0; o < t.length && d.isOpen(); o += step) {
    const last = o + step >= t.length;
    await d.sendRaw(t.subarray(o, o + step), o === 0 ? { binary: false, fin: last } : { fin: last });
  }
  assert.equal((await d.waitClose()).code, 1009);
});

test('a malformed request never closes the socket', async () => {
  const c = await joined(server.wsUrl);
  const junk = ['', '}', '{"type":', '[]', '{"type":"send","content":5}', '{"type":"join","name":"x"}', 'x'.repeat(60000),
    JSON.stringify({ type: 'send', content: 'y'.repeat(5000) }), '\u0000', '{"type":"history","before":1,"limit":1e10}'];
  for (const j of junk) await rawReply(c, j);
  assert.ok(c.isOpen());
  assert.equal((await c.request({ type: 'send', content: 'survived' })).type, 'sent');
});

test('server still running', () => checkAlive(assert, server));
