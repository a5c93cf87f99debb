// The WebSocket to the server: requests keyed by `ref`, pushes, a heartbeat,
// and automatic reconnection with exponential back-off and jitter
// (0.5 s doubling to 10 s), as PROTOCOL.md's "Reconnecting" asks.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const REQUEST_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 20000;
const PING_TIMEOUT_MS = 10000;
const HEALTHY_AFTER_MS = 5000;

export class RequestError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.state = 'connecting';   // connecting | connected | reconnecting
    this.attempt = 0;
    this.nextRef = 1;
    this.pending = new Map();    // ref -> {resolve, reject, timer, type}
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.holdUntil = 0;          // test hook: delay the next reconnect
    this.healthyTimer = null;
  }

  start() {
    this.open();
  }

  open() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.warn('chatter: cannot open socket', err);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (ws !== this.ws) return;
      this.startHeartbeat();
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== this.ws) return;
      this.onFrame(ev.data);
    });
    ws.addEventListener('close', (ev) => {
      if (ws !== this.ws) return;
      this.onClosed(ev.code);
    });
    ws.addEventListener('error', () => {
      // A 'close' event always follows; reconnection happens there.
    });
  }

  onFrame(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      // A reply may have been lost with it: start over on a fresh socket
      // (rejoin and catch-up repair the state).
      console.warn('chatter: frame is not JSON; reconnecting', String(data).slice(0, 200));
      this.drop();
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;

    if (msg.type === 'welcome') {
      // The socket is usable.  The back-off starts over once it has stayed up
      // a little while, so that a server that drops every socket at once is
      // not hammered.
      clearTimeout(this.healthyTimer);
      this.healthyTimer = setTimeout(() => { this.attempt = 0; }, HEALTHY_AFTER_MS);
      this.setState('connected');
    }

    if (msg.ref !== undefined && msg.ref !== null && this.pending.has(msg.ref)) {
      const req = this.pending.get(msg.ref);
      this.pending.delete(msg.ref);
      clearTimeout(req.timer);
      if (msg.type === 'error') req.reject(new RequestError(msg.code, msg.message));
      else req.resolve(msg);
      return;
    }
    if (msg.type === 'pong') return;
    this.dispatchEvent(new CustomEvent('push', { detail: msg }));
  }

  onClosed(code) {
    clearTimeout(this.healthyTimer);
    this.stopHeartbeat();
    this.ws = null;
    for (const [, req] of this.pending) {
      clearTimeout(req.timer);
      req.reject(new RequestError('disconnected', 'connection lost'));
    }
    this.pending.clear();
    this.dispatchEvent(new CustomEvent('down', { detail: { code } }));
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    this.setState('reconnecting');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    // "Equal jitter": between half and all of the step.
    let delay = base / 2 + Math.random() * (base / 2);
    delay = Math.max(delay, this.holdUntil - Date.now());
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  // Reconnect now (e.g. the tab came back online), skipping the wait.
  kick() {
    if (this.ws || !this.reconnectTimer || Date.now() < this.holdUntil) return;
    this.open();
  }

  // Close the current socket and let the reconnect logic run (used when the
  // heartbeat goes unanswered, and by tests).
  drop(holdMs = 0) {
    this.holdUntil = Date.now() + holdMs;
    const ws = this.ws;
    if (!ws) return;
    this.onClosed(4000);
    try { ws.close(); } catch { /* already closing */ }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN && this.state === 'connected';
  }

  // Sends a request and resolves with its reply (rejects with RequestError).
  request(type, fields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new RequestError('disconnected', 'not connected'));
        return;
      }
      const ref = this.nextRef++;
      const timer = setTimeout(() => {
        if (!this.pending.has(ref)) return;
        this.pending.delete(ref);
        reject(new RequestError('timeout', 'no reply from the server'));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer, type });
      this.ws.send(JSON.stringify({ type, ref, ...fields }));
    });
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (!this.isOpen) return;
      this.request('ping', {}, PING_TIMEOUT_MS).catch((err) => {
        if (err.code === 'timeout') this.drop();
      });
    }, PING_EVERY_MS);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}

export function socketUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}
