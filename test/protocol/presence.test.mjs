// Pushes: presence_diff to home and joined sockets when a name comes online or
// goes offline, user_created on a new name, snapshots consistent with diffs.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  connect, joined, closeAll, uniq, checkUser, checkAlive, UUID_RE, ISO_RE,
} from './client.mjs';

let server;
before(async () => { server = await startServer(); });
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

test('a new name: user_created and presence_diff (joins) to home and joined sockets', async () => {
  const home = await connect(server.wsUrl);
  const other = await joined(server.wsUrl);
  const hs = home.mark(); const os = other.mark();
  const name = uniq('pn');
  const n = await connect(server.wsUrl);
  const r = await n.joinOk(name);
  for (const [s, since] of [[home, hs], [other, os]]) {
    const uc = await s.push('user_created', (f) => f.user && f.user.name === name, { since });
    checkUser(assert, uc.user);
    assert.equal(uc.user.id, r.user.id);
    assert.ok(Number.isInteger(uc.total_users));
    const d = await s.push('presence_diff', joinsOf(name), { since });
    checkDiff(d);
    assert.deepEqual(d.joins[name].metas.map((m) => m.user_id), [r.user.id]);
    assert.ok(!(name in d.leaves));
  }
  // the joined socket itself is told too
  await n.push('presence_diff', joinsOf(name));
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

test('reusing an offline name: presence_diff but no user_created', async () => {
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
  await home.push('presence_diff', joinsOf(name), { since });
  await home.settle();
  assert.equal(home.pushes('user_created', since).filter((f) => f.user.name === name).length, 0);
});

test('no presence_diff for requests that change nothing (failed joins)', async () => {
  const a = await joined(server.wsUrl);
  const home = await connect(server.wsUrl);
  const since = home.mark();
  const b = await connect(server.wsUrl);
  assert.equal((await b.join(a.user.name)).code, 'name_taken');
  assert.equal((await b.join('<bad>')).code, 'name_invalid');
  assert.equal((await a.join(uniq())).code, 'already_joined');
  await home.settle();
  const diffs = home.pushes('presence_diff', since).filter((d) => a.user.name in d.joins || a.user.name in d.leaves);
  assert.equal(diffs.length, 0, JSON.stringify(diffs));
});

test('welcome + every later push = the true state (total_users, online_count)', async () => {
  const obs = await connect(server.wsUrl);
  const users = new Map(obs.welcome.users.map((u) => [u.name, { ...u }]));
  let applied = 0;
  const apply = (f) => {
    if (f.type === 'user_created') {
      if (!users.has(f.user.name)) users.set(f.user.name, { ...f.user });
      assert.equal(f.total_users, users.size, `user_created total_users ${JSON.stringify(f)}`);
    } else if (f.type === 'presence_diff') {
      for (const name of Object.keys(f.leaves)) if (!(name in f.joins) && users.has(name)) users.get(name).online = false;
      for (const name of Object.keys(f.joins)) {
        if (!users.has(name)) users.set(name, { name, id: f.joins[name].metas[0].user_id });
        users.get(name).online = true;
      }
      assert.equal(f.total_users, users.size, `presence_diff total_users ${JSON.stringify(f).slice(0, 400)}`);
      const online = [...users.values()].filter((u) => u.online).length;
      assert.equal(f.online_count, online, `presence_diff online_count ${JSON.stringify(f).slice(0, 400)}`);
    }
  };
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
  for (; applied < obs.frames.length; applied++) apply(obs.frames[applied]);
  const fresh = await connect(server.wsUrl);
  for (const n of names) {
    const want = fresh.welcome.users.find((u) => u.name === n);
    assert.ok(want && users.get(n), `user ${n} missing`);
    assert.equal(users.get(n).online, want.online, `online of ${n}`);
    assert.equal(users.get(n).id, want.id);
  }
  assert.equal(users.size, fresh.welcome.total_users);
  assert.equal([...users.values()].filter((u) => u.online).length, fresh.welcome.online_count);
  assert.deepEqual(names.map((n) => users.get(n).online), [false, true, true, true]);
});

test('server still running', () => checkAlive(assert, server));
