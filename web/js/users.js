// Every user with an online/offline dot, and the total and online counts.
// One list element exists for the whole page; the app moves it between the
// home view and the chat view's sidebar.

import { el, $, avatar } from './util.js';

const COLLATOR = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

export class UserList {
  constructor(root) {
    this.root = root;                 // the .people element from index.html
    this.listEl = $('#user-list', root);
    this.totalEl = $('#total-users', root);
    this.onlineEl = $('#online-count', root);
    this.emptyEl = $('#users-empty', root);
    this.users = new Map();           // name -> {id, name, online}
    this.nodes = new Map();           // name -> <li>
    this.total = 0;
    this.online = 0;
    this.me = null;
    this.renderQueued = false;
    this.listeners = new Set();
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  // welcome / joined snapshot.
  reset(users, total, online) {
    this.users.clear();
    for (const u of users || []) {
      if (u && typeof u.name === 'string') this.users.set(u.name, { id: u.id, name: u.name, online: !!u.online });
    }
    this.setCounts(total, online);
    this.queueRender();
  }

  setCounts(total, online) {
    this.total = Number.isFinite(total) ? total : this.users.size;
    this.online = Number.isFinite(online) ? online : [...this.users.values()].filter((u) => u.online).length;
  }

  // presence_diff: leaves first, then joins, so a take-over (the same name in
  // both) leaves the name online.
  applyDiff(diff) {
    for (const [name, entry] of Object.entries(diff.leaves || {})) {
      const u = this.users.get(name);
      if (u) u.online = false;
      else this.users.set(name, { id: metaId(entry), name, online: false });
    }
    for (const [name, entry] of Object.entries(diff.joins || {})) {
      const u = this.users.get(name);
      if (u) u.online = true;
      else this.users.set(name, { id: metaId(entry), name, online: true });
    }
    this.setCounts(diff.total_users, diff.online_count);
    this.queueRender();
  }

  // user_created.
  add(user, total) {
    if (!user || typeof user.name !== 'string') return;
    const prev = this.users.get(user.name);
    this.users.set(user.name, { id: user.id, name: user.name, online: prev ? prev.online || !!user.online : !!user.online });
    this.setCounts(total, this.online);
    if (!Number.isFinite(total)) this.total = Math.max(this.total, this.users.size);
    this.queueRender();
  }

  setMe(name) {
    this.me = name;
    this.queueRender();
  }

  isOnline(name) {
    const u = this.users.get(name);
    return !!(u && u.online);
  }

  queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    setTimeout(() => {
      this.renderQueued = false;
      this.render();
    }, 0);
  }

  render() {
    const sorted = [...this.users.values()].sort((a, b) => {
      if (a.online !== b.online) return a.online ? -1 : 1;
      if (a.name === this.me) return -1;
      if (b.name === this.me) return 1;
      return COLLATOR.compare(a.name, b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
    const wanted = new Set(sorted.map((u) => u.name));
    for (const [name, node] of this.nodes) {
      if (!wanted.has(name)) {
        node.remove();
        this.nodes.delete(name);
      }
    }
    let prev = null;
    for (const u of sorted) {
      let node = this.nodes.get(u.name);
      if (!node) {
        node = this.build(u);
        this.nodes.set(u.name, node);
      }
      this.update(node, u);
      const expected = prev ? prev.nextSibling : this.listEl.firstChild;
      if (expected !== node) this.listEl.insertBefore(node, expected);
      prev = node;
    }
    this.totalEl.textContent = String(this.total);
    this.onlineEl.textContent = String(this.online);
    this.emptyEl.hidden = this.users.size > 0;
    for (const fn of this.listeners) fn(this);
  }

  build(u) {
    const dot = el('span', { class: 'dot', 'aria-hidden': 'true' });
    const label = el('span', { class: 'user-name', text: u.name });
    const you = el('span', { class: 'you', text: 'you', hidden: true });
    const state = el('span', { class: 'visually-hidden user-state' });
    const node = el('li', { class: 'user', dataset: { name: u.name } }, avatar(u.name), label, you, state, dot);
    node._dot = dot;
    node._you = you;
    node._state = state;
    return node;
  }

  update(node, u) {
    node.classList.toggle('is-online', u.online);
    node.classList.toggle('is-me', u.name === this.me);
    node._dot.classList.toggle('online', u.online);
    node._dot.classList.toggle('offline', !u.online);
    node._dot.title = u.online ? 'online' : 'offline';
    node._state.textContent = u.online ? ' (online)' : ' (offline)';
    node._you.hidden = u.name !== this.me;
  }
}

function metaId(entry) {
  const meta = entry && Array.isArray(entry.metas) ? entry.metas[0] : null;
  return meta ? meta.user_id : undefined;
}
