// dashboard.js: the live supervision tree of /dashboard.
//
// One WebSocket to /dashboard/ws (protocol at the top of app/dashboard.c):
// a snapshot, then deltas of what changed.  The tree is kept as one <li>
// per actor, keyed by pid and updated in place, so that a button under the
// pointer is never replaced while it is being clicked; at 5 updates a
// second over ~25 rows the cost is a few text nodes per frame.
// Controls (exit signals, CHATTER_CHAOS) appear only when the server says
// this socket may use them (mode "control").

const $ = (id) => document.getElementById(id);
const dash = $('dash');
const treeEl = $('tree');

const LOG_MAX = 200;          // restart log lines kept in the page
const RETRY_MAX_MS = 5000;    // reconnect back-off ceiling

let ws = null;
let version = 0;
let mode = 'read';
let retryMs = 250;
let nextRef = 1;
const actors = new Map();     // pid -> actor (as the server sent it)
const rows = new Map();       // pid -> {li, row, kids, cells}
let sessions = null;
let restartsLogged = 0;

// "<sched.slot.gen>": children are drawn in slot order, which is start
// order at boot; a restarted child usually gets its old slot back.
function slotOf(pid) { return Number(pid.slice(1, -1).split('.')[1]); }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setStatus(state, text) {
  dash.dataset.state = state;
  $('status-text').textContent = text;
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

// ------------------------------------------------------------ controls

const pending = new Map(); // ref -> what was asked, for the result line

function request(obj, what) {
  const ref = String(nextRef++);
  pending.set(ref, what);
  send({ ...obj, ref });
}

function exitButtons(pid) {
  const box = el('span', 'acts');
  for (const reason of ['kill', 'shutdown', 'crash']) {
    const b = el('button', `act act-${reason}`, reason);
    b.type = 'button';
    b.dataset.reason = reason;
    b.title = reason === 'crash' ? 'exit with the crash reason above' : `exit(${reason})`;
    b.addEventListener('click', () => {
      const a = actors.get(pid) || { name: '', behaviour: 'session' };
      const label = a.name || a.behaviour;
      const msg = { type: 'exit', pid, reason };
      if (reason === 'crash') msg.text = $('crash-text').value.trim() || 'crashed from the dashboard';
      request(msg, `${reason} ${label} ${pid}`);
    });
    box.append(b);
  }
  return box;
}

$('chaos').addEventListener('input', () => {
  $('chaos-value').textContent = Number($('chaos').value).toFixed(2);
});
$('chaos').addEventListener('change', () => {
  request({ type: 'chaos', value: Number($('chaos').value) }, `chaos ${Number($('chaos').value).toFixed(2)}`);
});

function onReply(m) {
  const what = pending.get(m.ref) || 'request';
  pending.delete(m.ref);
  const out = $('control-result');
  out.dataset.ok = String(m.ok);
  out.textContent = m.ok ? `${what}: done` : `${what}: ${m.error} (${m.detail})`;
}

// ---------------------------------------------------------------- tree

// The four figures of a row: columns of the row's grid on a wide screen
// (display: contents), one wrapped line under the name on a phone.
function figs(...cells) {
  const box = el('span', 'figs');
  box.append(...cells);
  return box;
}

function makeRow(a) {
  const li = el('li', 'node');
  li.dataset.pid = a.pid;
  const row = el('div', 'row');
  const who = el('span', 'who');
  const name = el('span', 'name');
  const meta = el('span', 'meta');
  who.append(name, meta);
  const cells = {
    name, meta,
    sched: el('span', 'num sched'),
    mailbox: el('span', 'num mailbox'),
    rate: el('span', 'num rate'),
    restarts: el('span', 'num restarts'),
  };
  row.append(who, figs(cells.sched, cells.mailbox, cells.rate, cells.restarts));
  if (mode === 'control') row.append(exitButtons(a.pid));
  const kids = el('ul', 'kids');
  li.append(row, kids);
  const r = { li, row, kids, cells };
  rows.set(a.pid, r);
  return r;
}

function supText(a) {
  if (a.behaviour !== 'supervisor') return '';
  if (a.strategy == null) return ''; // the runtime does not tell yet
  return ` · ${a.strategy} · ${a.intensity} in ${a.period_ms / 1000} s`;
}

// What only the actor itself can tell (act_process_info), once it has.
function relText(a) {
  if (a.links == null) return '';
  const parts = [`links ${a.links}`];
  if (a.monitors) parts.push(`monitors ${a.monitors}`);
  if (a.monitored_by) parts.push(`monitored by ${a.monitored_by}`);
  if (a.trap_exit) parts.push('traps exits');
  return ` · ${parts.join(' · ')}`;
}

function fillRow(r, a) {
  const label = a.name || a.behaviour;
  r.li.dataset.name = a.name;
  r.li.dataset.behaviour = a.behaviour;
  r.li.classList.toggle('is-sup', a.behaviour === 'supervisor');
  r.cells.name.textContent = label;
  r.cells.meta.textContent = `${a.name ? a.behaviour + ' · ' : ''}${a.pid}${supText(a)}${relText(a)}`;
  r.cells.meta.title = r.cells.meta.textContent;
  r.cells.sched.textContent = `s${a.sched}`;
  r.cells.mailbox.textContent = a.mailbox;
  r.cells.mailbox.classList.toggle('hot', a.mailbox >= 100);
  r.cells.rate.textContent = a.rate;
  r.cells.restarts.textContent = a.restarts;
  r.row.dataset.restarts = a.restarts;
}

function flash(r) {
  r.row.classList.remove('flash');
  void r.row.offsetWidth; // restart the animation
  r.row.classList.add('flash');
}

// Put every node under its parent (or at the top), children in slot order.
function placeAll() {
  const byParent = new Map();
  for (const a of actors.values()) {
    const p = a.parent && actors.has(a.parent) ? a.parent : null;
    if (!byParent.has(p)) byParent.set(p, []);
    byParent.get(p).push(a);
  }
  const place = (ul, list) => {
    list.sort((x, y) => slotOf(x.pid) - slotOf(y.pid));
    let at = ul.firstElementChild;
    for (const a of list) {
      const li = rows.get(a.pid).li;
      if (li !== at) ul.insertBefore(li, at);
      else at = at.nextElementSibling;
    }
  };
  place(treeEl, byParent.get(null) || []);
  for (const [p, list] of byParent) if (p) place(rows.get(p).kids, list);
  placeSessions();
  $('actor-count').textContent = `${actors.size + (sessions ? sessions.count : 0)}`;
}

function placeSessions() {
  let fold = $('sessions-fold');
  if (!sessions || !sessions.parent || !rows.has(sessions.parent)) {
    if (fold) fold.remove();
    return;
  }
  if (!fold) {
    fold = el('li', 'node fold');
    fold.id = 'sessions-fold';
    const row = el('div', 'row');
    const who = el('span', 'who');
    who.append(el('span', 'name', 'sessions'), el('span', 'meta', ''));
    row.append(who, figs(el('span', 'num sched', ''), el('span', 'num mailbox'), el('span', 'num rate'),
      el('span', 'num restarts', '')));
    fold.append(row, el('ul', 'kids top'));
  }
  const kids = rows.get(sessions.parent).kids;
  if (fold.parentNode !== kids || kids.lastElementChild !== fold) kids.append(fold);
  const row = fold.firstElementChild;
  row.querySelector('.name').textContent = `${sessions.count} session${sessions.count === 1 ? '' : 's'}`;
  row.querySelector('.meta').textContent = sessions.count
    ? `folded · top ${sessions.top.length} by mailbox below` : 'folded';
  row.querySelector('.mailbox').textContent = sessions.mailbox;
  row.querySelector('.rate').textContent = sessions.rate;
  const top = fold.querySelector('.top');
  const want = sessions.top.map((t) => t.pid).join(' ');
  if (top.dataset.pids !== want) { // rebuild only when the set changes
    top.dataset.pids = want;
    top.replaceChildren(...sessions.top.map((t) => {
      const li = el('li', 'node session');
      li.dataset.pid = t.pid;
      li.dataset.behaviour = 'session';
      const r = el('div', 'row');
      const who = el('span', 'who');
      who.append(el('span', 'name', 'session'), el('span', 'meta', t.pid));
      r.append(who, figs(el('span', 'num sched'), el('span', 'num mailbox'), el('span', 'num rate'),
        el('span', 'num restarts', '')));
      if (mode === 'control') r.append(exitButtons(t.pid));
      li.append(r);
      return li;
    }));
  }
  sessions.top.forEach((t, i) => {
    const r = top.children[i].firstElementChild;
    r.querySelector('.sched').textContent = `s${t.sched}`;
    r.querySelector('.mailbox').textContent = t.mailbox;
    r.querySelector('.rate').textContent = t.rate;
  });
}

function upsert(a, isNew) {
  actors.set(a.pid, a);
  const r = rows.get(a.pid) || makeRow(a);
  fillRow(r, a);
  if (isNew && a.restarts > 0) flash(r);
}

function remove(pid) {
  actors.delete(pid);
  const r = rows.get(pid);
  if (!r) return;
  rows.delete(pid);
  // Children still alive are re-placed by placeAll; keep them out of the way.
  for (const k of [...r.kids.children]) if (k.id !== 'sessions-fold') treeEl.append(k);
  r.li.remove();
}

// ------------------------------------------------------- schedulers, log

function renderSchedulers(list) {
  const body = $('schedulers');
  while (body.children.length > list.length) body.lastElementChild.remove();
  list.forEach((s, i) => {
    let tr = body.children[i];
    if (!tr) {
      tr = el('tr');
      for (let k = 0; k < 7; k++) tr.append(el('td'));
      body.append(tr);
    }
    const dash_ = (v, unit = '') => (v == null ? '—' : `${v}${unit}`);
    const cells = [s.id, s.actors, s.mailbox, s.rate, dash_(s.runq), dash_(s.turns), dash_(s.idle, '%')];
    cells.forEach((v, k) => { tr.children[k].textContent = v; });
  });
}

function logRestart(e) {
  const li = el('li', 'log-line');
  const time = new Date().toTimeString().slice(0, 8);
  li.append(el('time', 'log-time', time));
  const sup = e.sup_name || e.sup || 'supervisor';
  const text = e.count !== undefined
    ? `${sup} restarted ${e.count} ${e.child}${e.count === 1 ? '' : 's'}`
    : `${sup} restarted ${e.child} as ${e.pid} (restart ${e.restarts})`;
  li.append(el('span', 'log-text', text));
  li.dataset.child = e.child;
  const log = $('restart-log');
  log.prepend(li);
  while (log.children.length > LOG_MAX) log.lastElementChild.remove();
  restartsLogged += e.count !== undefined ? e.count : 1;
  $('restart-count').textContent = restartsLogged;
  $('log-empty').hidden = true;
}

// ------------------------------------------------------------- frames

function setMode(m) {
  if (m === mode) return;
  mode = m;
  dash.dataset.mode = m;
  $('mode').textContent = m === 'control' ? 'controls on' : 'read-only';
  $('controls').hidden = m !== 'control';
  // Rows were made for the other mode: make them again.
  for (const r of rows.values()) r.li.remove();
  rows.clear();
  $('sessions-fold')?.remove();
}

function setChaos(v) {
  if (document.activeElement === $('chaos')) return; // the user is moving it
  $('chaos').value = v;
  $('chaos-value').textContent = Number(v).toFixed(2);
}

function onSnapshot(m) {
  setMode(m.mode);
  const seen = new Set(m.actors.map((a) => a.pid));
  for (const pid of [...actors.keys()]) if (!seen.has(pid)) remove(pid);
  for (const a of m.actors) upsert(a, false);
  sessions = m.sessions;
  renderSchedulers(m.schedulers);
  setChaos(m.chaos);
  setTruncated(m.truncated);
  placeAll();
}

function onDelta(m) {
  for (const pid of m.del || []) remove(pid);
  for (const a of m.add || []) upsert(a, true);
  for (const a of m.upd || []) upsert(a, false);
  if (m.sessions) sessions = m.sessions;
  if (m.schedulers) renderSchedulers(m.schedulers);
  if (m.chaos !== undefined) setChaos(m.chaos);
  if (m.truncated !== undefined) setTruncated(m.truncated);
  for (const e of m.restarts || []) logRestart(e);
  placeAll();
}

function setTruncated(n) {
  $('truncated').hidden = !n;
  $('truncated').textContent = n ? `${n} more actors not drawn` : '';
}

function onFrame(ev) {
  let m;
  try { m = JSON.parse(ev.data); } catch { return; }
  if (m.type === 'snapshot') {
    version = m.v;
    onSnapshot(m);
  } else if (m.type === 'delta') {
    if (m.v !== version + 1) { // a gap: start again from a snapshot
      send({ type: 'resync' });
      return;
    }
    version = m.v;
    onDelta(m);
  } else if (m.type === 'reply') {
    onReply(m);
  }
  dash.dataset.version = String(version);
}

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/dashboard/ws`;
  ws = new WebSocket(url);
  ws.addEventListener('open', () => {
    retryMs = 250;
    version = 0;
    setStatus('live', 'Live');
  });
  ws.addEventListener('message', onFrame);
  ws.addEventListener('close', () => {
    setStatus('reconnecting', 'Reconnecting…');
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  });
}

connect();
