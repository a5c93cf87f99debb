// PostgreSQL stopped and restarted under a running server: `unavailable` while
// down (and /healthz 503), no acknowledged message lost, and the service comes
// back by itself.  Runs near the end (z_) since it stops the development cluster
// (or the one PROTO_DEVDB names); the cluster is always restarted in a finally.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../lib/server.mjs';
import { connect, joined, closeAll, uniq, checkError, checkAlive, httpGet, sleep } from './client.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// PROTO_DEVDB: another copy of devdb.sh (e.g. a private cluster for these tests).
const devdb = process.env.PROTO_DEVDB || path.join(root, 'sql', 'devdb.sh');

// Asynchronous, so that the pumps below keep sending while the cluster stops.
function dbAsync(cmd) {
  return new Promise((resolve, reject) => {
    execFile('bash', [devdb, cmd], { cwd: path.dirname(path.dirname(devdb)), encoding: 'utf8', timeout: 120000 },
      (err, stdout, stderr) => (err ? reject(new Error(`devdb.sh ${cmd}: ${err.message}\n${stderr}`)) : resolve(stdout.trim())));
  });
}

function db(cmd) {
  return execFileSync('bash', [devdb, cmd], { cwd: path.dirname(path.dirname(devdb)), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 }).trim();
}

let skip = false;
if (!fs.existsSync(devdb)) skip = 'sql/devdb.sh is missing';
else if (process.env.DATABASE_URL && process.env.DATABASE_URL !== db('url')) skip = 'DATABASE_URL is not the development cluster';

let server;
before(async () => { if (!skip) server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
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

// Sends from a socket at about 4 a second (under the rate limit) until stopped,
// recording every reply: the acknowledged ones must all survive the outage.
function pump(c, tag) {
  const st = { stop: false, acked: [], rejected: [], other: [] };
  st.done = (async () => {
    for (let i = 0; !st.stop; i++) {
      const content = `pump ${tag} ${i} ${uniq()}`;
      const r = await c.request({ type: 'send', content }, { timeout: 30000 });
      if (r.type === 'sent') st.acked.push(r.message);
      else if (r.type === 'error' && r.code === 'unavailable') st.rejected.push(content);
      else st.other.push(r);
      await sleep(250);
    }
  })();
  return st;
}

test('database outage: unavailable while down, nothing acknowledged lost, recovery without restart', { skip }, async () => {
  const a = await joined(server.wsUrl);
  const b = await joined(server.wsUrl);
  const acked = [];
  for (let i = 0; i < 5; i++) acked.push(await a.sendOk(`before outage ${i} ${uniq()}`));
  const pumps = [];
  for (let i = 0; i < 3; i++) pumps.push(pump(await joined(server.wsUrl), i));
  for (const t0 = Date.now(); pumps.some((p) => p.acked.length < 2) && Date.now() - t0 < 10000;) await sleep(50);
  const rejected = [];
  try {
    await dbAsync('stop');

    await healthzBecomes(503, 15000);
    // a send now is unavailable (retrying if the repo is still noticing)
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
    // a socket connecting now still gets welcome and the directory (from memory)
    const c = await connect(server.wsUrl);
    assert.ok(c.welcome.total_users >= 1);
    assert.equal((await c.findUser(a.user.name)).id, a.user.id);
    // a new name cannot be created
    const j = await c.request({ type: 'join', name: uniq('down'), ref: 'j' }, { timeout: 20000 });
    checkError(assert, j, 'unavailable', 'j');
    const h = await a.request({ type: 'history', before: 1e12, limit: 5, ref: 'h' }, { timeout: 20000 });
    if (h.type === 'error') checkError(assert, h, 'unavailable', 'h');
    // validity still comes before unavailable
    checkError(assert, await a.request({ type: 'send', content: '', ref: 'e' }), 'content_invalid', 'e');
    assert.deepEqual(await a.request({ type: 'ping', ref: 'p' }), { type: 'pong', ref: 'p' });
    assert.ok(a.isOpen() && b.isOpen());
  } finally {
    await dbAsync('start'); // always, even if a step above failed
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
  // let each pump get a few sends through after the recovery, then stop them
  const counts = pumps.map((p) => p.acked.length);
  await Promise.all(pumps.map(async (p, i) => {
    const t0 = Date.now();
    while (p.acked.length < counts[i] + 2 && Date.now() - t0 < 15000) await sleep(100);
  }));
  for (const p of pumps) p.stop = true;
  await Promise.all(pumps.map((p) => p.done));
  for (const p of pumps) {
    assert.deepEqual(p.other, [], `unexpected replies: ${JSON.stringify(p.other).slice(0, 300)}`);
    acked.push(...p.acked);
    rejected.push(...p.rejected);
  }
  assert.ok(pumps.every((p) => p.rejected.length > 0), 'every pump saw unavailable');
  process.env.PROTO_DEBUG && console.log('pumps acked/rejected:', pumps.map((p) => `${p.acked.length}/${p.rejected.length}`).join(' '));

  // every acknowledged message is still there, the rejected ones are not
  const minSeq = Math.min(...acked.map((m) => m.seq));
  const got = new Map();
  for (let after = minSeq - 1; ;) {
    const cu = await b.read({ type: 'catch_up', after });
    for (const m of cu.messages) got.set(m.id, m);
    if (!cu.more) break;
    after = cu.messages[cu.messages.length - 1].seq;
  }
  for (const m of acked) assert.deepEqual(got.get(m.id), m, `acknowledged message ${m.seq} lost`);
  const contents = new Set([...got.values()].map((m) => m.content));
  for (const content of rejected) assert.ok(!contents.has(content), `rejected send stored: ${content}`);
  // and b, joined throughout, was pushed every acknowledged message exactly once
  const pushed = b.messages().map((m) => m.id);
  for (const m of acked.filter((x) => x.seq > Math.max(...acked.slice(0, 5).map((y) => y.seq)))) {
    assert.equal(pushed.filter((id) => id === m.id).length, 1, `message ${m.seq} pushed ${pushed.filter((id) => id === m.id).length} times to b`);
  }
  // new joins work
  const d = await joined(server.wsUrl, uniq('up'));
  assert.equal((await d.request({ type: 'send', content: 'back' })).type, 'sent');
});

test('server still running', { skip }, () => checkAlive(assert, server));
