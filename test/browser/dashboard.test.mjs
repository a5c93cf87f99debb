// Browser and protocol tests of /dashboard, the live supervision tree
// (app/dashboard.c): headless Debian chromium through playwright-core for the
// page, the `ws` package for /dashboard/ws's bounds.  Screenshots at desktop
// and phone widths land in _build/screenshots/dashboard-*.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import path from 'node:path';
import {
  browserSuite, uniqueName, screenshot, screenshotDir, assertNoProblems, waitHealthy, DESKTOP, PHONE,
} from './helpers.mjs';
import { startServer } from '../lib/server.mjs';
import { joined } from '../protocol/client.mjs';

const MAX_VIEWERS = 8;        // DASH_MAX_VIEWERS in app/dashboard.h
const REASON_MAX = 95;        // DASH_REASON_MAX

const env = browserSuite();
const { page } = env;

async function openDashboard(p) {
  await p.goto(p.base + '/dashboard');
  await p.waitForSelector('#dash[data-state="live"]');
  await p.waitForSelector('li[data-name="pubsub"]');
}

// ------------------------------------------------ a raw /dashboard/ws client

class Dash {
  static open(base, options = {}) {
    const d = new Dash(base.replace(/^http/, 'ws') + '/dashboard/ws', options);
    return d.first;
  }

  constructor(url, options) {
    this.ws = new WebSocket(url, options);
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => this.ws.on('close', (code, why) => resolve({ code, why: String(why) })));
    this.first = new Promise((resolve, reject) => {
      this.ws.once('error', reject);
      this.closed.then((c) => reject(Object.assign(new Error(`closed ${c.code} ${c.why}`), c)));
      this.ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        this.frames.push(m);
        if (m.type === 'snapshot') resolve(this);
        for (const w of [...this.waiters]) if (w.pred(m)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(m);
        }
      });
    });
  }

  // The next frame for which pred holds (frames already received included).
  next(pred, what, timeoutMs = 10000, from = 0) {
    const seen = this.frames.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ pred, resolve, timer });
    });
  }

  request(obj) {
    const ref = String(Math.random()).slice(2, 10);
    const from = this.frames.length;
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify({ ...obj, ref }));
    return this.next((m) => m.type === 'reply' && (typeof obj === 'string' || m.ref === ref), `reply to ${JSON.stringify(obj).slice(0, 80)}`, 10000, from);
  }

  snapshot() { return this.frames.find((m) => m.type === 'snapshot'); }
  close() { this.ws.close(); return this.closed; }
}

// ------------------------------------------------------ the chat, at its lowest

// In a page of a second browser context: two raw sockets to /ws join; the
// first pings and sends; the second must receive the message's push.  Only
// PROTOCOL.md's frames, so that it holds whatever the chat client looks like.
async function chatWorks(p, text) {
  await p.goto(p.base + '/healthz');
  return p.evaluate(async ([text, a, b]) => {
    const open = () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/ws`);
      const pending = new Map();
      const pushes = [];
      let ref = 1;
      ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (m.type === 'welcome') resolve(client);
        if (m.ref !== undefined && pending.has(m.ref)) { pending.get(m.ref)(m); pending.delete(m.ref); }
        if (m.type === 'message') pushes.push(m.message);
      };
      ws.onerror = () => reject(new Error('socket error'));
      const client = {
        pushes,
        ask(type, fields = {}) {
          const r = ref++;
          return new Promise((ok) => { pending.set(r, ok); ws.send(JSON.stringify({ type, ref: r, ...fields })); });
        },
        async retry(type, fields) { // `unavailable`: the database is briefly away
          for (let i = 0; ; i++) {
            const m = await this.ask(type, fields);
            if (m.type !== 'error' || m.code !== 'unavailable' || i > 20) return m;
            await new Promise((r) => setTimeout(r, 250));
          }
        },
        close() { ws.close(); },
      };
    });
    const alice = await open();
    const bob = await open();
    const pong = await alice.ask('ping');
    const ja = await alice.retry('join', { name: a });
    const jb = await bob.retry('join', { name: b });
    const sent = await alice.retry('send', { content: text });
    const deadline = Date.now() + 10000;
    while (!bob.pushes.some((m) => m.content === text) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const result = { pong: pong.type, joined: [ja.type, jb.type], sent: sent.type,
      pushed: bob.pushes.some((m) => m.content === text) };
    alice.close();
    bob.close();
    return result;
  }, [text, uniqueName('dash_a'), uniqueName('dash_b')]);
}

// ---------------------------------------------------------------- tests

test('the dashboard draws the tree, crashes the pubsub from a button, shows the restart, and the chat still works', { timeout: 90000 }, async () => {
  const dash = await page();
  await openDashboard(dash);
  // Loopback: controls are on.
  await dash.waitForSelector('#dash[data-mode="control"]');
  assert.equal(await dash.isVisible('#controls'), true);

  // The tree of DESIGN.md: the root's children, the repo pool under repo.
  for (const child of ['repo', 'pubsub', 'presence', 'sessions', 'endpoint']) {
    assert.ok(await dash.$(`li[data-name="chatter"] > ul > li[data-name="${child}"]`), `${child} under chatter`);
  }
  assert.ok(await dash.$('li[data-name="repo"] > ul > li[data-name="repo.0"]'), 'repo.0 under repo');
  assert.ok(await dash.$('li[data-name="endpoint"] > ul > li[data-name="acceptor.0"]'), 'acceptor.0 under endpoint');
  const schedRows = await dash.$$eval('#schedulers tr', (rows) => rows.length);
  assert.ok(schedRows >= 1, 'one row per scheduler');
  // What the actors tell of themselves (act_process_info) arrives within a
  // tick or two: the root's strategy and intensity (main.c: one_for_one, 3
  // in 5 s), that it traps exits; and the schedulers' run queue, turns/s
  // and idle time.
  await dash.waitForFunction(() => {
    const meta = document.querySelector('li[data-name="chatter"] > .row .meta').textContent;
    return /one_for_one · 3 in 5 s/.test(meta) && /traps exits/.test(meta);
  });
  assert.match(await dash.textContent('li[data-name="repo"] > .row .meta'), /one_for_one · 10 in 10 s/);
  await dash.waitForFunction(() => [...document.querySelectorAll('#schedulers tr')].every((tr) =>
    [4, 5, 6].every((k) => /^\d+%?$/.test(tr.children[k].textContent))));

  // Chat works before, and its sessions are folded into the count.
  const chat = await page();
  const before_ = await chatWorks(chat, `before the crash ${uniqueName('m')}`);
  assert.deepEqual(before_, { pong: 'pong', joined: ['joined', 'joined'], sent: 'sent', pushed: true });

  // Crash the pubsub with a reason of our own.
  const oldPid = await dash.getAttribute('li[data-name="pubsub"]', 'data-pid');
  await dash.fill('#crash-text', 'crashed by the browser test');
  await dash.click('li[data-name="pubsub"] > .row .act-crash');
  await dash.waitForFunction((old) => {
    const li = document.querySelector('li[data-name="pubsub"]');
    return li && li.dataset.pid !== old && li.querySelector('.row').dataset.restarts === '1';
  }, oldPid);
  await dash.waitForSelector('#restart-log li[data-child="pubsub"]');
  const line = await dash.textContent('#restart-log li[data-child="pubsub"]');
  assert.match(line, /chatter restarted pubsub as <\d+\.\d+\.\d+> \(restart 1\)/);
  assert.match(await dash.textContent('#control-result'), /crash pubsub .*: done/);
  assert.match(env.server.logs(), /crashed by the browser test/);
  // Still under the root, with its name.
  assert.ok(await dash.$('li[data-name="chatter"] > ul > li[data-name="pubsub"]'));

  // The chat still works through the restarted pubsub (a new pair of sockets
  // in the second context: join, send, the other one gets the push).
  const after_ = await chatWorks(chat, `after the crash ${uniqueName('m')}`);
  assert.deepEqual(after_, { pong: 'pong', joined: ['joined', 'joined'], sent: 'sent', pushed: true });

  // The whole page: the tree, the schedulers and the restart log below.
  await dash.screenshot({ path: path.join(screenshotDir, 'dashboard-desktop.png'), fullPage: true });
  assertNoProblems(assert, dash);
});

test('killing a session from the folded list: its supervisor restarts it and the log says so', { timeout: 60000 }, async () => {
  const dash = await page();
  await openDashboard(dash);
  // A chat page keeps a session open (its client connects on load).
  const chat = await page();
  await chat.goto(chat.base + '/');
  await dash.waitForSelector('#sessions-fold li.session');
  const count = await dash.textContent('#sessions-fold > .row .name');
  assert.match(count, /^[1-9]\d* sessions?$/);
  const pid = await dash.getAttribute('#sessions-fold li.session', 'data-pid');
  await dash.click(`#sessions-fold li.session[data-pid="${pid}"] .act-kill`);
  await dash.waitForSelector('#restart-log li[data-child="session"]');
  assert.match(await dash.textContent('#restart-log li[data-child="session"]'), /sessions restarted 1 session/);
  assertNoProblems(assert, dash);
});

test('phone width: one column, nothing wider than the screen', { timeout: 60000 }, async () => {
  const dash = await page(PHONE);
  await openDashboard(dash);
  const widths = await dash.evaluate(() => ({ doc: document.documentElement.scrollWidth, win: window.innerWidth }));
  assert.ok(widths.doc <= widths.win, `page ${widths.doc}px wide in a ${widths.win}px window`);
  // The pubsub's crash button is on screen and big enough to tap.
  const box = await dash.locator('li[data-name="pubsub"] > .row .act-crash').boundingBox();
  assert.ok(box && box.x + box.width <= widths.win && box.height >= 24, `crash button ${JSON.stringify(box)}`);
  await screenshot(dash, 'dashboard-phone.png');
  await dash.click('li[data-name="presence"] > .row .act-kill');
  await dash.waitForSelector('#restart-log li[data-child="presence"]');
  await dash.locator('li[data-name="presence"]').scrollIntoViewIfNeeded();
  await screenshot(dash, 'dashboard-phone-restart.png');
  assertNoProblems(assert, dash);
});

// The sessions are folded without walking the process table every time:
// their count comes from their supervisor's published count of children,
// so a join or a leave shows at the next tick, while the walk (a "sweep")
// runs at most once a second (DASH_SWEEP_MS) and the snapshots between are
// "refreshes" of the ~20 actors drawn (/metrics counts both).
async function dashCounters(base) {
  const text = await (await fetch(base + '/metrics')).text();
  const get = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1]);
  return { sweeps: get('chatter_dashboard_sweeps_total'), refreshes: get('chatter_dashboard_refreshes_total') };
}

test('/dashboard/ws: sessions counted as they come and go; refreshes between sweeps', { timeout: 60000 }, async () => {
  // A server of its own: the other tests' sessions, still ending, would
  // move the count under it.
  const own = await startServer();
  try {
    const d = await Dash.open(own.base);
    const base = d.snapshot().sessions.count;
    assert.equal(base, 0);
    const clients = [];
    for (let i = 0; i < 5; i++) clients.push(await joined(own.wsUrl, uniqueName('fold')));
    await d.next((m) => m.sessions?.count === base + 5, 'five sessions more in a delta');
    const c0 = await dashCounters(own.base);
    assert.ok(Number.isInteger(c0.sweeps) && Number.isInteger(c0.refreshes), JSON.stringify(c0));
    let c1 = c0;
    for (const dl = Date.now() + 20000; c1.refreshes - c0.refreshes < 10 && Date.now() < dl;) {
      await new Promise((r) => setTimeout(r, 200)); // the viewer's tick: what is counted happens on it
      c1 = await dashCounters(own.base);
    }
    const refreshes = c1.refreshes - c0.refreshes, sweeps = c1.sweeps - c0.sweeps;
    assert.ok(refreshes >= 10, `refreshes ${refreshes}, sweeps ${sweeps}: every snapshot walked the table`);
    assert.ok(sweeps * 2 < refreshes, `refreshes ${refreshes}, sweeps ${sweeps}`);
    // A resync between sweeps tells the same count.
    const from = d.frames.length;
    d.ws.send(JSON.stringify({ type: 'resync' }));
    const again = await d.next((m) => m.type === 'snapshot', 'a snapshot after resync', 10000, from);
    assert.equal(again.sessions.count, base + 5);
    // Two leave: the count follows.
    const at = d.frames.length;
    await clients[0].close();
    await clients[1].close();
    await d.next((m) => m.sessions?.count === base + 3, 'two sessions fewer in a delta', 10000, at);
    for (const c of clients.slice(2)) await c.close();
    await d.close();
  } finally {
    await own.stop();
  }
});

test('/dashboard/ws: snapshot then deltas, chaos set live, bad requests change nothing', { timeout: 60000 }, async () => {
  const d = await Dash.open(env.server.base);
  const snap = d.snapshot();
  assert.equal(snap.v, 1);
  assert.equal(snap.mode, 'control');
  assert.ok(snap.actors.some((a) => a.name === 'presence' && /^<\d+\.\d+\.\d+>$/.test(a.pid)));
  const pubsub = snap.actors.find((a) => a.name === 'pubsub');
  // Supervisors' flags come once the actor has answered (a tick or two).
  const flags = await d.next((m) => m.type === 'delta'
    && (m.upd || []).some((a) => a.name === 'sessions' && a.strategy), 'the sessions supervisor\'s flags');
  const sessionsSup = flags.upd.find((a) => a.name === 'sessions');
  assert.deepEqual([sessionsSup.strategy, sessionsSup.intensity, sessionsSup.period_ms, sessionsSup.trap_exit],
    ['one_for_one', 10000, 1000, true]);

  // Chaos goes through, is seen in a delta, and comes back to 0.
  assert.equal((await d.request({ type: 'chaos', value: 0.25 })).ok, true);
  const seen = await d.next((m) => m.type === 'delta' && m.chaos === 0.25, 'a delta with chaos 0.25');
  assert.ok(seen.v > 1);
  assert.equal((await d.request({ type: 'chaos', value: 0 })).ok, true);
  await d.next((m) => m.type === 'delta' && m.chaos === 0, 'a delta with chaos 0');

  // Versions count up by one: no gap.
  const vs = d.frames.filter((m) => m.type !== 'reply').map((m) => m.v);
  vs.forEach((v, i) => assert.equal(v, i + 1, `frame versions ${vs}`));

  // Each of these is refused with a reason, and nothing happens.
  const bad = [
    'not json',
    '[1,2]',
    { type: 'dance' },
    { type: 'chaos', value: 1.01 },
    { type: 'chaos', value: -0.1 },
    { type: 'chaos', value: '0.5' },
    { type: 'exit', pid: 'pubsub', reason: 'kill' },
    { type: 'exit', pid: '<0.1>', reason: 'kill' },
    { type: 'exit', pid: '<0.1.99999999999>', reason: 'kill' },
    { type: 'exit', pid: pubsub.pid, reason: 'normal' },
    { type: 'exit', pid: pubsub.pid, reason: 'crash' },
    { type: 'exit', pid: pubsub.pid, reason: 'crash', text: 'x'.repeat(REASON_MAX + 1) },
    { type: 'exit', pid: pubsub.pid, reason: 'crash', text: 'line\nbreak' },
  ];
  for (const b of bad) {
    const r = await d.request(b);
    assert.equal(r.ok, false, JSON.stringify(b));
    assert.equal(r.error, 'bad_request', JSON.stringify(b));
    assert.ok(r.detail.length > 0);
  }
  // A dead pid: noproc.
  const dead = pubsub.pid.replace(/\.(\d+)>$/, (_, g) => `.${Number(g) + 1000}>`);
  assert.equal((await d.request({ type: 'exit', pid: dead, reason: 'kill' })).error, 'noproc');
  // The longest crash text is accepted (the pubsub restarts).
  const ok = await d.request({ type: 'exit', pid: pubsub.pid, reason: 'crash', text: 'y'.repeat(REASON_MAX) });
  assert.equal(ok.ok, true);
  const restart = await d.next((m) => m.type === 'delta' && (m.restarts || []).some((e) => e.child === 'pubsub'), 'the restart');
  assert.ok(restart.add.some((a) => a.name === 'pubsub' && a.restarts >= 1));
  assert.ok(restart.del.includes(pubsub.pid));
  // Only the pubsub went: nothing else was deleted by the bad requests.
  const deleted = d.frames.filter((m) => m.type === 'delta').flatMap((m) => m.del || []);
  const named = new Map(snap.actors.map((a) => [a.pid, a.name]));
  assert.deepEqual(deleted.filter((p) => named.get(p)), [pubsub.pid]);

  // A page of another site may not open the socket (its controls would work
  // over loopback); our own page may (routes.c's check, as for /ws); an
  // Origin past HTTP_ORIGIN_MAX (511 bytes) is a bad request.
  const host = new URL(env.server.base).host;
  await assert.rejects(Dash.open(env.server.base, { origin: 'http://evil.example' }), /403/);
  await assert.rejects(Dash.open(env.server.base, { origin: `http://${host}.evil.example` }), /403/);
  const ours = await Dash.open(env.server.base, { origin: `http://${host}` });
  await ours.close();
  const long = `http://${'a'.repeat(511 - 7 - host.length - 1)}.${host}`;
  assert.equal(long.length, 511);
  await assert.rejects(Dash.open(env.server.base, { origin: long }), /403/); // fits: compared, refused
  await assert.rejects(Dash.open(env.server.base, { origin: long + 'a' }), /400/);

  // resync: a whole snapshot at once, with the next version.
  const last = d.frames.filter((m) => m.type !== 'reply').at(-1).v;
  d.ws.send(JSON.stringify({ type: 'resync' }));
  const again = await d.next((m) => m.type === 'snapshot' && m.v > last, 'a snapshot after resync');
  assert.equal(again.v, d.frames.filter((m) => m.type !== 'reply' && m !== again).at(-1).v + 1);
  await d.close();
  await waitHealthy(env.server.base);
});

test('CHATTER_DASHBOARD=read: no controls, refused with read_only; at most 8 viewers; =off: 404', { timeout: 90000 }, async () => {
  const server = await startServer({ env: { CHATTER_DASHBOARD: 'read' } });
  try {
    // The viewer bound, on a server no page has used yet: 8 are served, the
    // 9th is closed with 1008.
    const viewers = [];
    for (;;) {
      try {
        viewers.push(await Dash.open(server.base));
      } catch (err) {
        assert.equal(err.code, 1008, `refused with ${err.code} ${err.why}`);
        break;
      }
      assert.ok(viewers.length <= MAX_VIEWERS, `more than ${MAX_VIEWERS} viewers accepted`);
    }
    assert.equal(viewers.length, MAX_VIEWERS);
    const d = viewers[0];
    assert.equal(d.snapshot().mode, 'read');
    const pubsub = d.snapshot().actors.find((a) => a.name === 'pubsub');
    const r = await d.request({ type: 'exit', pid: pubsub.pid, reason: 'kill' });
    assert.deepEqual([r.ok, r.error], [false, 'read_only']);
    assert.equal((await d.request({ type: 'chaos', value: 0.5 })).error, 'read_only');
    // A place freed is a place taken (once the server has seen the close).
    await viewers.pop().close();
    for (let i = 0; ; i++) {
      try {
        viewers.push(await Dash.open(server.base));
        break;
      } catch (err) {
        if (i > 50) throw err;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    for (const v of viewers) await v.close();
    assert.doesNotMatch(server.logs(), /exit\(/, 'no exit signal was sent');

    // The page: no controls at all.
    const p = await page(DESKTOP, server.base);
    for (let i = 0; ; i++) { // the raw viewers above may still be leaving
      await p.goto(p.base + '/dashboard');
      try {
        await p.waitForSelector('li[data-name="pubsub"]', { timeout: 3000 });
        break;
      } catch (err) {
        if (i > 10) throw err;
      }
    }
    assert.equal(await p.getAttribute('#dash', 'data-mode'), 'read');
    assert.equal(await p.isVisible('#controls'), false);
    assert.equal(await p.$$eval('.act', (b) => b.length), 0, 'no control buttons');
    await screenshot(p, 'dashboard-read-only.png');
  } finally {
    await server.stop();
  }

  const off = await startServer({ env: { CHATTER_DASHBOARD: 'off' } });
  try {
    assert.equal((await fetch(off.base + '/dashboard')).status, 404);
    const r = await fetch(off.base + '/dashboard/ws', {
      headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13' },
    }).catch((e) => e);
    assert.ok(r instanceof Error || r.status === 404, `off: /dashboard/ws answered ${r.status}`);
  } finally {
    await off.stop();
  }
});
