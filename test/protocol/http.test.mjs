// Transport rows of PROTOCOL.md: /, /chat, static files under web/, 404s and
// path traversal, /healthz, /metrics, and the /ws upgrade.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../lib/server.mjs';
import { httpGet, connect, closeAll, checkAlive } from './client.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const webDir = path.join(root, 'web');

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
after(async () => { await closeAll(); await server?.stop(); });

const TYPES = {
  '.html': /^text\/html/, '.css': /^text\/css/, '.js': /^(text|application)\/javascript/,
  '.mjs': /^(text|application)\/javascript/, '.json': /^application\/(manifest\+)?json/,
  '.svg': /^image\/svg\+xml/, '.png': /^image\/png/, '.ico': /^image\/(x-icon|vnd\.microsoft\.icon)/,
  '.webmanifest': /^application\/manifest\+json/, '.txt': /^text\/plain/,
};

function webFiles(dir = webDir, rel = '') {
  let out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const r = rel + '/' + e.name;
    if (e.isDirectory()) out = out.concat(webFiles(path.join(dir, e.name), r));
    else out.push(r);
  }
  return out;
}

function isHtml(res) {
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] || '', /^text\/html/);
  assert.match(res.text, /<html|<!doctype html/i);
}

test('GET / serves the single-page client (web/index.html)', async () => {
  const res = await httpGet(server.port, '/');
  isHtml(res);
  const file = fs.readFileSync(path.join(webDir, 'index.html'));
  assert.ok(res.body.equals(file), 'GET / body differs from web/index.html');
});

test('GET /chat and /chat?name=NAME serve the same page', async () => {
  const home = await httpGet(server.port, '/');
  for (const p of ['/chat', '/chat?name=alice', '/chat?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E', '/?name=%22%3E%3Cimg%20src%3Dx%3E']) {
    const res = await httpGet(server.port, p);
    isHtml(res);
    assert.ok(res.body.equals(home.body), `${p} differs from / (user text must never be put into HTML)`);
  }
});

test('static files: Content-Type, Content-Length, ETag, 304 on If-None-Match', async () => {
  const files = webFiles().filter((f) => f !== '/index.html' && TYPES[path.extname(f)]);
  files.push('/index.html');
  assert.ok(files.length >= 2, `web/ should hold more than index.html: ${files}`);
  for (const f of files) {
    const want = fs.readFileSync(path.join(webDir, f));
    const res = await httpGet(server.port, f);
    assert.equal(res.status, 200, `GET ${f}`);
    assert.match(res.headers['content-type'] || '', TYPES[path.extname(f)], `Content-Type of ${f}: ${res.headers['content-type']}`);
    assert.equal(res.headers['content-length'], String(want.length), `Content-Length of ${f}`);
    assert.ok(res.body.equals(want), `body of ${f} differs from the file`);
    const etag = res.headers.etag;
    assert.ok(etag && /^(W\/)?"[^"]+"$/.test(etag), `ETag of ${f}: ${etag}`);
    const again = await httpGet(server.port, f);
    assert.equal(again.headers.etag, etag, `ETag of ${f} is not stable`);
    const nm = await httpGet(server.port, f, { 'If-None-Match': etag });
    assert.equal(nm.status, 304, `If-None-Match ${etag} on ${f}`);
    assert.equal(nm.body.length, 0, '304 carries no body');
    const other = await httpGet(server.port, f, { 'If-None-Match': '"not-the-etag"' });
    assert.equal(other.status, 200, `a different ETag on ${f} must give 200`);
  }
});

test('unknown paths are 404', async () => {
  for (const p of ['/nope', '/nope.js', '/js/nope.js', '/index.html/x', '/healthz/x']) {
    const res = await httpGet(server.port, p);
    assert.equal(res.status, 404, `GET ${p}`);
  }
});

test('path traversal never leaves web/ (404)', async () => {
  const makefile = fs.readFileSync(path.join(root, 'Makefile'), 'utf8');
  const attempts = [
    '/../Makefile', '/%2e%2e/Makefile', '/%2E%2E/Makefile', '/.%2e/Makefile',
    '/js/../../Makefile', '/css/../../Makefile', '/x/../../Makefile',
    '/..%2fMakefile', '/..%2FMakefile', '/%2e%2e%2fMakefile', '/js/..%2f..%2fMakefile',
    '/%2f..%2fMakefile', '/..%5cMakefile', '/../../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/..', '/%2e%2e', '/../app/main.c', '/%00', '/index.html%00.js', '//etc/passwd',
  ];
  for (const p of attempts) {
    const res = await httpGet(server.port, p);
    assert.equal(res.status, 404, `GET ${p} gave ${res.status}`);
    assert.ok(!res.text.includes('CFLAGS') && !res.text.includes('root:x:0'), `GET ${p} leaked a file`);
    if (makefile.length > 0) assert.ok(!res.body.equals(Buffer.from(makefile)), `GET ${p} served the Makefile`);
  }
});

test('GET /healthz is 200 ok', async () => {
  const res = await httpGet(server.port, '/healthz');
  assert.equal(res.status, 200);
  assert.equal(res.text.trim(), 'ok');
});

test('GET /metrics is Prometheus text', async () => {
  const res = await httpGet(server.port, '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'] || '', /^text\/plain/);
  const lines = res.text.split('\n').filter((l) => l.length > 0);
  const types = lines.filter((l) => /^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/.test(l));
  assert.ok(types.length > 0, 'no # TYPE line');
  const samples = lines.filter((l) => !l.startsWith('#'));
  assert.ok(samples.length > 0, 'no sample line');
  for (const l of samples) {
    assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*,?\})? [-+]?([0-9.eE+-]+|NaN|Inf)( -?\d+)?$/, `bad sample line: ${l}`);
  }
  for (const l of lines.filter((x) => x.startsWith('#'))) {
    assert.match(l, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /, `bad comment line: ${l}`);
  }
});

test('GET /ws upgrades (RFC 6455) and sends welcome', async () => {
  const c = await connect(server.wsUrl);
  assert.equal(c.welcome.type, 'welcome');
  assert.equal(c.welcome.protocol, 2);
  await c.close();
});

test('server still running', () => checkAlive(assert, server));
