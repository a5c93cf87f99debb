// The message list: each message once (deduplicated by id), ordered by seq,
// newest at the bottom; sticks to the bottom unless the reader scrolled up;
// asks for older messages when the reader nears the top.  Below them, the
// messages of the outbox (composed, not yet confirmed by `sent`), marked as
// pending; they carry no id, so nothing counts them as delivered.

import { el, avatar, parseTime, shortTime, fullTime } from './util.js';

const NEAR_BOTTOM_PX = 48;
const NEAR_TOP_PX = 240;

export class MessageList {
  constructor({ scroller, list, pendingList, status, jump }) {
    this.scroller = scroller;       // #messages: the scrolling element
    this.list = list;               // where .message nodes live (inside scroller)
    this.pendingList = pendingList; // the outbox's nodes, after the list
    this.pending = new Map();       // client_id -> node
    this.status = status;           // "loading earlier messages" line
    this.jump = jump;               // "new messages" pill
    this.byId = new Map();          // id -> node
    this.seqs = [];                 // sorted seqs of held messages
    this.nodeBySeq = new Map();     // seq -> node
    this.more = false;              // older messages exist on the server
    this.loadingOlder = false;
    this.me = null;
    this.onNeedOlder = null;        // set by the app
    this.unseen = 0;
    this.waiting = false;           // not joined yet: say so instead of "no messages"
    this.epoch = 0;                 // bumped by clear(): late replies are dropped

    scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    jump.addEventListener('click', () => this.scrollToBottom(true));
  }

  get minSeq() { return this.seqs.length ? this.seqs[0] : null; }
  get maxSeq() { return this.seqs.length ? this.seqs[this.seqs.length - 1] : null; }
  get size() { return this.seqs.length; }

  clear() {
    this.epoch++;
    this.byId.clear();
    this.seqs = [];
    this.nodeBySeq.clear();
    this.list.replaceChildren();
    this.clearPending();
    this.more = false;
    this.loadingOlder = false;
    this.unseen = 0;
    this.updateStatus();
    this.updateJump();
  }

  isNearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= NEAR_BOTTOM_PX;
  }

  scrollToBottom(smooth = false) {
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    this.unseen = 0;
    this.updateJump();
  }

  // Adds messages (any order, duplicates ignored).  `older` means they came
  // from `history` and go above what the reader sees: keep their viewport.
  add(messages, { older = false } = {}) {
    const stick = this.isNearBottom();
    const beforeHeight = this.scroller.scrollHeight;
    const beforeTop = this.scroller.scrollTop;
    let addedBottom = 0;
    let mine = false;
    for (const m of messages) {
      if (!m || typeof m.id !== 'string' || this.byId.has(m.id) || !Number.isFinite(m.seq)) continue;
      const node = this.build(m);
      const pos = this.insertSeq(m.seq);
      const after = this.seqs[pos + 1];
      const ref = after !== undefined ? this.nodeBySeq.get(after) : null;
      this.list.insertBefore(node, ref || null);
      this.byId.set(m.id, node);
      this.nodeBySeq.set(m.seq, node);
      if (pos === this.seqs.length - 1) {
        addedBottom++;
        if (m.name === this.me) mine = true;
      }
    }
    if (older) {
      // Keep the message the reader was looking at in place.
      this.scroller.scrollTop = beforeTop + (this.scroller.scrollHeight - beforeHeight);
    } else if (addedBottom > 0) {
      if (stick || mine) this.scrollToBottom();
      else {
        this.unseen += addedBottom;
        this.updateJump();
      }
    }
    this.updateStatus();
  }

  insertSeq(seq) {
    const a = this.seqs;
    if (!a.length || seq > a[a.length - 1]) {
      a.push(seq);
      return a.length - 1;
    }
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    a.splice(lo, 0, seq);
    return lo;
  }

  build(m) {
    const when = parseTime(m.inserted_at);
    const name = typeof m.name === 'string' ? m.name : '?';
    const time = el('time', { class: 'message-time', datetime: m.inserted_at, title: fullTime(when), text: shortTime(when) });
    // dir="auto" + unicode-bidi: isolate (style.css): a name or content full
    // of right-to-left text or bidi controls cannot reorder what is around it.
    const head = el('div', { class: 'message-head' },
      el('span', { class: 'message-name', dir: 'auto', text: name }), time);
    const body = el('div', { class: 'message-content', dir: 'auto', text: String(m.content ?? '') });
    const node = el('article', {
      class: 'message' + (name === this.me ? ' mine' : ''),
      dataset: { id: m.id, seq: String(m.seq), name },
    }, avatar(name), el('div', { class: 'message-main' }, head, body));
    return node;
  }

  // The outbox: one node per composed message until its `sent` arrives.
  addPending(cid, content, stateText = 'Sending…') {
    if (this.pending.has(cid)) return;
    const name = this.me || '';
    const status = el('span', { class: 'pending-state', text: stateText });
    const head = el('div', { class: 'message-head' },
      el('span', { class: 'message-name', dir: 'auto', text: name }), status);
    const body = el('div', { class: 'message-content', dir: 'auto', text: content });
    const node = el('article', { class: 'message mine pending', dataset: { cid } },
      avatar(name), el('div', { class: 'message-main' }, head, body));
    node._status = status;
    this.pending.set(cid, node);
    this.pendingList.append(node);
    this.scrollToBottom();
    this.updateStatus();
  }

  setPendingState(cid, text) {
    const node = this.pending.get(cid);
    if (node) node._status.textContent = text;
  }

  removePending(cid) {
    const node = this.pending.get(cid);
    if (!node) return;
    node.remove();
    this.pending.delete(cid);
    this.updateStatus();
  }

  clearPending() {
    this.pending.clear();
    this.pendingList.replaceChildren();
  }

  setMe(name) {
    this.me = name;
    for (const node of this.byId.values()) node.classList.toggle('mine', node.dataset.name === name);
  }

  setMore(more) {
    this.more = !!more;
    this.updateStatus();
  }

  setWaiting(waiting) {
    this.waiting = waiting;
    this.updateStatus();
  }

  setLoadingOlder(loading) {
    this.loadingOlder = loading;
    this.updateStatus();
  }

  updateStatus() {
    const s = this.status;
    if (this.waiting && !this.seqs.length && !this.pending.size) {
      s.textContent = 'Joining the conversation…';
      s.dataset.state = 'waiting';
    } else if (this.loadingOlder) {
      s.textContent = 'Loading earlier messages…';
      s.dataset.state = 'loading';
    } else if (this.more) {
      s.textContent = '';
      s.dataset.state = 'more';
    } else if (this.seqs.length) {
      s.textContent = 'This is the very beginning of the conversation.';
      s.dataset.state = 'start';
    } else {
      s.textContent = this.pending.size ? '' : 'No messages yet. Say hello!';
      s.dataset.state = 'empty';
    }
  }

  updateJump() {
    this.jump.hidden = this.unseen === 0;
    this.jump.textContent = this.unseen === 1 ? '1 new message ↓' : `${this.unseen} new messages ↓`;
  }

  onScroll() {
    if (this.unseen && this.isNearBottom()) {
      this.unseen = 0;
      this.updateJump();
    }
    this.maybeLoadOlder();
  }

  // Called after scrolling and after each batch: fetch older messages when
  // the reader is near the top, or when the list does not fill the view.
  maybeLoadOlder() {
    if (!this.more || this.loadingOlder || !this.onNeedOlder || !this.seqs.length) return;
    if (this.scroller.scrollTop <= NEAR_TOP_PX || this.scroller.scrollHeight <= this.scroller.clientHeight) {
      this.onNeedOlder(this.minSeq);
    }
  }
}
