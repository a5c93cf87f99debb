// HTTP conformance, Host and Origin checks, security headers, over the wire
// (issue 7 items 8, 9 and 10).  Raw sockets: what a browser or `ws` would
// never send is exactly what has to be tried.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, checkAlive } from './client.mjs';
import WebSocket from 'ws';

const ALLOWED_ORIGIN = 'https://chat.example.com';
const ALLOWED_HOST = 'chat.example.com';
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

let server;
before(async () => {
  server = await startServer({ env: { CHATTER_ALLOWED_ORIGINS: `${ALLOWED_ORIGIN}, https://other.example`, CHATTER_ALLOWED_HOSTS: ALLOWED_HOST } });
});
after(async () => { await closeAll(); await server?.stop(); });

// Sends text; resolves with {status, headers, body, raw} once the server
// closes, or at once for a 101 (the socket is then destroyed).
function rawRequest(text, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: server.port });
    let data = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no answer to ${JSON.stringify(text.slice(0, 60))}`)); }, timeout);
    const done = () => {
      clearTimeout(t);
      const str = data.toString('latin1');
      const end = str.indexOf('\r\n\r\n');
      const head = end < 0 ? str : str.slice(0, end);
      const [line, ...lines] = head.split('\r\n');
      const headers = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).toLowerCase();
        headers[k] = k in headers ? `${headers[k]}, ${l.slice(i + 1).trim()}` : l.slice(i + 1).trim();
      }
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(line || '');
      resolve({ status: m ? Number(m[1]) : 0, headers, body: end < 0 ? '' : str.slice(end + 4), raw: str });
    };
    s.on('data', (d) => {
      data = Buffer.concat([data, d]);
      if (/^HTTP\/1\.1 101 [^]*\r\n\r\n/.test(data.toString('latin1'))) { s.destroy(); done(); }
    });
    s.on('close', done);
    s.on('error', () => {});
    s.write(text);
  });
}

const host = () => `127.0.0.1:${server.port}`;
const wsReq = ({ origin, version = '13', hostHdr = host(), method = 'GET' } = {}) =>
  `${method} /ws HTTP/1.1\r\nHost: ${hostHdr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: ${version}\r\n` +
  (origin ? `Origin: ${origin}\r\n` : '') + '\r\n';

test('HTTP/1.1 without Host, or with two, is 400', async () => {
  assert.equal((await rawRequest('GET / HTTP/1.1\r\nConnection: close\r\n\r\n')).status, 400);
  assert.equal((await rawRequest(`GET / HTTP/1.1\r\nHost: ${host()}\r\nHost: ${host()}\r\n\r\n`)).status, 400);
  assert.equal((await rawRequest('GET / HTTP/1.0\r\n\r\n')).status, 200, 'HTTP/1.0 needs no Host');
});

test('whitespace between a header name and its colon is 400, Transfer-Encoding included', async () => {
  assert.equal((await rawRequest(`GET / HTTP/1.1\r\nHost : ${host()}\r\n\r\n`)).status, 400);
  const r = await rawRequest(`POST / HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`);
  assert.equal(r.status, 400);
});

test('HTTP/2.0 in a request line is 505', async () => {
  assert.equal((await rawRequest(`GET / HTTP/2.0\r\nHost: ${host()}\r\n\r\n`)).status, 505);
});

test('HEAD /ws has no body', async () => {
  const r = await rawRequest(`HEAD /ws HTTP/1.1\r\nHost: ${host()}\r\n\r\n`);
  assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
  assert.equal(r.body, '', 'HEAD must not carry a body');
});

test('methods other than GET/HEAD on /healthz, /metrics, /ws are 405 with Allow', async () => {
  for (const [method, path, allow] of [['POST', '/healthz', 'GET, HEAD'], ['DELETE', '/metrics', 'GET, HEAD'],
    ['PUT', '/healthz', 'GET, HEAD'], ['POST', '/ws', 'GET']]) {
    const r = await rawRequest(`${method} ${path} HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.allow, allow, `${method} ${path} Allow`);
  }
  const h = await rawRequest(`HEAD /healthz HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`);
  assert.equal(h.status, 200);
  assert.equal(h.body, '');
});

test('a WebSocket handshake in another version is 426 with Sec-WebSocket-Version: 13', async () => {
  const r = await rawRequest(wsReq({ version: '8' }));
  assert.equal(r.status, 426);
  assert.equal(r.headers['sec-websocket-version'], '13');
});

test('Origin: same origin, none, or listed is upgraded; any other is 403 before the upgrade', async () => {
  assert.equal((await rawRequest(wsReq())).status, 101, 'no Origin (not a browser)');
  assert.equal((await rawRequest(wsReq({ origin: `http://${host()}` }))).status, 101, 'same origin');
  assert.equal((await rawRequest(wsReq({ origin: ALLOWED_ORIGIN }))).status, 101, 'listed');
  assert.equal((await rawRequest(wsReq({ origin: 'https://other.example' }))).status, 101, 'listed second');
  for (const origin of ['http://evil.example', `http://localhost:${server.port}`,
    'null', `http://${host()}.evil.example`, 'https://chat.example.com.evil.example']) {
    const r = await rawRequest(wsReq({ origin }));
    assert.equal(r.status, 403, `Origin ${origin}`);
    assert.ok(!r.headers['sec-websocket-accept'], 'no upgrade');
  }
  // The `ws` library with a foreign origin is refused too.
  const ws = new WebSocket(server.wsUrl, { origin: 'http://evil.example' });
  const status = await new Promise((r) => {
    ws.on('unexpected-response', (_req, res) => r(res.statusCode));
    ws.on('open', () => r(101));
    ws.on('error', () => {});
  });
  ws.terminate();
  assert.equal(status, 403);
  const c = await connect(server.wsUrl); // the test client sends no Origin
  assert.equal(c.welcome.type, 'welcome');
});

test('a foreign Host (DNS rebinding) is 403; local names, IP literals and listed hosts are served', async () => {
  const get = (h) => rawRequest(`GET /healthz HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
  assert.equal((await get('evil.example')).status, 403);
  assert.equal((await get(`evil.example:${server.port}`)).status, 403);
  assert.equal((await rawRequest(wsReq({ hostHdr: `rebind.evil.example:${server.port}` }))).status, 403);
  for (const h of [`localhost:${server.port}`, `127.0.0.1:${server.port}`, `[::1]:${server.port}`, 'LOCALHOST', ALLOWED_HOST]) {
    assert.equal((await get(h)).status, 200, `Host ${h}`);
  }
});

test('security headers on every response', async () => {
  const csp = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
  const rs = [
    await rawRequest(`GET / HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`),
    await rawRequest(`GET /healthz HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`),
    await rawRequest(`GET /nope.css HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`),
    await rawRequest(`GET / HTTP/1.1\r\n\r\n`),
    await rawRequest(wsReq()),
    await rawRequest(wsReq({ origin: 'http://evil.example' })),
  ];
  for (const r of rs) {
    const what = `${r.status} response`;
    assert.equal(r.headers['content-security-policy'], csp, what);
    assert.ok(!/unsafe-inline/.test(r.headers['content-security-policy']), what);
    assert.equal(r.headers['x-frame-options'], 'DENY', what);
    assert.equal(r.headers['referrer-policy'], 'no-referrer', what);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', what);
  }
});

test('server still running', () => checkAlive(assert, server));
