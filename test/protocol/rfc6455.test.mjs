// RFC 6455 conformance over raw TCP, modelled on the Autobahn testsuite's
// sections 1 to 7 and 9: framing, pings and pongs, reserved bits, opcodes,
// fragmentation, UTF-8 (split at every byte), close handling (codes,
// reasons, wherever TCP splits them), limits, and many small fragments.
//
// Frames are built by hand (node:net, masks and all) so that the test can
// send what no WebSocket library would. The server speaks JSON text frames,
// so Autobahn's "the message is echoed" becomes "the request is answered":
// a {"type":"ping","ref":R} must come back as {"type":"pong","ref":R}, with R
// carrying the bytes under test where that matters. Every case asserts the
// exact reply: the answer, the pong payload, the close code, and that the
// server then closes the TCP connection. Every wait is bounded (TIMEOUT) and
// the whole file takes well under a minute.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { startServer } from '../lib/server.mjs';

const TIMEOUT = Number(process.env.PROTO_TIMEOUT_MS || 5000);
const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 };

let server;
const open = new Set();
before(async () => { server = await startServer(); });
after(async () => {
  for (const c of open) c.sock.destroy();
  await server?.stop();
});

// ---------------------------------------------------------------- frames

// One client frame: masked unless told otherwise; len overrides the length
// field (to announce more than is sent).
function frame(opcode, payload = Buffer.alloc(0), { fin = true, rsv = 0, mask = true, len } = {}) {
  payload = Buffer.from(payload);
  const n = len ?? payload.length;
  let head;
  if (n < 126) head = Buffer.from([(fin ? 0x80 : 0) | rsv << 4 | opcode, (mask ? 0x80 : 0) | n]);
  else if (n <= 0xffff) {
    head = Buffer.from([(fin ? 0x80 : 0) | rsv << 4 | opcode, (mask ? 0x80 : 0) | 126, 0, 0]);
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = (fin ? 0x80 : 0) | rsv << 4 | opcode;
    head[1] = (mask ? 0x80 : 0) | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

// msg as a text message in fragments of `size` bytes (of at most 125, so
// each header is 2 bytes + mask), straight into one buffer with one call for
// all the mask keys: building 65,536 frames one by one costs seconds.
// last: false leaves the message unfinished.
function fragments(msg, size, { last = true } = {}) {
  const n = Math.ceil(msg.length / size);
  const keys = crypto.randomBytes(4 * n);
  const wire = Buffer.alloc(6 * n + msg.length);
  let w = 0;
  for (let i = 0; i < n; i++) {
    const part = msg.subarray(i * size, (i + 1) * size);
    wire[w++] = (last && i === n - 1 ? 0x80 : 0) | (i ? OP.CONT : OP.TEXT);
    wire[w++] = 0x80 | part.length;
    keys.copy(wire, w, 4 * i, 4 * i + 4);
    w += 4;
    for (let j = 0; j < part.length; j++) wire[w++] = part[j] ^ keys[4 * i + (j & 3)];
  }
  return { wire, count: n };
}

const text = (s, opts) => frame(OP.TEXT, Buffer.from(s), opts);
const closeFrame = (code, reason = Buffer.alloc(0)) => {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code);
  return frame(OP.CLOSE, Buffer.concat([p, Buffer.from(reason)]));
};
// A ping request whose ref is the given string (any UTF-8 bytes for R).
const pingReq = (refBytes) => Buffer.concat([Buffer.from('{"type":"ping","ref":"'), Buffer.from(refBytes), Buffer.from('"}')]);

// A JSON ping padded to exactly n bytes.
function padded(n, ref) {
  const base = JSON.stringify({ type: 'ping', ref, pad: '' });
  return Buffer.from(JSON.stringify({ type: 'ping', ref, pad: 'x'.repeat(n - Buffer.byteLength(base)) }));
}

// ---------------------------------------------------------------- a raw client

class Raw {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.frames = [];       // server frames: {opcode, fin, rsv, payload}
    this.bad = null;        // a server frame that breaks RFC 6455
    this.waiters = new Set();
    this.ended = new Promise((resolve) => sock.once('close', () => { open.delete(this); resolve(); this._wake(); }));
    this.isClosed = false;
    sock.once('close', () => { this.isClosed = true; });
    sock.on('error', () => {});
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this._parse(); this._wake(); });
    open.add(this);
  }

  static async open() {
    const sock = net.connect(server.port, '127.0.0.1');
    sock.setNoDelay(true);
    await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
    const key = crypto.randomBytes(16).toString('base64');
    sock.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nOrigin: http://127.0.0.1:${server.port}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    let head = Buffer.alloc(0);
    const rest = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no handshake answer: ${head.toString('latin1')}`)), TIMEOUT);
      const onData = (d) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(t);
        sock.off('data', onData);
        resolve(head.subarray(end + 4));
        head = head.subarray(0, end);
      };
      sock.on('data', onData);
    });
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 101 /);
    const c = new Raw(sock);
    c.buf = rest;
    c._parse();
    await c.next((f) => f.opcode === OP.TEXT && JSON.parse(f.payload).type === 'welcome', 'welcome');
    c.start = c.frames.length;
    return c;
  }

  _wake() { for (const w of [...this.waiters]) w(); }

  _parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      if (b[1] & 0x80) this.bad = 'a masked server frame';
      let len = b[1] & 0x7f;
      let p = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); p = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); p = 10; }
      if (b.length < p + len) return;
      this.frames.push({ opcode: b[0] & 0x0f, fin: !!(b[0] & 0x80), rsv: (b[0] >> 4) & 7, payload: b.subarray(p, p + len) });
      this.buf = b.subarray(p + len);
    }
  }

  send(...bufs) {
    return new Promise((resolve) => this.sock.write(Buffer.concat(bufs), () => resolve()));
  }

  // Writes each buffer separately, each after the previous one left.
  async sendEach(bufs) { for (const b of bufs) await this.send(b); }

  // The first frame since `since` (default: since the welcome) that matches.
  next(pred, what, since = this.start ?? 0) {
    return new Promise((resolve, reject) => {
      const scan = () => {
        for (let i = since; i < this.frames.length; i++) if (pred(this.frames[i])) { done(); resolve(this.frames[i]); return; }
        if (this.isClosed) { done(); reject(new Error(`connection closed while waiting for ${what}; ${this.describe()}`)); }
      };
      const t = setTimeout(() => { done(); reject(new Error(`timeout waiting for ${what}; ${this.describe()}`)); }, TIMEOUT);
      const done = () => { clearTimeout(t); this.waiters.delete(scan); };
      this.waiters.add(scan);
      scan();
    });
  }

  describe() {
    return 'frames: ' + this.frames.slice(-5).map((f) => `${f.opcode}:${f.payload.toString('utf8').slice(0, 80)}`).join(' | ');
  }

  texts(since = this.start) {
    return this.frames.slice(since).filter((f) => f.opcode === OP.TEXT).map((f) => JSON.parse(f.payload.toString('utf8')));
  }

  // The request with this ref is answered with a pong carrying it.
  async answered(ref, since) {
    const f = await this.next((x) => x.opcode === OP.TEXT && JSON.parse(x.payload.toString('utf8')).ref === ref,
      `the answer to ref ${JSON.stringify(ref).slice(0, 60)}`, since);
    assert.deepEqual(JSON.parse(f.payload.toString('utf8')), { type: 'pong', ref });
  }

  // The server sends a close frame with `code` (null: an empty one), nothing
  // after it, and closes the TCP connection.
  async closedWith(code, what = '') {
    const f = await this.next((x) => x.opcode === OP.CLOSE, `a close frame ${what}`);
    if (code === null) assert.equal(f.payload.length, 0, `an empty close ${what}`);
    else {
      assert.ok(f.payload.length >= 2, `a close code ${what}`);
      assert.equal(f.payload.readUInt16BE(0), code, `close code ${what}; ${this.describe()}`);
    }
    await this.gone(what);
    assert.equal(this.frames[this.frames.length - 1], f, `nothing after the close frame ${what}`);
    assert.equal(this.bad, null);
  }

  // The server closed the TCP connection (within TIMEOUT).
  async gone(what = '') {
    let t;
    await Promise.race([this.ended, new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`the server kept the connection open ${what}; ${this.describe()}`)), TIMEOUT);
    })]);
    clearTimeout(t);
  }
}

// A fresh connection, then bytes, then the expected close code.
async function expectClose(bytes, code, what) {
  const c = await Raw.open();
  await c.send(...[].concat(bytes));
  await c.closedWith(code, what);
}

// Runs fn over items, `width` at a time (cases that each need a connection).
async function parallel(items, width, fn) {
  const queue = [...items.entries()];
  await Promise.all(Array.from({ length: width }, async () => {
    for (let e = queue.shift(); e; e = queue.shift()) await fn(e[1], e[0]);
  }));
}

// ---------------------------------------------------------------- 1 framing

test('1.1 text messages of 0..65,536 bytes are answered, whole or written in chunks', async () => {
  const c = await Raw.open();
  // 1.1.1: an empty text message is a request too: a bad_request without ref
  const since = c.frames.length;
  await c.send(text(''));
  const f = await c.next((x) => x.opcode === OP.TEXT, 'an answer to an empty message', since);
  const r = JSON.parse(f.payload);
  assert.equal(r.type, 'error');
  assert.equal(r.code, 'bad_request');
  for (const n of [125, 126, 127, 128, 65535, 65536]) {
    await c.send(frame(OP.TEXT, padded(n, `len${n}`)));
    await c.answered(`len${n}`);
  }
  // 1.1.8: a 65,536-byte message written in 997-byte chunks
  const big = frame(OP.TEXT, padded(65536, 'chunked'));
  for (let o = 0; o < big.length; o += 997) await c.send(big.subarray(o, o + 997));
  await c.answered('chunked');
  c.sock.destroy();
});

test('1.2 a binary message of any size is refused with 1003', async () => {
  await parallel([0, 1, 125, 126, 65535, 65536], 3, (n) =>
    expectClose(frame(OP.BINARY, Buffer.alloc(n, 0xfe)), 1003, `binary ${n}`));
});

test('1.x an unmasked client frame is a protocol error (1002)', async () => {
  await expectClose(text('{"type":"ping","ref":1}', { mask: false }), 1002, 'unmasked');
});

// ---------------------------------------------------------------- 2 pings and pongs

test('2.1-2.6 pings are answered with pongs carrying the same payload, in order', async () => {
  const c = await Raw.open();
  const payloads = [Buffer.alloc(0), Buffer.from('Hello, world!'), Buffer.from([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]),
    Buffer.alloc(125, 0xfe)];
  for (const p of payloads) {
    const since = c.frames.length;
    await c.send(frame(OP.PING, p));
    const pong = await c.next((f) => f.opcode === OP.PONG, `pong to a ${p.length}-byte ping`, since);
    assert.deepEqual(pong.payload, p);
    assert.ok(pong.fin);
  }
  // 2.6: a 125-byte ping written one byte at a time
  const since = c.frames.length;
  const split = frame(OP.PING, Buffer.alloc(125, 0x61));
  await c.sendEach([...split].map((b) => Buffer.from([b])));
  const pong = await c.next((f) => f.opcode === OP.PONG, 'pong to a bytewise ping', since);
  assert.deepEqual(pong.payload, Buffer.alloc(125, 0x61));
  // 2.10/2.11: ten pings in one write and in ten writes: ten pongs, in order
  for (const together of [true, false]) {
    const since2 = c.frames.length;
    const pings = Array.from({ length: 10 }, (_, i) => frame(OP.PING, Buffer.from(`payload-${i}`)));
    if (together) await c.send(...pings); else await c.sendEach(pings);
    await c.next((f) => f.opcode === OP.PONG && f.payload.toString() === 'payload-9', 'the tenth pong', since2);
    const pongs = c.frames.slice(since2).filter((f) => f.opcode === OP.PONG).map((f) => f.payload.toString());
    assert.deepEqual(pongs, Array.from({ length: 10 }, (_, i) => `payload-${i}`));
  }
  await c.send(text('{"type":"ping","ref":"still"}'));
  await c.answered('still');
  c.sock.destroy();
});

test('2.5 a ping over 125 bytes is a protocol error (1002)', async () => {
  await expectClose(frame(OP.PING, Buffer.alloc(126, 0xfe)), 1002, 'ping 126');
});

test('2.7-2.9 unsolicited pongs are ignored', async () => {
  const c = await Raw.open();
  await c.send(frame(OP.PONG), frame(OP.PONG, Buffer.from('unsolicited')), text('{"type":"ping","ref":"after pongs"}'));
  await c.answered('after pongs');
  // 2.9: an unsolicited pong, then a ping: only the ping's pong comes back
  const since = c.frames.length;
  await c.send(frame(OP.PONG, Buffer.from('nope')), frame(OP.PING, Buffer.from('yes')));
  await c.next((f) => f.opcode === OP.PONG, 'the pong', since);
  const pongs = c.frames.slice(since).filter((f) => f.opcode === OP.PONG);
  assert.deepEqual(pongs.map((f) => f.payload.toString()), ['yes']);
  c.sock.destroy();
});

// ---------------------------------------------------------------- 3 reserved bits

test('3.1-3.7 any RSV bit (no extension was negotiated) closes 1002, on any frame', async () => {
  const cases = [];
  for (const rsv of [1, 2, 3, 4, 5, 6, 7]) {
    cases.push({ what: `text rsv ${rsv}`, bytes: text('{"type":"ping","ref":1}', { rsv }) });
  }
  cases.push({ what: 'binary rsv 4', bytes: frame(OP.BINARY, Buffer.from([1, 2]), { rsv: 4 }) });
  cases.push({ what: 'ping rsv 2', bytes: frame(OP.PING, Buffer.from('x'), { rsv: 2 }) });
  cases.push({ what: 'close rsv 1', bytes: frame(OP.CLOSE, Buffer.from([0x03, 0xe8]), { rsv: 1 }) });
  await parallel(cases, 4, ({ what, bytes }) => expectClose(bytes, 1002, what));
  // 3.2: after a valid message (answered: the session's replies are
  // asynchronous, so the bad frame goes once the answer is in)
  const c = await Raw.open();
  await c.send(text('{"type":"ping","ref":"first"}'));
  await c.answered('first');
  await c.send(text('{"type":"ping","ref":2}', { rsv: 2 }), frame(OP.PING, Buffer.from('late')));
  await c.closedWith(1002, 'rsv after a valid message');
  assert.ok(!c.frames.some((f) => f.opcode === OP.PONG), 'nothing after the bad frame is answered');
});

// ---------------------------------------------------------------- 4 opcodes

test('4.1-4.2 reserved opcodes close 1002, with or without payload, even after a valid message', async () => {
  const cases = [];
  for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
    cases.push({ what: `opcode ${op}`, bytes: frame(op) });
    cases.push({ what: `opcode ${op} with payload`, bytes: frame(op, Buffer.from('reserved')) });
  }
  await parallel(cases, 4, ({ what, bytes }) => expectClose(bytes, 1002, what));
  const c = await Raw.open();
  await c.send(text('{"type":"ping","ref":"before"}'));
  await c.answered('before');
  await c.send(frame(5, Buffer.from('x')), frame(OP.PING));
  await c.closedWith(1002, 'a reserved opcode after a valid message');
  assert.ok(!c.frames.some((f) => f.opcode === OP.PONG));
});

// ---------------------------------------------------------------- 5 fragmentation

test('5.1-5.2 fragmented control frames close 1002', async () => {
  await expectClose([frame(OP.PING, Buffer.from('frag'), { fin: false }), frame(OP.CONT, Buffer.from('ment'))], 1002, 'fragmented ping');
  await expectClose([frame(OP.PONG, Buffer.from('frag'), { fin: false }), frame(OP.CONT, Buffer.from('ment'))], 1002, 'fragmented pong');
});

test('5.3-5.5, 5.19-5.20 fragmented text is reassembled, with pings in between, however written', async () => {
  const c = await Raw.open();
  const msg = Buffer.from('{"type":"ping","ref":"fragmented"}');
  const parts = [msg.subarray(0, 5), msg.subarray(5, 12), msg.subarray(12, 20), msg.subarray(20, 30), msg.subarray(30)];
  const frames = parts.map((p, i) => frame(i === 0 ? OP.TEXT : OP.CONT, p, { fin: i === parts.length - 1 }));
  // 5.3/5.4: two fragments in one write and in two writes
  for (const together of [true, false]) {
    const m = Buffer.from(`{"type":"ping","ref":"two-${together}"}`);
    const two = [frame(OP.TEXT, m.subarray(0, 9), { fin: false }), frame(OP.CONT, m.subarray(9))];
    if (together) await c.send(...two); else await c.sendEach(two);
    await c.answered(`two-${together}`);
  }
  // 5.6-5.9/5.19: pings between the fragments are answered at once, the
  // message once it is whole
  const withPings = [];
  frames.forEach((f, i) => { withPings.push(f); if (i < frames.length - 1) withPings.push(frame(OP.PING, Buffer.from(`between-${i}`))); });
  for (const together of [true, false]) {
    const since = c.frames.length;
    if (together) await c.send(...withPings); else await c.sendEach(withPings);
    await c.answered('fragmented', since);
    const got = c.frames.slice(since).map((f) => (f.opcode === OP.PONG ? `pong:${f.payload}` : `text:${JSON.parse(f.payload).ref}`));
    assert.deepEqual(got, ['pong:between-0', 'pong:between-1', 'pong:between-2', 'pong:between-3', 'text:fragmented']);
  }
  // 5.x: empty fragments are fine
  await c.send(frame(OP.TEXT, Buffer.alloc(0), { fin: false }), frame(OP.CONT, Buffer.from('{"type":"ping","ref":"e"}'), { fin: false }),
    frame(OP.CONT, Buffer.alloc(0)));
  await c.answered('e');
  c.sock.destroy();
});

test('5.9-5.18 continuation with nothing to continue, or a new message inside one, closes 1002', async () => {
  const ping = Buffer.from('{"type":"ping","ref":1}');
  await parallel([
    { what: 'continuation first (fin)', bytes: [frame(OP.CONT, ping)] },
    { what: 'continuation first (not fin)', bytes: [frame(OP.CONT, ping, { fin: false })] },
    { what: 'continuation after a whole message', bytes: [text('{"type":"ping","ref":2}'), frame(OP.CONT, ping)] },
    { what: 'text inside a fragmented text', bytes: [frame(OP.TEXT, ping.subarray(0, 4), { fin: false }), text('{"type":"ping","ref":3}')] },
    { what: 'text (not fin) inside a fragmented text', bytes: [frame(OP.TEXT, ping.subarray(0, 4), { fin: false }), frame(OP.TEXT, ping, { fin: false })] },
    { what: 'binary inside a fragmented text', bytes: [frame(OP.TEXT, ping.subarray(0, 4), { fin: false }), frame(OP.BINARY, ping)] },
  ], 3, ({ what, bytes }) => expectClose(bytes, 1002, what));
  await expectClose([frame(OP.BINARY, ping.subarray(0, 4), { fin: false }), frame(OP.CONT, ping.subarray(4))], 1003, 'fragmented binary');
});

// ---------------------------------------------------------------- 6 UTF-8

const VALID = [
  'Hello-µ@ßöäüàá-UTF-8!!', 'κόσμε', '\u0080', '\u07ff', '\u0800', '\uffff', '\ud800\udc00' /* U+10000 */,
  '\udbff\udfff' /* U+10FFFF */, '\ud7ff', '\ue000', '\ufffd', '𝄞 € ✓',
];
const INVALID = [
  [0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64], // κόσμε + surrogate
  [0xc0, 0x80], [0xc0, 0xaf], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0x80, 0xaf], [0xe0, 0x9f, 0xbf],
  [0xf0, 0x80, 0x80, 0x80], [0xf0, 0x8f, 0xbf, 0xbf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
  [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf7, 0xbf, 0xbf, 0xbf],
  [0x80], [0xbf], [0x80, 0xbf, 0x80, 0xbf], [0xc2, 0x20], [0xe0, 0xa0, 0x20], [0xf0, 0x90, 0x80, 0x20],
  [0xfe], [0xff], [0xfe, 0xfe, 0xff, 0xff],
];

test('6.2-6.3 valid UTF-8, whole and split into two fragments at every byte, is answered with the same text', async () => {
  const c = await Raw.open();
  for (const s of VALID) {
    await c.send(frame(OP.TEXT, pingReq(Buffer.from(s))));
    await c.answered(s);
  }
  const ref = 'κόσμε-€-𝄞-µ';
  const msg = pingReq(Buffer.from(ref));
  for (let at = 0; at <= msg.length; at++) {
    const since = c.frames.length;
    await c.send(frame(OP.TEXT, msg.subarray(0, at), { fin: false }), frame(OP.CONT, msg.subarray(at)));
    await c.answered(ref, since);
  }
  // and one fragment per byte
  const since = c.frames.length;
  await c.send(...[...msg].map((b, i) => frame(i ? OP.CONT : OP.TEXT, Buffer.from([b]), { fin: i === msg.length - 1 })));
  await c.answered(ref, since);
  c.sock.destroy();
});

test('6.4-6.23 invalid UTF-8 closes 1007', async () => {
  await parallel(INVALID, 4, (bytes) => expectClose(frame(OP.TEXT, pingReq(Buffer.from(bytes))), 1007,
    `bytes ${Buffer.from(bytes).toString('hex')}`));
});

test('6.4 invalid UTF-8 split into two fragments at every byte closes 1007, and fails fast', async () => {
  const msg = pingReq(Buffer.from([0x6f, 0x6b, 0xed, 0xa0, 0x80, 0x6f, 0x6b])); // "ok" surrogate "ok"
  await parallel([...Array(msg.length + 1).keys()], 4, (at) =>
    expectClose([frame(OP.TEXT, msg.subarray(0, at), { fin: false }), frame(OP.CONT, msg.subarray(at))], 1007, `split at ${at}`));
  // fail fast: the fragment with the bad bytes is refused before the message ends
  await expectClose(frame(OP.TEXT, Buffer.from([0x7b, 0x22, 0xf4, 0x90, 0x80, 0x80]), { fin: false }), 1007, 'fail fast');
});

// ---------------------------------------------------------------- 7 close handling

// Replies come from the session actor, asynchronously: a request sent in the
// same write as a close may lose the race with the close echo (RFC 6455 lets
// an endpoint close as soon as practical), so these cases wait for answers
// before closing where they assert them.
test('7.1 after a close, nothing more is answered, and the server closes the connection', async () => {
  // 7.1.1: a request answered, then a close: echoed
  const a = await Raw.open();
  await a.send(text('{"type":"ping","ref":"before close"}'));
  await a.answered('before close');
  await a.send(closeFrame(1000));
  await a.closedWith(1000, '7.1.1');
  // 7.1.2-7.1.5: a second close, a ping, a message, a fragment after the close
  const b = await Raw.open();
  await b.send(closeFrame(1000), closeFrame(1001), frame(OP.PING, Buffer.from('late')), text('{"type":"ping","ref":"late"}'),
    frame(OP.TEXT, Buffer.from('{"ty'), { fin: false }));
  await b.closedWith(1000, '7.1.2-5');
  assert.equal(b.frames.slice(b.start).length, 1, 'only the close echo');
  // 7.1.6: a large message, then a close, in one write: the close is
  // echoed and the connection closed (the answer may or may not precede it)
  const c = await Raw.open();
  await c.send(frame(OP.TEXT, padded(65536, 'big then close')), closeFrame(1000));
  await c.closedWith(1000, '7.1.6');
  assert.ok(c.texts().every((r) => r.type === 'pong' && r.ref === 'big then close'));
});

test('7.3 close payloads: empty, code only, code and reason (up to 123 bytes); 1 byte or over 125 -> 1002', async () => {
  const cases = [
    { what: 'empty', bytes: frame(OP.CLOSE), code: null },
    { what: '1 byte', bytes: frame(OP.CLOSE, Buffer.from([0x03])), code: 1002 },
    { what: 'code only', bytes: closeFrame(1000), code: 1000 },
    { what: 'code and reason', bytes: closeFrame(1000, 'Hello World!'), code: 1000 },
    { what: '123-byte reason', bytes: closeFrame(1000, 'r'.repeat(123)), code: 1000 },
    { what: '124-byte reason', bytes: closeFrame(1000, 'r'.repeat(124)), code: 1002 },
    { what: 'fragmented close', bytes: frame(OP.CLOSE, Buffer.from([0x03, 0xe8]), { fin: false }), code: 1002 },
  ];
  await parallel(cases, 3, ({ what, bytes, code }) => expectClose(bytes, code, what));
});

test('7.5 a close reason that is not UTF-8 -> 1007', async () => {
  await expectClose(closeFrame(1000, Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64])),
    1007, 'surrogate in reason');
});

test('7.7, 7.9 valid close codes are echoed; 1004-1006, 1015, <1000 and >4999 are refused 1002', async () => {
  const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
  const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535];
  await parallel([...valid.map((c) => [c, c]), ...invalid.map((c) => [c, 1002])], 4,
    ([sent, want]) => expectClose(closeFrame(sent, 'reason'), want, `code ${sent}`));
});

// Issue 7 item 7: the verdict on a close reason must not depend on where TCP
// splits the frame (wslay judged it per chunk).
test('7.x a close reason split into two TCP writes at every byte: é-ok -> 1000, a bad byte in either part -> 1007', async () => {
  const good = closeFrame(1000, Buffer.from('é-ok'));
  const bad = closeFrame(1000, Buffer.from([0x6f, 0x6b, 0x2d, 0xc3, 0x28, 0x2d, 0x6f, 0x6b])); // "ok-" C3 28 "-ok"
  const cases = [];
  for (let at = 1; at < good.length; at++) cases.push({ bytes: good, at, code: 1000 });
  for (let at = 1; at < bad.length; at++) cases.push({ bytes: bad, at, code: 1007 });
  await parallel(cases, 4, async ({ bytes, at, code }) => {
    const c = await Raw.open();
    await c.sendEach([bytes.subarray(0, at), bytes.subarray(at)]);
    await c.closedWith(code, `split at ${at}`);
  });
});

// ---------------------------------------------------------------- 9 limits and performance

test('9.1 a message over 65,536 bytes closes 1009, at its header', async () => {
  await expectClose(frame(OP.TEXT, padded(65537, 'over')), 1009, 'one frame');
  // only a header announcing 65,537 bytes: refused without waiting for them
  await expectClose(frame(OP.TEXT, Buffer.alloc(0), { len: 65537 }), 1009, 'header only');
  await expectClose(frame(OP.TEXT, Buffer.alloc(0), { len: 2 ** 40 }), 1009, '1 TiB announced');
  // across fragments
  const s = padded(65537, 'frag');
  await expectClose([frame(OP.TEXT, s.subarray(0, 65536), { fin: false }), frame(OP.CONT, s.subarray(65536))], 1009, 'fragments');
});

test('9.2 a 65,536-byte message in fragments of 1 to 16,384 bytes is answered (times are reported)', async (t) => {
  const c = await Raw.open();
  for (const size of [1, 4, 16, 64, 256, 1024, 4096, 16384]) {
    const msg = padded(65536, `frag${size}`);
    let wire, count;
    if (size <= 125) ({ wire, count } = fragments(msg, size));
    else {
      const frames = [];
      for (let o = 0; o < msg.length; o += size) {
        frames.push(frame(o ? OP.CONT : OP.TEXT, msg.subarray(o, o + size), { fin: o + size >= msg.length }));
      }
      wire = Buffer.concat(frames);
      count = frames.length;
    }
    const t0 = process.hrtime.bigint(); // from the first byte written to the answer
    for (let o = 0; o < wire.length; o += 65536) await c.send(wire.subarray(o, o + 65536));
    await c.answered(`frag${size}`);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    t.diagnostic(`65,536 bytes in ${count} fragments of ${size} (${wire.length} bytes on the wire): ${ms.toFixed(1)} ms`);
  }
  // 9.x: 100 small requests in one write (under the endpoint's 512 queued
  // requests, CONN_MAX_QUEUED_FRAMES), answered in order
  const since = c.frames.length;
  const t0 = process.hrtime.bigint();
  await c.send(...Array.from({ length: 100 }, (_, i) => text(`{"type":"ping","ref":${i}}`)));
  await c.answered(99, since);
  t.diagnostic(`100 requests in one write answered in ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms`);
  assert.deepEqual(c.texts(since).map((r) => r.ref), Array.from({ length: 100 }, (_, i) => i));
  c.sock.destroy();
});

// Issue 7 item 5 over real sockets: 20 connections each holding an unfinished
// message of 60,000 one-byte fragments cost 108 MiB (5.4 MiB each) when every
// fragment had its own allocation; now they cost their payload.
function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

test('9.x 20 unfinished messages of 60,000 one-byte fragments hold about their payload', async (t) => {
  const CONNS = 20, FRAGS = 60000;
  const conns = [];
  for (let i = 0; i < CONNS; i++) conns.push(await Raw.open());
  const rss0 = rssKiB(server.proc.pid);
  const msg = padded(FRAGS + 1, 'pieces'); // the last byte comes later
  const head = fragments(msg.subarray(0, FRAGS), 1, { last: false }).wire;
  await Promise.all(conns.map((c) => c.send(head)));
  // Every byte is in once a ping written after it is answered (TCP keeps order).
  await Promise.all(conns.map(async (c) => {
    const since = c.frames.length;
    await c.send(frame(OP.PING, Buffer.from('sync')));
    await c.next((f) => f.opcode === OP.PONG, 'the pong after the fragments', since);
  }));
  const grown = rssKiB(server.proc.pid) - rss0;
  t.diagnostic(`server RSS grew ${grown} KiB for ${CONNS} x ${FRAGS} one-byte fragments (${CONNS * FRAGS / 1024 | 0} KiB of payload)`);
  assert.ok(grown < 16 * 1024, `RSS grew ${grown} KiB (the payload is ${CONNS * FRAGS / 1024 | 0} KiB)`);
  // and each message completes
  await Promise.all(conns.map(async (c) => {
    await c.send(frame(OP.CONT, msg.subarray(FRAGS)));
    await c.answered('pieces');
    c.sock.destroy();
  }));
});

test('the server is still healthy', async () => {
  const r = await fetch(server.base + '/healthz');
  assert.equal(r.status, 200);
  const c = await Raw.open();
  await c.send(text('{"type":"ping","ref":"end"}'));
  await c.answered('end');
  await c.send(closeFrame(1000));
  await c.closedWith(1000, 'the last one');
});
