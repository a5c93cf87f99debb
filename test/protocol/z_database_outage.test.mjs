// PostgreSQL stopped and restarted under a running server: `unavailable` while
// down (and /healthz 503), no acknowledged message lost, and the service comes
// back by itself.  Runs last (z_) since it stops the shared development cluster;
// the cluster is always restarted in a finally.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, checkError, checkAlive, httpGet, sleep } from './client.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// PROTO_DEVDB: another copy of devdb.sh (e.g. a private cluster for these tests).
const devdb = process.env.PROTO_DEVDB || path.join(root, 'sql', 'devdb.sh');

function db(cmd) {
  return execFileSync('bash', [devdb, cmd], { cwd: path.dirname(path.dirname(devdb)), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 }).trim();
}

let skip = false;
if (!fs.existsSync(devdb)) skip = 'sql/devdb.sh is missing';
else if (process.env.DATABASE_URL && process.env.DATABASE_URL !== db('url')) skip = 'DATABASE_URL is not the development cluster';

let server;
before(async () => { if (!skip) server = await startServer(); });
after(async () => { await closeAll(); await server?.stop(); });

// Polls /healthz until it answers `status` (bounded).
async function healthzBecomes(status, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try { last = (await httpGet(server.port, '/healthz')).status; } catch (e) { last = String(e); }
    if (last === status) return;
    await sleep(100);
  }
  throw new Error(`/healthz did not become ${status} within ${timeoutMs} ms (last: ${last})`);
}

test('database outage: unavailable while down, nothing acknowledged lost, recovery without restart', { skip }, async () => {
  const a = await joined(server.wsUrl);
  const b = await joined(server.wsUrl);
  const acked = [];
  for (let i = 0; i < 5; i++) acked.push(await a.sendOk(`before outage ${i} ${uniq()}`));
  // pipelined sends right before the stop: whatever was acknowledged must survive
  const late = [0, 1, 2].map((i) => a.sendReq({ type: 'send', content: `racing ${i} ${uniq()}` }));
  const rejected = [];
  let stopped = false;
  try {
    const replies = [];
    for (const r of late) replies.push(await a.reply(r, { timeout: 15000 }));
    for (const r of replies) if (r.type === 'sent') acked.push(r.message);
    db('stop');
    stopped = true;

    await healthzBecomes(503, 15000);
    // a send now is unavailable (retrying once or twice if the repo is still noticing)
    let r;
    const deadline = Date.now() + 15000;
    do {
      const content = `during outage ${uniq()}`;
      r = await a.request({ type: 'send', content }, { timeout: 20000 });
      assert.notEqual(r.type, 'sent', 'a send was acknowledged while the database is down');
      rejected.push(content);
    } while (r.code !== 'unavailable' && Date.now() < deadline);
    checkError(assert, r, 'unavailable', r.ref);
    // still rejected, the socket stays open and joined
    const r2 = await a.request({ type: 'send', content: 'during outage 2', ref: 'u2' }, { timeout: 20000 });
    checkError(assert, r2, 'unavailable', 'u2');
    rejected.push('during outage 2');
    // a new name cannot be created
    const c = await connect(server.wsUrl);
    const j = await c.request({ type: 'join', name: uniq('down'), ref: 'j' }, { timeout: 20000 });
    checkError(assert, j, 'unavailable', 'j');
    const h = await a.request({ type: 'history', before: 1e12, limit: 5, ref: 'h' }, { timeout: 20000 });
    if (h.type === 'error') checkError(assert, h, 'unavailable', 'h');
    // validity still comes before unavailable
    checkError(assert, await a.request({ type: 'send', content: '', ref: 'e' }), 'content_invalid', 'e');
    assert.deepEqual(await a.request({ type: 'ping', ref: 'p' }), { type: 'pong', ref: 'p' });
    assert.ok(a.isOpen() && b.isOpen());
  } finally {
    db('start'); // always, even if the stop failed half-way
    void stopped;
  }

  await healthzBecomes(200, 60000);
  // the same socket can send again (the pool may take a moment to reconnect)
  let r;
  const deadline = Date.now() + 15000;
  do {
    r = await a.request({ type: 'send', content: `after outage ${uniq()}` }, { timeout: 20000 });
    if (r.type === 'sent') break;
    checkError(assert, r, 'unavailable', r.ref);
    await sleep(200);
  } while (Date.now() < deadline);
  assert.equal(r.type, 'sent', `send after recovery: ${JSON.stringify(r)}`);
  await b.push('message', (f) => f.message.id === r.message.id);

  // every acknowledged message is still there, the rejected ones are not
  const minSeq = Math.min(...acked.map((m) => m.seq));
  const cu = await b.read({ type: 'catch_up', after: minSeq - 1 });
  assert.equal(cu.type, 'history', JSON.stringify(cu).slice(0, 300));
  const got = new Map(cu.messages.map((m) => [m.id, m]));
  for (const m of acked) assert.deepEqual(got.get(m.id), m, `acknowledged message ${m.seq} lost`);
  for (const content of rejected) {
    assert.ok(!cu.messages.some((m) => m.content === content && m.user_id === a.user.id), `rejected send stored: ${content}`);
  }
  // new joins work
  const d = await joined(server.wsUrl, uniq('up'));
  assert.equal((await d.request({ type: 'send', content: 'back' })).type, 'sent');
});

test('server still running', { skip }, () => checkAlive(assert, server));
