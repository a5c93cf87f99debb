// Pushes: presence_diff to home and joined sockets when a name comes online or
// goes offline (a new name too: protocol 2 has no user_created), counts and
// pages consistent with diffs.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, joined, closeAll, uniq, checkUser, checkAlive, readDirectory, UUID_RE, ISO_RE,
} from './client.mjs';

let server;
before(async () => { server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '0' } }); });
afterEach(closeAll);
after(async () => { await closeAll(); await server?.stop(); });

function checkDiff(d) {
  assert.equal(typeof d.joins, 'object', JSON.stringify(d));
  assert.equal(typeof d.leaves, 'object', JSON.stringify(d));
  assert.ok(Number.isInteger(d.total_users), JSON.stringify(d));
  assert.ok(Number.isInteger(d.online_count), JSON.stringify(d));
  for (const side of [d.joins, d.leaves]) {
    for (const [name, v] of Object.entries(side)) {
      assert.ok(Array.isArray(v.metas) && v.metas.length > 0, `metas of ${name}: ${JSON.stringify(d)}`);
      for (const m of v.metas) {
        assert.match(m.user_id, UUID_RE);
        assert.equal(m.name, name);
        assert.match(m.joined_at, ISO_RE);
        assert.equal(typeof m.phx_ref, 'string');
      }
    }
  }
}

const joinsOf = (name) => (d) => d.joins && name in d.joins;
const leavesOf = (name) => (d) => d.leaves && name in d.leaves;

test('a new name: a presence_diff (joins) whose meta names the new user, to home and joined sockets; no user_created', async () => {
  const home = await connect(server.wsUrl);
  const other = await joined(server.wsUrl);
  await home.push('presence_diff', joinsOf(other.user.name));
  const hs = home.mark(); const os = other.mark();
  const before = home.pushes('presence_diff').at(-1);
  const name = uniq('pn');
  const n = await connect(server.wsUrl);
  const r = await n.joinOk(name);
  for (const [s, since] of [[home, hs], [other, os]]) {
    const d = await s.push('presence_diff', joinsOf(name), { since });
    checkDiff(d);
    assert.deepEqual(d.joins[name].metas.map((m) => m.user_id), [r.user.id]);
    assert.deepEqual(d.joins[name].metas.map((m) => m.name), [name]);
    assert.ok(!(name in d.leaves));
    assert.equal(d.total_users, before.total_users + 1, 'the new user is counted');
    assert.equal(d.online_count, before.online_count + 1);
  }
  // the joined socket itself is told too
  await n.push('presence_diff', joinsOf(name));
  for (const s of [home, other, n]) {
    await s.settle(100);
    assert.equal(s.frames.filter((f) => f.type === 'user_created').length, 0, 'protocol 2 has no user_created');
  }
  // and the directory lists it online
  const u = await home.findUser(name);
  checkUser(assert, u);
  assert.deepEqual(u, { id: r.user.id, name, online: true });
});

test('going offline by leave and by closing the socket: presence_diff (leaves) to everyone', async () => {
  const home = await connect(server.wsUrl);
  const other = await joined(server.wsUrl);
  const a = await joined(server.wsUrl);
  const b = await joined(server.wsUrl);
  for (const s of [home, other]) {
    await s.push('presence_diff', joinsOf(a.user.name));
    await s.push('presence_diff', joinsOf(b.user.name));
  }
  let hs = home.mark(); let os = other.mark(); const bs = b.mark();
  assert.equal((await a.request({ type: 'leave' })).type, 'left');
  for (const [s, since] of [[home, hs], [other, os], [b, bs], [a, 0]]) {
    const d = await s.push('presence_diff', leavesOf(a.user.name), { since });
    checkDiff(d);
    assert.equal(d.leaves[a.user.name].metas[0].user_id, a.user.id);
    assert.ok(!(a.user.name in d.joins));
  }
  hs = home.mark(); os = other.mark(); const as = a.mark();
  await b.close();
  for (const [s, since] of [[home, hs], [other, os], [a, as]]) {
    const d = await s.push('presence_diff', leavesOf(b.user.name), { since });
    checkDiff(d);
  }
  // a terminated TCP connection (no close frame) too
  const c = await joined(server.wsUrl);
  await home.push('presence_diff', joinsOf(c.user.name));
  hs = home.mark();
  c.ws.terminate();
  await home.push('presence_diff', leavesOf(c.user.name), { since: hs, timeout: 10000 });
});

test('reusing an offline name: presence_diff, same id, the total unchanged', async () => {
  const name = uniq('pr');
  const a = await connect(server.wsUrl);
  const r1 = await a.joinOk(name);
  const home = await connect(server.wsUrl);
  let since = home.mark();
  await a.close();
  await home.push('presence_diff', leavesOf(name), { since });
  since = home.mark();
  const b = await connect(server.wsUrl);
  const r2 = await b.joinOk(name);
  assert.equal(r2.user.id, r1.user.id);
  const d = await home.push('presence_diff', joinsOf(name), { since });
  const left = home.pushes('presence_diff').find(leavesOf(name));
  assert.equal(d.total_users, left.total_users, 'no new user');
  assert.equal((await home.findUser(name)).id, r1.user.id);
});

test('no presence_diff for requests that change nothing (failed joins)', async () => {
  const home = await connect(server.wsUrl);
  const a = await joined(server.wsUrl);
  await home.push('presence_diff', joinsOf(a.user.name)); // a's own join, first
  const since = home.mark();
  const b = await connect(server.wsUrl);
  assert.equal((await b.join(a.user.name)).code, 'name_taken');
  assert.equal((await b.join('<bad>')).code, 'name_invalid');
  assert.equal((await a.join(uniq())).code, 'already_joined');
  await home.settle();
  const diffs = home.pushes('presence_diff', since).filter((d) => a.user.name in d.joins || a.user.name in d.leaves);
  assert.equal(diffs.length, 0, JSON.stringify(diffs));
});

test('directory read + every later push = the true state (total_users, online_count)', async () => {
  const obs = await connect(server.wsUrl);
  const view = await readDirectory(obs);
  assert.deepEqual(view.errors, []);
  const names = [];
  const socks = [];
  for (let i = 0; i < 4; i++) { const s = await joined(server.wsUrl); socks.push(s); names.push(s.user.name); }
  await socks[0].request({ type: 'leave' });
  await socks[1].close();
  const back = await connect(server.wsUrl);
  await obs.push('presence_diff', leavesOf(names[1]));
  await back.joinOk(names[1]);
  await obs.push('presence_diff', joinsOf(names[1]), { since: obs.frames.findIndex((f) => f.type === 'presence_diff' && leavesOf(names[1])(f)) + 1 });
  await obs.push('presence_diff', leavesOf(names[0]));
  await obs.settle();
  for (const f of obs.frames.slice(view.applied)) view.apply(f);
  assert.deepEqual(view.errors, []);
  const truth = await readDirectory(await connect(server.wsUrl));
  for (const n of names) {
    assert.ok(truth.users.has(n) && view.users.has(n), `user ${n} missing`);
    assert.equal(view.isOnline(n), truth.isOnline(n), `online of ${n}`);
    assert.equal(view.users.get(n).id, truth.users.get(n).id);
  }
  assert.equal(view.total, truth.total);
  assert.equal(view.online, truth.online);
  assert.equal(view.users.size, truth.total);
  assert.deepEqual(names.map((n) => view.isOnline(n)), [false, true, true, true]);
});

test('server still running', () => checkAlive(assert, server));
