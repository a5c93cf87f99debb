// Chatter's browser client: the home view (pick a name, see who is around)
// and the chat view (the lobby), over one WebSocket that reconnects by itself.
// Wire protocol: PROTOCOL.md, version 2.  User text only ever reaches the
// page through textContent (see util.js's el()), isolated for bidi.

import { $, codePoints, validName, isolate, MAX_CONTENT } from './util.js';
import { Connection, socketUrl } from './connection.js';
import { TokenBucket } from './ratelimit.js';
import { Directory } from './directory.js';
import { MessageList } from './messages.js';
import { Outbox, MAX_OUTBOX } from './outbox.js';

const SESSION_KEY = 'chatter.session';
const HISTORY_PAGE = 100;
const NARROW = window.matchMedia('(max-width: 760px)');

// ------------------------------------------------------------------ elements

const app = $('#app');
const connStatus = $('#conn-status');
const connLabel = $('#conn-status .conn-label');
const notice = $('#notice');
const noticeText = $('#notice-text');
const homeView = $('#home-view');
const chatView = $('#chat-view');
const joinForm = $('#join-form');
const nameInput = $('#name-input');
const joinButton = $('#join-button');
const nameError = $('#name-error');
const meBox = $('#me');
const meName = $('#me-name');
const leaveButton = $('#leave-button');
const people = $('#people');
const homePeopleSlot = $('#home-people-slot');
const chatPeopleSlot = $('#chat-people-slot');
const peopleToggle = $('#people-toggle');
const peopleToggleCount = $('#people-toggle-count');
const composer = $('#composer');
const messageInput = $('#message-input');
const sendButton = $('#send-button');
const composerError = $('#composer-error');
const counter = $('#char-count');

// ---------------------------------------------------------------------- state

const conn = new Connection(socketUrl());
const users = new Directory(people, (type, fields) => conn.request(type, fields));
const outbox = new Outbox();
const messages = new MessageList({
  scroller: $('#messages'),
  list: $('#message-list'),
  pendingList: $('#pending-list'),
  status: $('#history-status'),
  jump: $('#jump-button'),
});
const bucket = new TokenBucket({ capacity: 10, perSecond: 5 });

const state = {
  view: null,          // 'home' | 'chat'
  wantChat: false,     // we mean to be joined: rejoin after every reconnect
  joined: false,       // this socket is joined
  joining: false,
  name: null,          // our name while in the chat
  token: null,
  cursor: null,        // highest seq received in order (snapshot, catch-up, pushes)
  gapFrom: null,       // a catch-up from here has not finished yet
  retryJoin: null,     // a join from the form cut off by a lost connection
  joinRetries: 0,
  flushing: false,     // the outbox is being sent
  flushTimer: null,
  sendAttempt: 0,      // consecutive unavailable/timeouts, for the back-off
  cooldownTimer: null,
  rejoinTimer: null,
  rejoinAttempt: 0,
  olderBlockedUntil: 0,
  unseenWhileHidden: 0,
  scriptAt: performance.now(),   // for the tests' figures: when this module ran,
  welcomeAt: null,               // and when the first welcome came
};

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && typeof s.name === 'string' && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

function saveSession(name, token) {
  try { sessionStorage.setItem(SESSION_KEY, JSON.stringify({ name, token })); } catch { /* private mode */ }
}

function clearSession() {
  try { sessionStorage.removeItem(SESSION_KEY); } catch { /* ignore */ }
}

// ---------------------------------------------------------------------- views

function showView(view) {
  state.view = view;
  app.dataset.view = view;
  homeView.hidden = view !== 'home';
  chatView.hidden = view !== 'chat';
  meBox.hidden = view !== 'chat';
  leaveButton.hidden = view !== 'chat';
  const slot = view === 'chat' ? chatPeopleSlot : homePeopleSlot;
  if (people.parentElement !== slot) slot.append(people);
  document.title = view === 'chat' ? 'Chatter · Lobby' : 'Chatter';
  updateControls();
  users.queueCheck();   // a taller list may show the end of a section: load on
}

function setJoined(joined) {
  state.joined = joined;
  app.dataset.joined = String(joined);
  messages.setWaiting(!joined);
  updateControls();
}

function chatUrl(name) {
  return '/chat?name=' + encodeURIComponent(name);
}

function showNotice(text, kind = 'info') {
  noticeText.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = false;
}

function hideNotice() {
  notice.hidden = true;
}

function showNameError(text) {
  nameError.textContent = text;
  nameError.hidden = !text;
  nameInput.setAttribute('aria-invalid', text ? 'true' : 'false');
}

function showComposerError(text) {
  composerError.textContent = text;
  composerError.hidden = !text;
}

const CONN_LABELS = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…' };

function renderConn() {
  connStatus.dataset.state = conn.state;
  app.dataset.conn = conn.state;
  connLabel.textContent = CONN_LABELS[conn.state] || conn.state;
  connStatus.title = conn.state === 'connected' ? 'Connected to the server' : 'Trying to reach the server';
}

function updateControls() {
  const online = conn.state === 'connected';
  joinButton.disabled = !online || state.joining;
  joinButton.textContent = state.joining ? 'Joining…' : 'Join chat';
  const content = messageInput.value.trim();
  sendButton.disabled = state.view !== 'chat' || !content || state.cooldownTimer !== null;
  messageInput.disabled = state.view !== 'chat';
  const n = codePoints(content);
  counter.hidden = n < MAX_CONTENT - 200;
  counter.textContent = `${n} / ${MAX_CONTENT}`;
  counter.classList.toggle('over', n > MAX_CONTENT);
}

// ------------------------------------------------------------------ errors

const JOIN_ERRORS = {
  name_taken: 'That name is in use right now. Pick another one.',
  rate_limited: 'Too many new names from your address in the last minute. Wait a little, or join with a name you used before.',
  name_invalid: 'Use 1 to 32 letters, digits, spaces, _ - or . (no leading, trailing or double spaces).',
  unavailable: 'The chat is unavailable for a moment. Please try again.',
  already_joined: 'You are already in the chat.',
  disconnected: 'The connection to the server keeps failing. Please try again.',
  timeout: 'The server did not answer. Please try again.',
};

const SEND_ERRORS = {
  rate_limited: 'You are sending messages too quickly. Wait a moment.',
  content_invalid: 'Messages need 1 to 2,000 characters.',
  full: `At most ${MAX_OUTBOX} messages can wait to be sent. Wait until some are delivered.`,
};

function errorText(table, err) {
  return table[err && err.code] || `Something went wrong (${(err && err.code) || 'unknown'}).`;
}

// ------------------------------------------------------------------- joining

async function join(name, { rejoin = false } = {}) {
  if (state.joining) return;
  const saved = loadSession();
  const token = rejoin ? state.token : (saved && saved.name === name ? saved.token : null);
  const held = messages.size > 0 && rejoin;
  const after = held ? (state.gapFrom ?? state.cursor) : null;
  state.joining = true;
  updateControls();
  try {
    const fields = token ? { name, token } : { name };
    const r = await conn.request('join', fields);
    onJoined(r, { rejoin, held });
  } catch (err) {
    state.joining = false;
    updateControls();
    onJoinFailed(name, err, { rejoin });
    return;
  }
  state.joining = false;
  updateControls();
  // Back after a drop or a reload: fetch whatever came after what we hold,
  // then re-send, with their client_id, the messages never confirmed.
  if (after !== null) await catchUp(after);
  else if (rejoin) await catchUp(state.cursor);
  flush();
}

function onJoined(r, { rejoin, held }) {
  const name = r.user && typeof r.user.name === 'string' ? r.user.name : null;
  state.name = name;
  state.token = r.token;
  state.wantChat = true;
  state.rejoinAttempt = 0;
  saveSession(name, r.token);
  meName.textContent = name;
  users.setMe(name);
  users.setCounts(r.total_users, r.online_count);
  messages.setMe(name);
  if (outbox.name !== name) outbox.open(name);
  hideNotice();
  showNameError('');

  const url = chatUrl(name);
  if (location.pathname + location.search !== url) {
    if (location.pathname === '/chat') history.replaceState({ view: 'chat' }, '', url);
    else history.pushState({ view: 'chat' }, '', url);
  }
  if (state.view !== 'chat') showView('chat');
  setJoined(true);

  const batch = Array.isArray(r.messages) ? r.messages : [];
  if (!held) {
    // A fresh start: the snapshot is the whole truth.
    state.cursor = null;
    state.gapFrom = null;
    messages.clear();
    messages.setMore(r.more);
    messages.add(batch);
    renderOutbox();
    messages.scrollToBottom();
  } else {
    // Back after a drop: keep what we hold, add the snapshot, then catch up.
    messages.add(batch);
  }
  advanceCursor(batch);
  if (!rejoin || !held) setTimeout(() => messages.maybeLoadOlder(), 0);
  if (!NARROW.matches || !rejoin) messageInput.focus({ preventScroll: true });
}

// The highest seq received in order.  `sent` replies are left out: a lower
// seq from someone else may still be on its way.
function advanceCursor(batch) {
  for (const m of batch) {
    if (m && Number.isFinite(m.seq) && (state.cursor === null || m.seq > state.cursor)) state.cursor = m.seq;
  }
}

// catch_up from `after`, repeated while `more`.  A failure other than a lost
// connection (which leads to a rejoin and a new catch-up) is retried.
async function catchUp(after, attempt = 0) {
  if (after === null || after === undefined) return;
  const epoch = messages.epoch;
  let from = after;
  state.gapFrom = from;
  try {
    for (;;) {
      const r = await conn.request('catch_up', { after: from });
      if (epoch !== messages.epoch || !state.joined) return;
      const batch = Array.isArray(r.messages) ? r.messages : [];
      messages.add(batch);
      advanceCursor(batch);
      if (!r.more || !batch.length) {
        state.gapFrom = null;
        flush();             // caught up: now the outbox may go (after a retry too)
        return;
      }
      from = batch[batch.length - 1].seq;
      state.gapFrom = from;
    }
  } catch (err) {
    if (err.code === 'disconnected' || err.code === 'not_joined') return;
    const delay = Math.min(10000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => {
      if (epoch === messages.epoch && state.joined) catchUp(from, attempt + 1);
    }, delay);
  }
}

function onJoinFailed(name, err, { rejoin }) {
  const code = err && err.code;
  if (code === 'disconnected' || code === 'timeout') {
    // The next welcome retries: a rejoin by itself, a join from the form
    // twice at most.
    if (code === 'timeout') conn.drop();
    if (rejoin) return;
    if (state.joinRetries < 2) {
      state.joinRetries++;
      state.retryJoin = name;
      return;
    }
  }
  if (code === 'already_joined') {
    // The server still has us joined (a reply was lost): leave, then join again.
    conn.request('leave').catch(() => {}).finally(() => {
      if (rejoin ? state.wantChat : true) join(name, { rejoin });
    });
    return;
  }
  if (rejoin && code === 'unavailable') {
    // Keep the chat on screen and try again with back-off.
    const delay = Math.min(10000, 500 * 2 ** state.rejoinAttempt++) * (0.5 + Math.random() / 2);
    clearTimeout(state.rejoinTimer);
    state.rejoinTimer = setTimeout(() => {
      if (state.wantChat && !state.joined && conn.isOpen) join(state.name, { rejoin: true });
    }, delay);
    showNotice('The chat is unavailable for a moment. Retrying…', 'warn');
    return;
  }
  if (rejoin) {
    // Our name went to someone else (or the token is no longer valid).
    backHome({ notice: code === 'name_taken'
      ? `${isolate(name)} is in use by someone else now. Pick a name to join again.`
      : errorText(JOIN_ERRORS, err), replace: true });
    showNameError(errorText(JOIN_ERRORS, err));
    return;
  }
  showNameError(errorText(JOIN_ERRORS, err));
  nameInput.focus();
}

function backHome({ notice: text = null, replace = false, prefill = state.name } = {}) {
  state.wantChat = false;
  state.token = null;
  state.cursor = null;
  state.gapFrom = null;
  clearTimeout(state.rejoinTimer);
  clearSession();
  clearTimeout(state.flushTimer);
  outbox.discard();
  setJoined(false);
  messages.clear();
  users.setMe(null);
  const url = '/';
  if (location.pathname !== '/' || location.search) {
    if (replace) history.replaceState({ view: 'home' }, '', url);
    else history.pushState({ view: 'home' }, '', url);
  }
  showView('home');
  if (prefill) nameInput.value = prefill;
  state.name = null;
  if (text) showNotice(text, 'warn');
  else hideNotice();
  showComposerError('');
}

function leave({ fromHistory = false } = {}) {
  const wasJoined = state.joined;
  backHome({ replace: fromHistory });
  if (fromHistory) history.replaceState({ view: 'home' }, '', '/');
  if (wasJoined && conn.isOpen) conn.request('leave').catch(() => {});
  nameInput.focus();
}

// --------------------------------------------------------------------- sending

// Composing puts the message in the outbox (with a fresh client_id) and
// clears the box; flush() sends the outbox in order, one at a time, and
// retries each message with the same client_id until a `sent` reply (or an
// error that says it can never be stored).
function send() {
  const raw = messageInput.value;
  const content = raw.trim();
  if (!content) return;
  const n = codePoints(content);
  if (n > MAX_CONTENT) {
    showComposerError(`Messages are at most 2,000 characters; this one has ${n.toLocaleString('en-US')}.`);
    return;
  }
  if (outbox.size >= MAX_OUTBOX) {
    showComposerError(SEND_ERRORS.full);
    return;
  }
  if (!bucket.take()) {
    startCooldown(bucket.wait());
    return;
  }
  if (outbox.name !== state.name) outbox.open(state.name);
  const item = outbox.add(content);
  messages.addPending(item.cid, content, state.joined ? 'Sending…' : 'Waiting for the connection…');
  messageInput.value = '';
  autosize();
  showComposerError('');
  updateControls();
  if (state.view === 'chat') messageInput.focus({ preventScroll: true });
  flush();
}

function renderOutbox() {
  for (const item of outbox.items) messages.addPending(item.cid, item.content, 'Waiting for the connection…');
}

function retryFlush(ms) {
  clearTimeout(state.flushTimer);
  state.flushTimer = setTimeout(() => { state.flushTimer = null; flush(); }, ms);
}

async function flush() {
  if (state.flushing || state.flushTimer !== null) return;
  if (!state.joined || !conn.isOpen || state.gapFrom !== null) {
    for (const item of outbox.items) messages.setPendingState(item.cid, 'Waiting for the connection…');
    return;
  }
  state.flushing = true;
  try {
    while (outbox.first && state.joined && conn.isOpen) {
      const item = outbox.first;
      messages.setPendingState(item.cid, 'Sending…');
      let r;
      try {
        r = await conn.request('send', { content: item.content, client_id: item.cid });
      } catch (err) {
        if (!onSendFailed(item, err)) return;
        continue;
      }
      state.sendAttempt = 0;
      outbox.remove(item.cid);
      messages.removePending(item.cid);
      if (r.message) {
        messages.add([r.message]);
        messages.scrollToBottom();
      }
    }
  } finally {
    state.flushing = false;
  }
}

// Returns true to go on with the next message, false to stop flushing (a
// timer, the next rejoin or the next composed message starts it again).
function onSendFailed(item, err) {
  const code = err && err.code;
  const backoff = () => Math.min(10000, 500 * 2 ** state.sendAttempt++) * (0.5 + Math.random() / 2);
  switch (code) {
    case 'disconnected':
    case 'not_joined':
      // The rejoin after the reconnect flushes again.
      messages.setPendingState(item.cid, 'Waiting for the connection…');
      return false;
    case 'timeout':
      // The socket looks dead; the outcome is unknown: the client_id makes
      // the re-send after the reconnect safe.
      messages.setPendingState(item.cid, 'Waiting for the connection…');
      conn.drop();
      return false;
    case 'unavailable':
      messages.setPendingState(item.cid, 'Not confirmed yet; retrying…');
      retryFlush(backoff());
      return false;
    case 'rate_limited':
      bucket.tokens = 0;
      messages.setPendingState(item.cid, 'Sending too fast; retrying…');
      retryFlush(Math.max(bucket.wait(), 200));
      return false;
    default:
      // content_invalid (or a code this client does not know): never stored,
      // never storable.  The text goes back to the box if it is empty.
      outbox.remove(item.cid);
      messages.removePending(item.cid);
      if (!messageInput.value.trim()) {
        messageInput.value = item.content;
        autosize();
      }
      showComposerError(errorText(SEND_ERRORS, err));
      updateControls();
      return true;
  }
}

function startCooldown(ms) {
  const wait = Math.max(ms, 100);
  showComposerError(`Easy there. You can send again in ${(wait / 1000).toFixed(1)} s.`);
  clearTimeout(state.cooldownTimer);
  state.cooldownTimer = setTimeout(() => {
    state.cooldownTimer = null;
    showComposerError('');
    updateControls();
  }, wait);
  updateControls();
}

function autosize() {
  messageInput.style.height = 'auto';
  messageInput.style.height = Math.min(messageInput.scrollHeight, 160) + 'px';
}

// -------------------------------------------------------------------- history

messages.onNeedOlder = async (before) => {
  if (!state.joined || !conn.isOpen || Date.now() < state.olderBlockedUntil) return;
  const epoch = messages.epoch;
  messages.setLoadingOlder(true);
  let ok = false;
  try {
    const r = await conn.request('history', { before, limit: HISTORY_PAGE });
    if (epoch !== messages.epoch) return;
    messages.add(Array.isArray(r.messages) ? r.messages : [], { older: true });
    messages.setMore(r.more);
    ok = true;
  } catch {
    state.olderBlockedUntil = Date.now() + 2000;
  } finally {
    if (epoch === messages.epoch) messages.setLoadingOlder(false);
  }
  if (ok) setTimeout(() => messages.maybeLoadOlder(), 0);
};

// ---------------------------------------------------------------------- pushes

conn.addEventListener('push', (ev) => {
  const msg = ev.detail;
  switch (msg.type) {
    case 'welcome':
      if (state.welcomeAt === null) state.welcomeAt = performance.now();
      users.setCounts(msg.total_users, msg.online_count);
      users.reload();
      if (state.wantChat && state.name) {
        join(state.name, { rejoin: true });
      } else if (state.retryJoin && state.view === 'home') {
        join(state.retryJoin);
      }
      state.retryJoin = null;
      updateControls();
      break;
    case 'presence_diff':
      users.applyDiff(msg);
      break;
    case 'message':
      if (!state.joined || !msg.message) break;
      messages.add([msg.message]);
      advanceCursor([msg.message]);
      if (document.hidden) {
        state.unseenWhileHidden++;
        document.title = `(${state.unseenWhileHidden}) Chatter · Lobby`;
      }
      break;
    case 'error':
      onErrorPush(msg);
      break;
    default:
      break;
  }
});

function onErrorPush(msg) {
  if (msg.code === 'taken_over') {
    setJoined(false);
    backHome({
      notice: 'You joined from another tab or window, so this one left the chat.',
      replace: true,
    });
    return;
  }
  console.warn('chatter: server error', msg.code, msg.message);
}

conn.addEventListener('state', () => {
  renderConn();
  updateControls();
});

conn.addEventListener('down', () => {
  users.suspend();
  if (state.joined) setJoined(false);
  state.joining = false;
  updateControls();
});

// ------------------------------------------------------------------- the page

joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = nameInput.value.trim();
  if (!validName(name)) {
    showNameError(name ? JOIN_ERRORS.name_invalid : 'Enter a name to join.');
    nameInput.focus();
    return;
  }
  if (!conn.isOpen) {
    showNameError('Not connected yet. Retrying…');
    return;
  }
  showNameError('');
  state.joinRetries = 0;
  join(name);
});

nameInput.addEventListener('input', () => {
  if (!nameError.hidden) showNameError('');
});

composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  send();
});

messageInput.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  }
});

messageInput.addEventListener('input', () => {
  autosize();
  if (!composerError.hidden && state.cooldownTimer === null) showComposerError('');
  updateControls();
});

leaveButton.addEventListener('click', () => leave());

$('#notice-close').addEventListener('click', hideNotice);

peopleToggle.addEventListener('click', () => {
  const open = chatView.classList.toggle('people-open');
  peopleToggle.setAttribute('aria-expanded', String(open));
  users.queueCheck();
});

users.onChange(() => {
  peopleToggleCount.textContent = users.onlineCount.toLocaleString('en-US');
});

window.addEventListener('popstate', () => {
  if (location.pathname === '/chat') {
    if (!state.wantChat) history.replaceState({ view: 'home' }, '', '/');
  } else if (state.wantChat) {
    leave({ fromHistory: true });
  }
});

window.addEventListener('online', () => conn.kick());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) {
    state.unseenWhileHidden = 0;
    document.title = state.view === 'chat' ? 'Chatter · Lobby' : 'Chatter';
    conn.kick();
  }
});

// Start: /chat with a saved session rejoins; anything else is the home view,
// with ?name= (or the saved name) pre-filled.
function start() {
  const params = new URLSearchParams(location.search);
  const wanted = (params.get('name') || '').trim();
  const saved = loadSession();
  if (location.pathname === '/chat' && saved && (!wanted || wanted === saved.name)) {
    state.wantChat = true;
    state.name = saved.name;
    state.token = saved.token;
    meName.textContent = saved.name;
    users.setMe(saved.name);
    messages.setMe(saved.name);
    outbox.open(saved.name);
    renderOutbox();
    setJoined(false);
    showView('chat');
  } else {
    if (location.pathname !== '/') {
      history.replaceState({ view: 'home' }, '', wanted ? '/?name=' + encodeURIComponent(wanted) : '/');
    }
    setJoined(false);
    showView('home');
    nameInput.value = wanted || (saved ? saved.name : '');
    nameInput.focus();
  }
  renderConn();
  conn.start();
}

start();

// For tests and debugging in the console.
window.chatter = { conn, state, users, messages, bucket, outbox };
