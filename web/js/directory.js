// The directory of users (PROTOCOL.md v2): an Online and an Offline section,
// each read in pages with `users` requests and loaded further as the reader
// scrolls (infinite scroll, `after` = the last name held), an optional name
// prefix that narrows both, and the counts, kept live from presence diffs.
//
// What each section holds is always a prefix of the true list: every user of
// that state (and prefix) whose name is <= the last name loaded, or all of
// them once `more` is false.  A `users` reply reflects every diff sent before
// it and none after, and replies and pushes arrive in order on one socket, so
// applying each later diff to that prefix keeps it true: a user entering the
// state is inserted when its name falls inside the loaded range, a user
// leaving it is removed.  Memory and DOM grow with what the reader scrolled
// through, never with the number of users (100,000 stored users cost one
// page of PAGE rows until scrolled).
//
// Presence is applied meta by meta, keyed by phx_ref, joins first, then
// leaves (Phoenix's order).  A page says only online or not, not which metas:
// such a user counts one meta of unknown ref (`anon`), which the next leave of
// a ref we do not know removes.  A name holds one meta at a time (a second
// socket gets name_taken or takes it over in one diff), so this is exact.

import { el, $, avatar, compareNames, isolate } from './util.js';

export const PAGE = 50;                 // users per `users` request (protocol: 1 to 500)
const LOAD_AHEAD_PX = 400;              // load the next page this far before the end shows
const RETRY_MS = 2000;                  // after a failed page (a lost socket reloads anyway)

class Section {
  constructor(online, root) {
    this.online = online;
    this.list = $(online ? '#online-list' : '#offline-list', root);
    this.status = $(online ? '#online-status' : '#offline-status', root);
    this.countEl = $(online ? '#online-section-count' : '#offline-section-count', root);
    this.names = [];                    // loaded names, in byte order
    this.nodes = new Map();             // name -> <li>
    this.loaded = false;                // the first page arrived
    this.more = true;                   // names after the last one exist
    this.loading = false;
    this.failedAt = 0;
  }

  get last() { return this.names.length ? this.names[this.names.length - 1] : null; }

  // Does the loaded range cover this name?
  covers(name) {
    if (!this.loaded) return false;
    if (!this.more) return true;
    const last = this.last;
    return last !== null && compareNames(name, last) <= 0;
  }

  indexOf(name) {
    let lo = 0;
    let hi = this.names.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNames(this.names[mid], name) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export class Directory {
  constructor(root, request) {
    this.root = root;                   // the #people element
    this.request = request;             // (type, fields) => Promise<reply>
    this.scroller = $('#people-scroll', root);
    this.searchInput = $('#people-search', root);
    this.totalEl = $('#total-users', root);
    this.onlineEl = $('#online-count', root);
    this.sections = { online: new Section(true, root), offline: new Section(false, root) };
    this.users = new Map();             // name -> {id, name, metas: Map(phx_ref -> meta), anon}
    this.total = 0;
    this.onlineCount = 0;
    this.prefix = '';
    this.me = null;
    this.epoch = 0;                     // bumped by reload(): late replies are dropped
    this.active = false;                // the socket is open: pages may be requested
    this.listeners = new Set();
    this.checkQueued = false;
    // performance.now() when each section's first page was on screen (the
    // first time only): the browser tests print it beside the welcome's.
    this.firstPageAt = { online: null, offline: null };

    this.scroller.addEventListener('scroll', () => this.queueCheck(), { passive: true });
    window.addEventListener('resize', () => this.queueCheck(), { passive: true });
    this.searchInput.addEventListener('input', () => this.setPrefix(this.searchInput.value));
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  // welcome, joined, and every diff carry the authoritative counts.
  setCounts(total, online) {
    if (Number.isFinite(total)) this.total = total;
    if (Number.isFinite(online)) this.onlineCount = online;
    this.renderCounts();
  }

  renderCounts() {
    this.totalEl.textContent = this.total.toLocaleString('en-US');
    this.onlineEl.textContent = this.onlineCount.toLocaleString('en-US');
    const offline = Math.max(0, this.total - this.onlineCount);
    // With a search the section sizes are unknown: the counts are the room's.
    this.sections.online.countEl.textContent = this.prefix ? '' : this.onlineCount.toLocaleString('en-US');
    this.sections.offline.countEl.textContent = this.prefix ? '' : offline.toLocaleString('en-US');
    for (const fn of this.listeners) fn(this);
  }

  // A new socket (welcome): nothing loaded on the old one can be trusted to
  // match this socket's diffs, so both sections start over (what is shown
  // stays until the first pages replace it).
  reload() {
    this.epoch++;
    this.active = true;
    for (const s of Object.values(this.sections)) {
      s.loaded = false;
      s.more = true;
      s.loading = false;
      s.failedAt = 0;
    }
    this.users.clear();
    this.check();           // now, not at the next frame: the first pages go with the welcome
  }

  // The socket dropped: no requests until the next welcome.
  suspend() {
    this.active = false;
    this.epoch++;
    for (const s of Object.values(this.sections)) s.loading = false;
  }

  setPrefix(raw) {
    // Compared exactly, as the protocol does: no trimming or case folding.
    const prefix = [...raw].slice(0, 32).join('');
    if (prefix === this.prefix) return;
    this.prefix = prefix;
    this.epoch++;
    for (const s of Object.values(this.sections)) {
      this.clearSection(s);
      s.loaded = false;
      s.more = true;
      s.loading = false;
      s.failedAt = 0;
    }
    this.users.clear();
    this.renderCounts();
    this.renderStatus();
    this.check();
  }

  setMe(name) {
    const old = this.me;
    this.me = name;
    for (const n of [old, name]) {
      if (n === null) continue;
      for (const s of Object.values(this.sections)) {
        const node = s.nodes.get(n);
        if (node) this.update(node, n);
      }
    }
  }

  matches(name) {
    return !this.prefix || name.startsWith(this.prefix);
  }

  // ------------------------------------------------------------ loading

  queueCheck() {
    if (this.checkQueued) return;
    this.checkQueued = true;
    requestAnimationFrame(() => {
      this.checkQueued = false;
      this.check();
    });
  }

  // Loads a page for each section whose end is (nearly) in view: the first
  // page of each at once, the next ones as the reader scrolls near the end
  // of what is loaded.
  check() {
    if (!this.active) return;
    const box = this.scroller.getBoundingClientRect();
    const visible = this.scroller.clientHeight > 0;
    for (const s of Object.values(this.sections)) {
      if (s.loading || (s.loaded && !s.more)) continue;
      if (s.failedAt && Date.now() - s.failedAt < RETRY_MS) continue;
      // First pages load even while the list is hidden (a collapsed phone
      // sidebar): they are small, and the view is ready when opened.
      if (s.loaded) {
        if (!visible) continue;
        if (s.status.getBoundingClientRect().top > box.bottom + LOAD_AHEAD_PX) continue;
      }
      this.load(s);
    }
  }

  async load(s) {
    const epoch = this.epoch;
    const fields = { online: s.online, limit: PAGE };
    const after = s.loaded ? s.last : null;
    if (after !== null) fields.after = after;
    if (this.prefix) fields.prefix = this.prefix;
    s.loading = true;
    this.renderStatus();
    let r;
    try {
      r = await this.request('users', fields);
    } catch {
      if (epoch !== this.epoch) return;
      s.loading = false;
      s.failedAt = Date.now();
      this.renderStatus();
      setTimeout(() => this.queueCheck(), RETRY_MS);
      return;
    }
    // Applied in the reply's own microtask, before the next frame's diff.
    if (epoch !== this.epoch) return;
    s.loading = false;
    const page = Array.isArray(r.users) ? r.users.filter((u) => u && typeof u.name === 'string') : [];
    if (!s.loaded) {
      this.clearSection(s);
      s.loaded = true;
    }
    for (const u of page) {
      this.learn(u);
      if (this.isOnline(u.name) === s.online) this.insert(s, u.name);
    }
    s.more = !!r.more && page.length > 0;
    this.renderStatus();
    const key = s.online ? 'online' : 'offline';
    if (this.firstPageAt[key] === null) this.firstPageAt[key] = performance.now();
    this.queueCheck();
  }

  // What a page says of a user is the truth as of the reply.
  learn(u) {
    let rec = this.users.get(u.name);
    if (!rec) {
      rec = { id: u.id, name: u.name, metas: new Map(), anon: 0 };
      this.users.set(u.name, rec);
    }
    if (u.id) rec.id = u.id;
    if (u.online) rec.anon = rec.metas.size ? 0 : 1;
    else {
      rec.metas.clear();
      rec.anon = 0;
    }
  }

  isOnline(name) {
    const rec = this.users.get(name);
    return !!rec && rec.metas.size + rec.anon > 0;
  }

  // ------------------------------------------------------------ presence

  applyDiff(diff) {
    const touched = new Set();
    for (const [name, entry] of entries(diff.joins)) {
      const rec = this.record(name, entry);
      for (const meta of metas(entry)) rec.metas.set(String(meta.phx_ref), meta);
      touched.add(name);
    }
    for (const [name, entry] of entries(diff.leaves)) {
      const rec = this.record(name, entry);
      for (const meta of metas(entry)) {
        const ref = String(meta.phx_ref);
        if (rec.metas.has(ref)) rec.metas.delete(ref);
        else if (rec.anon > 0) rec.anon--;
      }
      touched.add(name);
    }
    for (const name of touched) this.place(name);
    this.setCounts(diff.total_users, diff.online_count);
    this.renderStatus();
  }

  record(name, entry) {
    let rec = this.users.get(name);
    if (!rec) {
      const meta = metas(entry)[0];
      rec = { id: meta ? meta.user_id : undefined, name, metas: new Map(), anon: 0 };
      this.users.set(name, rec);
    }
    return rec;
  }

  // Puts a name in the section of its state if that section's loaded range
  // covers it, and out of the other.  A name outside every loaded range is
  // forgotten: the page that reaches it will say its state.
  place(name) {
    const online = this.isOnline(name);
    const want = online ? this.sections.online : this.sections.offline;
    const other = online ? this.sections.offline : this.sections.online;
    this.remove(other, name);
    if (this.matches(name) && want.covers(name)) this.insert(want, name);
    else this.remove(want, name);
    if (!want.nodes.has(name) && !other.nodes.has(name)) this.users.delete(name);
  }

  // ------------------------------------------------------------ rendering

  insert(s, name) {
    const node = s.nodes.get(name);
    if (node) {
      this.update(node, name);
      return;
    }
    const i = s.indexOf(name);
    s.names.splice(i, 0, name);
    const fresh = this.build(name);
    s.nodes.set(name, fresh);
    const next = i + 1 < s.names.length ? s.nodes.get(s.names[i + 1]) : null;
    s.list.insertBefore(fresh, next || null);
    this.update(fresh, name);
  }

  remove(s, name) {
    const node = s.nodes.get(name);
    if (!node) return;
    node.remove();
    s.nodes.delete(name);
    const i = s.indexOf(name);
    if (s.names[i] === name) s.names.splice(i, 1);
  }

  clearSection(s) {
    s.names = [];
    s.nodes.clear();
    s.list.replaceChildren();
  }

  build(name) {
    const rec = this.users.get(name);
    const dot = el('span', { class: 'dot', 'aria-hidden': 'true' });
    const label = el('span', { class: 'user-name', dir: 'auto', text: name });
    const you = el('span', { class: 'you', text: 'you', hidden: true });
    const state = el('span', { class: 'visually-hidden user-state' });
    const node = el('li', { class: 'user', dataset: { name, id: rec && rec.id ? rec.id : '' } },
      avatar(name), label, you, state, dot);
    node._dot = dot;
    node._you = you;
    node._state = state;
    return node;
  }

  update(node, name) {
    const online = this.isOnline(name);
    node.classList.toggle('is-online', online);
    node.classList.toggle('is-me', name === this.me);
    node._dot.classList.toggle('online', online);
    node._dot.classList.toggle('offline', !online);
    node._dot.title = online ? 'online' : 'offline';
    node._state.textContent = online ? ' (online)' : ' (offline)';
    node._you.hidden = name !== this.me;
  }

  renderStatus() {
    for (const s of Object.values(this.sections)) {
      let text = '';
      let state = 'idle';
      if (s.loading || (!s.loaded && this.active)) {
        text = 'Loading…';
        state = 'loading';
      } else if (s.loaded && !s.names.length && !s.more) {
        text = this.prefix
          ? `No one ${s.online ? 'online' : 'offline'} matches ${isolate(this.prefix)}.`
          : (s.online ? 'Nobody is online.' : 'Nobody is offline.');
        state = 'empty';
      } else if (s.failedAt && !s.loading) {
        text = 'Could not load more. Retrying…';
        state = 'error';
      } else if (s.more) {
        state = 'more';
      } else {
        state = 'end';
      }
      s.status.textContent = text;
      s.status.dataset.state = state;
      s.list.parentElement.dataset.loaded = String(s.loaded);
    }
  }
}

function entries(obj) {
  return obj && typeof obj === 'object' ? Object.entries(obj) : [];
}

function metas(entry) {
  return entry && Array.isArray(entry.metas) ? entry.metas.filter((m) => m && m.phx_ref != null) : [];
}
