// The SIGTERM drain (issue 9 §2, app/main.c): the listeners close at once (a
// new connect is refused), every WebSocket gets 1001 after the reply to the
// request its session holds, a send in flight is committed and answered
// `sent` (or, past CHATTER_SHUTDOWN_MS, answered `unavailable` and never
// stored), a kept-alive HTTP connection is closed, and the process exits 0
// within the bound -- or 1 once the bound has passed.
//
// "In flight" is made observable rather than timed: a psql session holds
// LOCK TABLE messages IN SHARE MODE, so the writer's INSERT waits on it, and
// the test awaits pg_stat_activity showing the writer waiting on that lock.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import { startServer } from '../lib/server.mjs';
import { joined, closeAll, uniq, checkError } from './client.mjs';

const DB_URL = process.env.DATABASE_URL;
// Backends stopped with SIGSTOP, resumed in after() whatever happened.
const stopped = new Set();

after(async () => {
  for (const pid of stopped) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } }
  await closeAll();
});

function psql(sql) {
  return execFileSync('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-d', DB_URL, '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20000 }).trim();
}

// A psql session holding SHARE on messages (INSERTs wait, reads do not).
async function lockMessages() {
  const p = spawn('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-d', DB_URL],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise((r) => p.once('exit', r));
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`lock not taken: ${out}`)), 20000);
    p.stdout.on('data', (d) => { out += d; if (out.includes('locked')) { clearTimeout(t); resolve(); } });
    p.stderr.on('data', (d) => { out += d; });
    p.once('exit', (c) => { clearTimeout(t); reject(new Error(`psql exited ${c}: ${out}`)); });
    p.stdin.write("BEGIN;\nLOCK TABLE messages IN SHARE MODE;\nSELECT 'locked';\n");
  });
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      p.stdin.end('ROLLBACK;\n');
      await exited;
    },
  };
}

// Polls the database (bounded) until sql returns a non-empty answer.
async function dbBecomes(sql, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = psql(sql);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The writer (repo.0) of this server waiting on our lock: its INSERT is in flight.
function writerWaitingOnLock(server) {
  return dbBecomes(`SELECT pid FROM pg_stat_activity WHERE application_name = 'chatter.${server.proc.pid} repo.0'
                    AND wait_event_type = 'Lock'`, 'the writer to wait on the lock');
}

// Resolves when the server's output holds a line matching re (on each write).
function logLine(server, re, ms = 15000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const line = server.logs().split('\n').find((l) => re.test(l));
      if (!line) return false;
      done();
      resolve(line);
      return true;
    };
    const t = setTimeout(() => { done(); reject(new Error(`no log line ${re}:\n${server.logs().slice(-3000)}`)); }, ms);
    const done = () => { clearTimeout(t); server.proc.stderr.off('data', onData); server.proc.stdout.off('data', onData); };
    const onData = () => { check(); };
    server.proc.stderr.on('data', onData);
    server.proc.stdout.on('data', onData);
    check();
  });
}

// The exit status once the output is read to its end ('close', not 'exit':
// a process that ends at once may still have lines in the pipe).
function exitOf(server) {
  return new Promise((r) => server.proc.once('close', (code, sig) => r({ code, sig })));
}

// A TCP connect: 'connected' or the error code.
function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve('connected'); });
    s.once('error', (e) => resolve(e.code));
  });
}

// A kept-alive HTTP/1.1 connection that got one answer; resolves `closed`
// when the server closes it.
async function keptAlive(port) {
  const s = net.connect({ host: '127.0.0.1', port });
  let got = '';
  const closed = new Promise((r) => s.once('close', () => r(true)));
  s.on('error', () => {});
  await new Promise((resolve, reject) => {
    s.once('connect', () => s.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
    s.on('data', (d) => { got += d; if (/\r\n\r\n[\s\S]*ok/.test(got)) resolve(); });
    s.once('close', () => reject(new Error(`closed before the answer: ${got}`)));
  });
  assert.match(got, /^HTTP\/1\.1 200/);
  assert.doesNotMatch(got, /Connection: close/i, 'the connection is kept alive');
  return { closed };
}

function storedClientIds(prefix) {
  const out = psql(`SELECT client_id FROM messages WHERE client_id LIKE '${prefix}%' ORDER BY client_id`);
  return out ? out.split('\n') : [];
}

// A server whose drain may take `bound` ms (the database's own deadline far
// above the test's steps: a lock the test holds must not time the INSERT
// out), with n joined clients, the first of which has sent `text` (so the
// writer is connected).
async function drainingServer(bound, n, text) {
  const server = await startServer({ env: { CHATTER_SHUTDOWN_MS: String(bound), CHATTER_DB_TIMEOUT_MS: '30000' } });
  const clients = [];
  for (let i = 0; i < n; i++) clients.push(await joined(server.wsUrl));
  await clients[0].sendOk(`${text} ${uniq()}`);
  return { server, clients };
}

test('SIGTERM: listeners closed, sends in flight committed and answered, 1001 to every socket, exit 0 within the bound', async () => {
  const BOUND = 10000;
  const N = 12;
  const { server, clients } = await drainingServer(BOUND, N, 'before the drain');
  const http = await keptAlive(server.port);

  const tag = uniq('drain').replace(/[^A-Za-z0-9_-]/g, '');
  const lock = await lockMessages();
  const refs = [];
  try {
    // Each socket: a send its session takes (held by the lock), and one
    // queued behind it that no session has taken yet.
    for (const [i, c] of clients.entries()) {
      const first = c.sendReq({ type: 'send', content: `in flight ${i}`, client_id: `${tag}-a${i}` });
      const second = c.sendReq({ type: 'send', content: `queued ${i}`, client_id: `${tag}-b${i}` });
      refs.push({ c, first, second });
    }
    await writerWaitingOnLock(server);

    const t0 = Date.now();
    const exit = exitOf(server);
    server.proc.kill('SIGTERM');
    await logLine(server, /phase=listeners_closed/);
    // Still draining (the lock holds the INSERT), yet nobody can connect.
    assert.equal(server.exited(), null, 'the server is still draining');
    assert.equal(await tryConnect(server.port), 'ECONNREFUSED');
    assert.equal(await http.closed, true, 'the idle kept-alive HTTP connection is closed');
    assert.ok(clients.every((c) => c.isOpen()), 'sockets with a send in flight wait for its reply');
    await lock.release();

    const res = await exit;
    const elapsed = Date.now() - t0;
    assert.deepEqual(res, { code: 0, sig: null }, server.logs().slice(-3000));
    assert.ok(elapsed < BOUND, `exited in ${elapsed} ms`);
  } finally {
    await lock.release();
  }

  const stored = new Set(storedClientIds(`${tag}-`));
  for (const [i, { c, first, second }] of refs.entries()) {
    const info = await c.waitClose();
    assert.equal(info.code, 1001, `socket ${i} closed with ${info.code}`);
    const r = c.frames.find((f) => f.ref === first);
    assert.equal(r?.type, 'sent', `socket ${i}: the send in flight was answered: ${JSON.stringify(r)}`);
    assert.equal(r.message.content, `in flight ${i}`);
    assert.ok(stored.has(`${tag}-a${i}`), `socket ${i}: its sent message is stored`);
    // The one behind it never reached a session: no answer, nothing stored.
    assert.equal(c.frames.find((f) => f.ref === second), undefined);
    assert.ok(!stored.has(`${tag}-b${i}`), `socket ${i}: the queued send was not stored`);
    // The close frame follows the reply at once: nothing after it.
    assert.equal(c.frames[c.frames.length - 1], r, 'the reply is the last frame before the close');
  }
  assert.equal(stored.size, N);

  const logs = server.logs();
  const order = ['phase=begin signal=SIGTERM', 'phase=listeners_closed', 'phase=drained', 'phase=tree_stopped', 'phase=done status=0'];
  let at = -1;
  for (const p of order) {
    const i = logs.indexOf(p);
    assert.ok(i > at, `log phase ${p} after the previous one:\n${logs.slice(-3000)}`);
    at = i;
  }
});

test('past CHATTER_SHUTDOWN_MS (the writer hung with SIGSTOP): unavailable, 1001, nothing stored, exit 1', async () => {
  const BOUND = 1500;
  const N = 4;
  const { server, clients } = await drainingServer(BOUND, N, 'before the hang');

  const tag = uniq('hung').replace(/[^A-Za-z0-9_-]/g, '');
  const lock = await lockMessages();
  let backend = 0;
  try {
    const refs = clients.map((c, i) => c.sendReq({ type: 'send', content: `hung ${i}`, client_id: `${tag}-${i}` }));
    backend = Number(await writerWaitingOnLock(server));
    stopped.add(backend);
    process.kill(backend, 'SIGSTOP'); // the writer's backend hangs, INSERT under way

    const t0 = Date.now();
    const exit = exitOf(server);
    server.proc.kill('SIGTERM');
    const res = await exit;
    const elapsed = Date.now() - t0;
    assert.deepEqual(res, { code: 1, sig: null }, server.logs().slice(-3000));
    assert.ok(elapsed >= BOUND, `waited the bound (${elapsed} ms)`);
    // the margin: ABANDON_MS (1 s) and a fence connection on a loaded machine
    assert.ok(elapsed < BOUND + 4000, `exited in ${elapsed} ms`);

    for (const [i, c] of clients.entries()) {
      const info = await c.waitClose();
      assert.equal(info.code, 1001, `socket ${i} closed with ${info.code}`);
      const r = c.frames.find((f) => f.ref === refs[i]);
      assert.ok(r, `socket ${i}: its send was answered before the close`);
      checkError(assert, r, 'unavailable', refs[i]);
    }
    const logs = server.logs();
    assert.match(logs, /phase=timeout bound_ms=1500 conns=\d+ writer=busy/);
    assert.match(logs, new RegExp(`phase=fence backend=${backend} ended=yes`));
    assert.match(logs, /phase=exit status=1/);
  } finally {
    if (backend) { process.kill(backend, 'SIGCONT'); stopped.delete(backend); }
    // The backend, resumed, ends on the fence's terminate while still waiting
    // for the lock: its INSERT never commits.
    if (backend) await dbBecomes(`SELECT 'gone' WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ${backend})`, 'the hung backend to end');
    await lock.release();
  }
  assert.deepEqual(storedClientIds(`${tag}-`), [], 'a send answered unavailable is not stored');
});

test('a second SIGTERM during the drain exits at once (143), without waiting for the send in flight', async () => {
  const server = await startServer({ env: { CHATTER_SHUTDOWN_MS: '60000', CHATTER_DB_TIMEOUT_MS: '30000' } });
  const c = await joined(server.wsUrl);
  await c.sendOk(`before ${uniq()}`);
  const lock = await lockMessages();
  try {
    c.sendReq({ type: 'send', content: 'held by the lock', client_id: uniq('second').replace(/[^A-Za-z0-9_-]/g, '') });
    await writerWaitingOnLock(server);
    const exit = exitOf(server);
    server.proc.kill('SIGTERM');
    await logLine(server, /phase=listeners_closed/);
    assert.equal(server.exited(), null, 'the first SIGTERM waits for the send in flight');
    const t0 = Date.now();
    server.proc.kill('SIGTERM');
    let timer;
    const res = await Promise.race([exit, new Promise((r) => { timer = setTimeout(() => r('still running'), 10000); })]);
    clearTimeout(timer);
    if (res === 'still running') server.proc.kill('SIGKILL');
    assert.deepEqual(res, { code: 143, sig: null }, server.logs().slice(-3000));
    assert.ok(Date.now() - t0 < 5000, `exited ${Date.now() - t0} ms after the second signal`);
    assert.match(server.logs(), /phase=abort signal=SIGTERM/);
  } finally {
    await lock.release();
  }
});

test('SIGTERM: an HTTP response the client does not read holds the drain CLOSE_GRACE_MS (5 s), then the drain ends with 0', async () => {
  const BOUND = 10000;
  const server = await startServer({ env: { CHATTER_SHUTDOWN_MS: String(BOUND) } });
  const s = net.connect({ host: '127.0.0.1', port: server.port });
  s.on('error', () => {}); // the server cuts it, unread requests and all (a reset)
  await new Promise((r) => s.once('connect', r));
  // 2,000 pipelined GETs of an 18 KB file: about 36 MB of responses, far
  // more than the loopback socket buffers hold while nobody reads them.
  const flowing = new Promise((r) => s.once('data', () => { s.pause(); r(); }));
  s.write(`GET /style.css HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`.repeat(2000));
  await flowing; // responses are being written; from now on the client reads nothing

  const t0 = Date.now();
  const exit = exitOf(server);
  server.proc.kill('SIGTERM');
  const res = await exit;
  const elapsed = Date.now() - t0;
  s.destroy();
  assert.deepEqual(res, { code: 0, sig: null }, server.logs().slice(-3000));
  const drained = Number(/phase=drained ms=(\d+)/.exec(server.logs())?.[1]);
  // held by the response being written, then cut at CLOSE_GRACE_MS (5,000 ms)
  assert.ok(drained >= 4900 && drained < BOUND, `drained in ${drained} ms`);
  assert.ok(elapsed < BOUND, `exited in ${elapsed} ms`);
});
