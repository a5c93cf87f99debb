// "A welcome or joined snapshot is consistent with the pushes that follow it:
// a client that applies every later diff to the snapshot has the true state."
// Observers connect while names churn online and offline; each applies every
// push to its welcome, and at the end all agree with a fresh welcome.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { connect, closeAll, uniq, checkAlive } from './client.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await closeAll(); await server?.stop(); });

// Client-side state: Phoenix syncDiff (joins, then leaves, by phx_ref) applied
// to a snapshot that only says online/offline per name.
class View {
  constructor(snap) {
    this.users = new Map();
    for (const u of snap.users) this.users.set(u.name, { id: u.id, refs: new Set(), snapOnline: u.online });
    this.errors = [];
  }
  online(name) { const u = this.users.get(name); return !!u && (u.refs.size > 0 || u.snapOnline); }
  onlineCount() { let n = 0; for (const k of this.users.keys()) if (this.online(k)) n++; return n; }
  apply(f) {
    if (f.type === 'user_created') {
      if (!this.users.has(f.user.name)) this.users.set(f.user.name, { id: f.user.id, refs: new Set(), snapOnline: false });
      if (f.total_users !== this.users.size) this.errors.push(`user_created total_users ${f.total_users} != ${this.users.size}`);
    } else if (f.type === 'presence_diff') {
      for (const [name, { metas }] of Object.entries(f.joins)) {
        if (!this.users.has(name)) this.users.set(name, { id: metas[0].user_id, refs: new Set(), snapOnline: false });
        for (const m of metas) this.users.get(name).refs.add(m.phx_ref);
      }
      for (const [name, { metas }] of Object.entries(f.leaves)) {
        const u = this.users.get(name);
        if (!u) { this.errors.push(`leave of unknown ${name}`); continue; }
        for (const m of metas) {
          if (u.refs.has(m.phx_ref)) u.refs.delete(m.phx_ref);
          else if (u.snapOnline) u.snapOnline = false;
          else this.errors.push(`leave of ${name} ${m.phx_ref}, not online here`);
        }
      }
      if (f.total_users !== this.users.size) this.errors.push(`presence_diff total_users ${f.total_users} != ${this.users.size}`);
      if (f.online_count !== this.onlineCount()) this.errors.push(`presence_diff online_count ${f.online_count} != ${this.onlineCount()}`);
    }
  }
}

test('snapshots + pushes = the true state, under churn', async () => {
  const names = Array.from({ length: 8 }, () => uniq('cs'));
  // create the users first, so that churn below is only online/offline
  for (const n of names) { const c = await connect(server.wsUrl); await c.joinOk(n); await c.close(); }
  const observers = [];
  let stop = false;
  const workers = names.map(async (name, k) => {
    let round = 0;
    while (!stop) {
      const c = await connect(server.wsUrl);
      const r = await c.join(name);
      if (r.type !== 'joined') { await c.close(); continue; } // the previous socket not yet seen gone
      if (k % 3 === 0) await c.request({ type: 'leave' });
      if (k % 3 === 1 && round % 2 === 0) { // a take-over
        const t = await connect(server.wsUrl);
        const r2 = await t.join(name, r.token);
        if (r2.type !== 'joined') throw new Error(`take-over: ${JSON.stringify(r2)}`);
        await c.close();
        if (stop) return;
        await t.close();
      } else {
        await c.close();
      }
      round++;
    }
  });
  const churnSeen = () => observers[0].pushes('presence_diff').filter((d) => names.some((n) => n in d.joins || n in d.leaves)).length;
  const deadline = Date.now() + 8000;
  for (let i = 0; (i < 12 || churnSeen() < 30) && Date.now() < deadline; i++) {
    observers.push(await connect(server.wsUrl));
    for (let j = 0; j < 10; j++) await observers[i].request({ type: 'ping' }); // paces on round trips
  }
  stop = true;
  await Promise.all(workers);
  // the last names to go offline: wait until every observer has seen each name settle
  await Promise.all(observers.map((o) => o.settle(400)));
  const fresh = await connect(server.wsUrl);
  const churn = churnSeen();
  assert.ok(churn >= 10, `only ${churn} diffs of churn seen`);
  const truth = new Map(fresh.welcome.users.map((u) => [u.name, u.online]));
  process.env.PROTO_DEBUG && console.log('churn diffs seen by the first observer:', churn);
  for (const [i, o] of observers.entries()) {
    const v = new View(o.welcome);
    for (const f of o.frames.slice(1)) v.apply(f);
    assert.deepEqual(v.errors, [], `observer ${i}: ${v.errors.slice(0, 5).join('; ')}`);
    for (const n of names) assert.equal(v.online(n), truth.get(n), `observer ${i}: online of ${n}`);
    assert.equal(v.users.size, fresh.welcome.total_users, `observer ${i}: total_users`);
    assert.equal(v.onlineCount(), fresh.welcome.online_count, `observer ${i}: online_count`);
  }
});

test('server still running', () => checkAlive(assert, server));
