// The outbox: messages composed but not yet confirmed by a `sent` reply, in
// the order they were composed, each with the random `client_id` it was
// given when composed (PROTOCOL.md v2).  Every retry of a message, after
// `unavailable`, a timeout, a reconnect or a reload, reuses that id, so the
// server stores it at most once however often it is sent.  Kept in
// sessionStorage under the user's name, so a reload re-sends too.

const KEY = 'chatter.outbox';
export const MAX_OUTBOX = 50;           // composed and unconfirmed at once; more is refused

// 16 random bytes as base64url: 22 characters of [A-Za-z0-9_-] (the protocol
// allows 1 to 64), 128 bits, so two messages never share one.
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export class Outbox {
  constructor() {
    this.name = null;
    this.items = [];                    // [{cid, content}], oldest first
  }

  get size() { return this.items.length; }
  get first() { return this.items[0] || null; }

  // Takes up the saved outbox of `name` (after a reload), or starts empty.
  open(name) {
    this.name = name;
    this.items = [];
    try {
      const saved = JSON.parse(sessionStorage.getItem(KEY) || 'null');
      if (saved && saved.name === name && Array.isArray(saved.items)) {
        this.items = saved.items.filter((m) => m && typeof m.cid === 'string' && typeof m.content === 'string');
      }
    } catch { /* unreadable: start empty */ }
    this.save();
  }

  add(content) {
    const item = { cid: newClientId(), content };
    this.items.push(item);
    this.save();
    return item;
  }

  remove(cid) {
    const i = this.items.findIndex((m) => m.cid === cid);
    if (i >= 0) this.items.splice(i, 1);
    this.save();
  }

  // Leaving the chat (or losing the name) drops what was not sent.
  discard() {
    const dropped = this.items;
    this.items = [];
    this.name = null;
    try { sessionStorage.removeItem(KEY); } catch { /* ignore */ }
    return dropped;
  }

  save() {
    if (this.name === null) return;
    try {
      sessionStorage.setItem(KEY, JSON.stringify({ name: this.name, items: this.items }));
    } catch { /* private mode or full: the outbox lives in memory only */ }
  }
}
