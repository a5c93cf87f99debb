// A small protocol client for the tests: connect, await welcome, requests with
// an automatic ref and their replies, pushes by type and predicate, every frame
// collected, the close code.  Everything is awaited; nothing sleeps to
// synchronise (settle() is for asserting that nothing more arrives).
import WebSocket from 'ws';
import http from 'node:http';
import crypto from 'node:crypto';

export const TIMEOUT = Number(process.env.PROTO_TIMEOUT_MS || 5000);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// f() run ms from now: a load's schedule (welcome_kill, chaos_pacing), not a wait for an event.
export const at = (ms, f) => new Promise((r) => setTimeout(() => r(f()), ms));

// A unique name per run (the database persists): prefix + 8 hex digits.
export function uniq(prefix = 'u') {
  return `${prefix}_${crypto.randomBytes(4).toString('hex')}`;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const USEC_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$/;
export const ISO_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

const open = new Set();

export class Client {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];      // every parsed frame, in arrival order
    this.waiters = new Set();
    this.nextRef = 1;
    this.sentAt = new Map(); // ref -> frame index when the request was sent
    this.closeInfo = null; // {code, reason} once closed
    this.wsErrors = [];
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        open.delete(this);
        resolve(this.closeInfo);
        this._wake();
      });
    });
    ws.on('message', (data, isBinary) => {
      let f;
      try { f = JSON.parse(data.toString('utf8')); } catch { f = { type: '__unparseable', raw: data.toString(), isBinary }; }
      if (isBinary) f = { type: '__binary', raw: data.toString() };
      this.frames.push(f);
      this._wake();
    });
    ws.on('error', (e) => { this.wsErrors.push(e); });
    open.add(this);
  }

  _wake() { for (const w of [...this.waiters]) w(); }

  // Index of the next frame to arrive: pass as `since` to wait for later frames.
  mark() { return this.frames.length; }

  // The first frame (from index `since`) satisfying pred, now or later.
  waitFor(pred, { since = 0, timeout = TIMEOUT, what = 'a matching frame' } = {}) {
    return new Promise((resolve, reject) => {
      let i = since;
      const scan = () => {
        for (; i < this.frames.length; i++) {
          if (pred(this.frames[i])) { done(); resolve(this.frames[i]); return true; }
        }
        if (this.closeInfo) {
          done();
          reject(new Error(`socket closed (${this.closeInfo.code}) while waiting for ${what}; last frames: ${this._tail()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timeout (${timeout} ms) waiting for ${what}; last frames: ${this._tail()}`));
      }, timeout);
      const w = () => { scan(); };
      const done = () => { clearTimeout(timer); this.waiters.delete(w); };
      if (!scan()) this.waiters.add(w);
    });
  }

  _tail(n = 6) {
    return this.frames.slice(-n).map((f) => JSON.stringify(f).slice(0, 300)).join(' | ');
  }

  // Pushes carry no ref.
  push(type, pred = () => true, opts = {}) {
    return this.waitFor((f) => f.type === type && !('ref' in f) && pred(f), { what: `push ${type}`, ...opts });
  }

  pushes(type, since = 0) {
    return this.frames.slice(since).filter((f) => f.type === type && !('ref' in f));
  }

  // Message records pushed to this socket (in arrival order).
  messages(since = 0) { return this.pushes('message', since).map((f) => f.message); }

  sendJSON(obj) { this.ws.send(JSON.stringify(obj)); }

  sendRaw(data, opts = {}) {
    return new Promise((resolve) => this.ws.send(data, opts, (err) => resolve(err || null)));
  }

  // Sends obj with a fresh ref (unless it has one) and returns the ref.
  sendReq(obj) {
    const ref = 'ref' in obj ? obj.ref : this.nextRef++;
    this.sentAt.set(JSON.stringify(ref), this.frames.length);
    this.sendJSON({ ...obj, ref });
    return ref;
  }

  // The first frame carrying `ref` since the request with that ref was sent.
  reply(ref, opts = {}) {
    const since = this.sentAt.get(JSON.stringify(ref)) ?? 0;
    return this.waitFor((f) => 'ref' in f && f.ref === ref, { what: `reply to ref ${JSON.stringify(ref)}`, since, ...opts });
  }

  // Sends a request with an automatic ref and resolves with its direct reply.
  request(obj, opts = {}) { return this.reply(this.sendReq(obj), opts); }

  // A history or catch_up request that must succeed: resolves with the reply.
  async read(obj, opts = {}) {
    const r = await this.request(obj, opts);
    if (r.type !== 'history') throw new Error(`${obj.type} failed: ${JSON.stringify(r).slice(0, 300)}`);
    return r;
  }

  async join(name, token) {
    const req = { type: 'join', name };
    if (token !== undefined) req.token = token;
    return this.request(req);
  }

  // Joins and throws unless the reply is `joined`.
  async joinOk(name, token) {
    const r = await this.join(name, token);
    if (r.type !== 'joined') throw new Error(`join ${JSON.stringify(name)} failed: ${JSON.stringify(r)}`);
    this.user = r.user;
    this.token = r.token;
    return r;
  }

  async sendOk(content) {
    const r = await this.request({ type: 'send', content });
    if (r.type !== 'sent') throw new Error(`send failed: ${JSON.stringify(r)}`);
    return r.message;
  }

  // A ping/pong round trip proves the server has handled everything sent before;
  // then a short bounded wait, used only where the assertion is an absence.
  async settle(ms = 300) {
    const r = await this.request({ type: 'ping' });
    if (r.type !== 'pong') throw new Error(`ping got ${JSON.stringify(r)}`);
    await sleep(ms);
  }

  // One `users` page; throws unless the reply is `users`.
  async users(online, { after, prefix, limit = 500 } = {}) {
    const req = { type: 'users', online, limit };
    if (after !== undefined) req.after = after;
    if (prefix !== undefined) req.prefix = prefix;
    const r = await this.request(req);
    if (r.type !== 'users') throw new Error(`users failed: ${JSON.stringify(r).slice(0, 300)}`);
    return r;
  }

  // Every user of one index whose name starts with prefix (all when
  // undefined), page after page, and the frame index after the last reply.
  async allUsers(online, prefix) {
    const out = [];
    let after;
    for (;;) {
      const r = await this.users(online, { after, prefix });
      out.push(...r.users);
      if (!r.more) return out;
      after = r.users[r.users.length - 1].name;
    }
  }

  // The directory's record of exactly this name, or undefined.
  // A user is in exactly one of the two lists at any moment, but it may
  // move from the one not yet asked to the one already asked between the
  // two requests (a join or a leave that presence takes meanwhile): then
  // both miss it, and the pair is asked again.
  async findUser(name) {
    for (let round = 0; round < 5; round++) {
      for (const online of [true, false]) {
        const r = await this.users(online, { prefix: name, limit: 5 });
        const u = r.users.find((x) => x.name === name);
        if (u) return u;
      }
    }
    return undefined;
  }

  waitClose(timeout = TIMEOUT) {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`socket not closed within ${timeout} ms; last frames: ${this._tail()}`)), timeout);
    });
    // the timer is cleared once the socket closed, or it would keep node alive
    return Promise.race([this.closed, expired]).finally(() => clearTimeout(timer));
  }

  isOpen() { return this.ws.readyState === WebSocket.OPEN; }

  async close() {
    if (this.closeInfo) return this.closeInfo;
    try { this.ws.close(); } catch { /* ignore */ }
    const t = setTimeout(() => this.ws.terminate(), 2000);
    const info = await this.closed;
    clearTimeout(t);
    return info;
  }
}

// Opens a socket and (unless welcome: false) awaits the unasked welcome.
export async function connect(url, { welcome = true, timeout = TIMEOUT } = {}) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const c = new Client(ws);
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`connect ${url}: timeout`)), timeout);
    ws.once('open', () => { clearTimeout(t); resolve(); });
    ws.once('error', (e) => { clearTimeout(t); reject(e); });
    ws.once('close', (code) => { clearTimeout(t); reject(new Error(`connect ${url}: closed ${code}`)); });
  });
  if (welcome) {
    c.welcome = await c.waitFor(() => true, { what: 'welcome', timeout });
    if (c.welcome.type !== 'welcome') throw new Error(`first frame is not welcome: ${JSON.stringify(c.welcome).slice(0, 300)}`);
  }
  return c;
}

// Connects and joins a fresh (or given) name.
export async function joined(url, name = uniq()) {
  const c = await connect(url);
  c.joinedReply = await c.joinOk(name);
  return c;
}

export async function closeAll() {
  await Promise.all([...open].map((c) => c.close()));
}

// A raw HTTP GET: the path is sent as is (fetch() would normalise "..").
export function httpGet(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET', headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(TIMEOUT, () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.end();
  });
}

// POST /debug/kill?name=NAME (a server started with CHATTER_DEBUG=1): the
// registered actor is killed, and the answer must be 200.  The body is read:
// an unread one keeps the connection (and node) alive.
export async function kill(assert, server, name) {
  const r = await fetch(`${server.base}/debug/kill?name=${name}`, { method: 'POST' });
  await r.text();
  assert.equal(r.status, 200, `kill ${name}`);
}

// A counter of the server's /metrics, by name.
export async function metric(assert, server, name) {
  const res = await httpGet(server.port, '/metrics');
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(res.text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

// The server's database round-trip counter.
export const dbQueries = (assert, server) => metric(assert, server, 'chatter_db_queries_total');

// Shape checks shared by the test files.
// UTF-8 byte order, the directory's (PROTOCOL.md): negative when a < b.
export function byteCompare(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// A NO-LIMIT server env for suites that create many users from 127.0.0.1.
export const MANY_USERS = { CHATTER_NEW_USERS_PER_MINUTE: '0' };

export function checkUser(assert, u) {
  assert.equal(typeof u, 'object');
  assert.match(u.id, UUID_RE, `user.id ${JSON.stringify(u)}`);
  assert.equal(typeof u.name, 'string');
  assert.equal(typeof u.online, 'boolean');
}

export function checkMessage(assert, m) {
  assert.equal(typeof m, 'object', `message ${JSON.stringify(m)}`);
  assert.match(m.id, UUID_RE, `message.id ${JSON.stringify(m)}`);
  assert.ok(Number.isInteger(m.seq), `message.seq ${JSON.stringify(m)}`);
  assert.match(m.user_id, UUID_RE, `message.user_id ${JSON.stringify(m)}`);
  assert.equal(typeof m.name, 'string');
  assert.equal(typeof m.content, 'string');
  assert.match(m.inserted_at, USEC_RE, `message.inserted_at ${JSON.stringify(m)}`);
}

export function checkIncreasing(assert, msgs, what = 'messages') {
  for (let i = 1; i < msgs.length; i++) {
    assert.ok(msgs[i].seq > msgs[i - 1].seq, `${what} not strictly increasing at ${i}: ${msgs[i - 1].seq} then ${msgs[i].seq}`);
  }
}

export function checkError(assert, f, code, ref) {
  assert.equal(f.type, 'error', `expected error ${code}, got ${JSON.stringify(f)}`);
  assert.equal(f.code, code, `expected error ${code}, got ${JSON.stringify(f)}`);
  if (ref === undefined) assert.ok(!('ref' in f), `error should carry no ref: ${JSON.stringify(f)}`);
  else assert.deepEqual(f.ref, ref);
  if (f.code !== 'taken_over') assert.equal(typeof f.message, 'string', `error message should be a string: ${JSON.stringify(f)}`);
}

// Asserts the server process is still alive (a crash would show as timeouts).
export function checkAlive(assert, server) {
  const ex = server.exited();
  assert.equal(ex, null, `server exited: ${JSON.stringify(ex)}\n${server.logs().slice(-4000)}`);
}

// A client's picture of the directory, built as PROTOCOL.md says a client
// builds it: counts from welcome/joined/diffs, users from `users` pages, and
// each diff applied meta by meta (joins, then leaves, keyed by phx_ref).  A
// page sets what it lists; diffs after it move those users.  `errors`
// collects every disagreement (a leave of a meta never seen online, counts
// that do not match once the whole directory has been read).
export class DirectoryView {
  constructor() {
    this.users = new Map(); // name -> {id, refs:Set, pageOnline}
    this.total = null;
    this.online = null;
    this.complete = false;  // every page of both indexes has been applied
    this.errors = [];
  }
  isOnline(name) { const u = this.users.get(name); return !!u && (u.refs.size > 0 || u.pageOnline); }
  onlineCount() { let n = 0; for (const k of this.users.keys()) if (this.isOnline(k)) n++; return n; }
  apply(f) {
    if (f.type === 'welcome' || f.type === 'joined') {
      this.total = f.total_users; this.online = f.online_count;
    } else if (f.type === 'users') {
      for (const u of f.users) this.users.set(u.name, { id: u.id, refs: new Set(), pageOnline: u.online });
    } else if (f.type === 'presence_diff') {
      for (const [name, { metas }] of Object.entries(f.joins)) {
        if (!this.users.has(name)) this.users.set(name, { id: metas[0].user_id, refs: new Set(), pageOnline: false });
        for (const m of metas) this.users.get(name).refs.add(m.phx_ref);
      }
      for (const [name, { metas }] of Object.entries(f.leaves)) {
        const u = this.users.get(name);
        if (!u) { if (this.complete) this.errors.push(`leave of unknown ${name}`); continue; }
        for (const m of metas) {
          if (u.refs.has(m.phx_ref)) u.refs.delete(m.phx_ref);
          else if (u.pageOnline) u.pageOnline = false;
          else if (this.complete) this.errors.push(`leave of ${name} ${m.phx_ref}, not online here`);
        }
      }
      this.total = f.total_users; this.online = f.online_count;
      if (this.complete) this.check(`diff ${JSON.stringify(f).slice(0, 200)}`);
    }
  }
  check(what) {
    if (this.total !== this.users.size) this.errors.push(`${what}: total_users ${this.total} != ${this.users.size} known`);
    if (this.online !== this.onlineCount()) this.errors.push(`${what}: online_count ${this.online} != ${this.onlineCount()} online here`);
  }
}

// Reads the whole directory on c (online pages, then offline pages) and
// returns a view with every frame of c applied in arrival order: pages
// where they arrived among the diffs, as a real client would.
export async function readDirectory(c) {
  await c.allUsers(true);
  await c.allUsers(false);
  const v = new DirectoryView();
  const end = c.frames.length;
  let lastPage = -1;
  for (let i = 0; i < end; i++) if (c.frames[i].type === 'users') lastPage = i;
  for (let i = 0; i < end; i++) {
    v.apply(c.frames[i]);
    if (i === lastPage) { v.complete = true; v.check('after the last page'); }
  }
  v.applied = end;
  return v;
}
