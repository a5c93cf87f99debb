// bench/peers/node/server.mjs: Chatter's protocol v2 (../shared/PROTOCOL.md)
// in Node.js with `ws` and `pg`, written as a competent Node developer would
// write it, so that chatter-load can measure the C server against it on the
// same machine, same database schema, same scenarios.
//
//   DATABASE_URL=postgresql://... PORT=4001 node bench/peers/node/server.mjs
//
// What it does to be fast, the usual Node way: one process, one event loop;
// a broadcast is JSON-encoded once into a Buffer that every socket's send()
// shares; inserts are batched (one multi-row INSERT per turn of the single
// writer, so seq order is commit order and pushes go out in seq order); the
// last 500 messages are kept encoded in memory for `joined`; presence diffs
// are coalesced into one frame per 50 ms window for every socket; the user
// directory is two sorted arrays (binary search, splice).
//
// Bounds: 64 KiB per WebSocket message (ws's maxPayload), OUTBOUND_MAX bytes
// queued per socket (then the socket is closed: a client that does not read
// cannot grow memory), burst 10 / 5 per second sends per socket, new users
// per address per minute from CHATTER_NEW_USERS_PER_MINUTE (default 20, 0 = no
// limit).  Env: PORT (4001), HOST (127.0.0.1), DATABASE_URL, LOG_LEVEL.
import http from 'node:http';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { WebSocketServer } = require('ws');
const pg = require('pg');

const PORT = Number(process.env.PORT || 4001);
const HOST = process.env.HOST || '127.0.0.1';
const NEW_USERS_PER_MINUTE = Number(process.env.CHATTER_NEW_USERS_PER_MINUTE ?? 20);
const OUTBOUND_MAX = 4 << 20;     // bytes queued per socket before it is closed
const HISTORY = 500;              // messages in `joined`
const DIFF_MS = 50;               // presence coalescing window
const BATCH_MAX = 500;            // rows per INSERT
const quiet = (process.env.LOG_LEVEL || 'info') !== 'debug';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL UNIQUE,
  inserted_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  content text NOT NULL, user_id uuid NOT NULL REFERENCES users (id), client_id text,
  inserted_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS messages_user_id_index ON messages (user_id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_user_client_id_index ON messages (user_id, client_id);
`;
const TS = `to_char(m.inserted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
const MSG_COLS = `m.id, m.seq, m.user_id, u.name, m.content, ${TS} AS inserted_at`;

// ------------------------------------------------------------- state

const users = new Map();       // name -> {id, name, metas: Map(phx_ref -> meta)}
const online = [];             // sorted names (by UTF-8 bytes)
const offline = [];
const sockets = new Set();     // every open socket (home and joined)
const joined = new Set();      // joined sockets
let recent = [];               // last HISTORY messages, encoded JSON strings
let recentJoined = null;       // recent.join(','), rebuilt once per change
let maxSeq = 0;
let dbOk = false;

const byteCmp = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
function lowerBound(arr, name) {
  let lo = 0, hi = arr.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (byteCmp(arr[mid], name) < 0) lo = mid + 1; else hi = mid; }
  return lo;
}
function insertSorted(arr, name) { arr.splice(lowerBound(arr, name), 0, name); }
function removeSorted(arr, name) {
  const i = lowerBound(arr, name);
  if (arr[i] === name) arr.splice(i, 1);
}

function counts() { return { total_users: users.size, online_count: online.length }; }

// ----------------------------------------------------------- presence

let pendingJoins = {}, pendingLeaves = {}, diffTimer = null;
function queueDiff(kind, name, meta) {
  const into = kind === 'join' ? pendingJoins : pendingLeaves;
  (into[name] ||= { metas: [] }).metas.push(meta);
  if (!diffTimer) diffTimer = setTimeout(flushDiff, DIFF_MS);
}
function flushDiff() {
  diffTimer = null;
  const frame = Buffer.from(JSON.stringify({ type: 'presence_diff', joins: pendingJoins, leaves: pendingLeaves, ...counts() }));
  pendingJoins = {}; pendingLeaves = {};
  for (const ws of sockets) send(ws, frame);
}
function trackJoin(ws, user) {
  const meta = { user_id: user.id, name: user.name, joined_at: new Date().toISOString(), phx_ref: crypto.randomBytes(8).toString('hex') };
  if (user.metas.size === 0) { removeSorted(offline, user.name); insertSorted(online, user.name); }
  user.metas.set(meta.phx_ref, meta);
  Object.defineProperty(meta, 'ws', { value: ws, enumerable: false }); // not sent in diffs
  ws.meta = meta;
  queueDiff('join', user.name, meta);
}
function trackLeave(ws) {
  const user = ws.user, meta = ws.meta;
  if (!user || !meta) return;
  user.metas.delete(meta.phx_ref);
  if (user.metas.size === 0) { removeSorted(online, user.name); insertSorted(offline, user.name); }
  queueDiff('leave', user.name, meta);
  ws.meta = null;
}

// ------------------------------------------------------------ helpers

function send(ws, data) {
  if (ws.readyState !== 1) return;
  if (ws.bufferedAmount > OUTBOUND_MAX) { ws.terminate(); return; }
  ws.send(data, { binary: false }); // a shared Buffer, sent as a text frame
}
function reply(ws, obj) { send(ws, JSON.stringify(obj)); }
function error(ws, ref, code, message = code) {
  const o = { type: 'error', code, message };
  if (ref !== undefined) o.ref = ref;
  reply(ws, o);
}
const NAME_RE = /^[\p{L}\p{Nd}_.-]+( [\p{L}\p{Nd}_.-]+)*$/u;
const CID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const chars = (s) => { let n = 0; for (const _ of s) n++; return n; };
const encodeMsg = (r) => JSON.stringify({ id: r.id, seq: Number(r.seq), user_id: r.user_id, name: r.name, content: r.content, inserted_at: r.inserted_at });

const newUsersByAddr = new Map(); // addr -> [timestamps]

// ------------------------------------------------------------- writer

// One writer: a batch is inserted in one statement, then the next; so seq
// order is commit order and every push goes out in seq order.
let queue = [], writing = false;
function enqueueSend(item) { queue.push(item); if (!writing) writeBatch(); }
async function writeBatch() {
  writing = true;
  while (queue.length) {
    const batch = queue.splice(0, BATCH_MAX);
    const vals = [], params = [];
    batch.forEach((b, i) => { vals.push(`($${3 * i + 1}, $${3 * i + 2}::uuid, $${3 * i + 3})`); params.push(b.content, b.user.id, b.cid); });
    let rows;
    try {
      const r = await pool.query(
        `WITH ins AS (INSERT INTO messages (content, user_id, client_id) VALUES ${vals.join(',')}
           ON CONFLICT (user_id, client_id) DO NOTHING RETURNING *)
         SELECT ${MSG_COLS}, m.client_id FROM ins m JOIN users u ON u.id = m.user_id ORDER BY m.seq`, params);
      rows = r.rows;
    } catch (e) {
      for (const b of batch) error(b.ws, b.ref, 'unavailable', 'database unavailable');
      continue;
    }
    const done = new Map(rows.map((r) => [r.user_id + '/' + r.client_id, r]));
    for (const r of rows) {
      const enc = encodeMsg(r);
      maxSeq = Math.max(maxSeq, Number(r.seq));
      recent.push(enc);
      if (recent.length > HISTORY) recent.shift();
      recentJoined = null;
      const frame = Buffer.from(`{"type":"message","message":${enc}}`);
      for (const ws of joined) send(ws, frame);
      r.enc = enc;
    }
    for (const b of batch) {
      const r = done.get(b.user.id + '/' + b.cid);
      if (r) { send(b.ws, `{"type":"sent","ref":${JSON.stringify(b.ref)},"message":${r.enc}}`); continue; }
      try { // a client_id already stored (a retry): answer with the stored one
        const q = await pool.query(`SELECT ${MSG_COLS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.user_id = $1 AND m.client_id = $2`, [b.user.id, b.cid]);
        if (q.rows[0]) send(b.ws, `{"type":"sent","ref":${JSON.stringify(b.ref)},"message":${encodeMsg(q.rows[0])}}`);
        else error(b.ws, b.ref, 'unavailable');
      } catch { error(b.ws, b.ref, 'unavailable'); }
    }
  }
  writing = false;
}

// ----------------------------------------------------------- requests

async function onJoin(ws, m) {
  if (ws.user) return error(ws, m.ref, 'already_joined');
  if (typeof m.name !== 'string' || (m.token != null && typeof m.token !== 'string')) return error(ws, m.ref, 'bad_request');
  const name = m.name.trim();
  const n = chars(name);
  if (n < 1 || n > 32 || !NAME_RE.test(name)) return error(ws, m.ref, 'name_invalid');
  let user = users.get(name);
  if (user && user.metas.size) {
    let holder = null; // a user's sockets are its metas' sockets: O(metas), not O(sockets)
    for (const meta of user.metas.values()) if (meta.ws.token && meta.ws.token === m.token) holder = meta.ws;
    if (!holder) return error(ws, m.ref, 'name_taken');
    trackLeave(holder); holder.user = null; holder.token = null; joined.delete(holder);
    error(holder, undefined, 'taken_over', 'taken over by another socket');
  }
  if (!user) {
    if (NEW_USERS_PER_MINUTE > 0) {
      const now = Date.now(), list = (newUsersByAddr.get(ws.addr) || []).filter((t) => now - t < 60000);
      if (list.length >= NEW_USERS_PER_MINUTE) return error(ws, m.ref, 'rate_limited');
      list.push(now); newUsersByAddr.set(ws.addr, list);
    }
    try {
      const r = await pool.query(`INSERT INTO users (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET updated_at = now() RETURNING id`, [name]);
      user = users.get(name) || { id: r.rows[0].id, name, metas: new Map() };
      if (!users.has(name)) { users.set(name, user); insertSorted(offline, name); }
    } catch { return error(ws, m.ref, 'unavailable'); }
    if (ws.readyState !== 1) return;
    if (user.metas.size) return error(ws, m.ref, 'name_taken');
  }
  ws.user = user;
  ws.token = crypto.randomBytes(16).toString('hex');
  ws.tokens = (ws.tokens || 0) + 1;
  trackJoin(ws, user);
  joined.add(ws);
  if (recentJoined === null) recentJoined = recent.join(',');
  send(ws, `{"type":"joined","ref":${JSON.stringify(m.ref ?? null)},"user":${JSON.stringify({ id: user.id, name, online: true })},"token":"${ws.token}","messages":[${recentJoined}],"more":${recent.length >= HISTORY && maxSeq > HISTORY},"total_users":${users.size},"online_count":${online.length}}`);
}

function onUsers(ws, m) {
  const lim = m.limit;
  if (typeof m.online !== 'boolean' || !Number.isInteger(lim) || lim < 1 || lim > 500 ||
      (m.after != null && typeof m.after !== 'string') || (m.prefix != null && (typeof m.prefix !== 'string' || chars(m.prefix) < 1 || chars(m.prefix) > 32)))
    return error(ws, m.ref, 'bad_request');
  const arr = m.online ? online : offline;
  let i = m.after != null ? lowerBound(arr, m.after) : 0;
  if (m.after != null && arr[i] === m.after) i++;
  if (m.prefix != null) { const j = lowerBound(arr, m.prefix); if (j > i) i = j; }
  const out = [];
  while (i < arr.length && out.length < lim && (m.prefix == null || arr[i].startsWith(m.prefix))) {
    const u = users.get(arr[i++]);
    out.push({ id: u.id, name: u.name, online: u.metas.size > 0 });
  }
  const more = i < arr.length && (m.prefix == null || arr[i].startsWith(m.prefix));
  reply(ws, { type: 'users', ref: m.ref, users: out, more });
}

function onSend(ws, m) {
  if (typeof m.content !== 'string' || (m.client_id != null && (typeof m.client_id !== 'string' || !CID_RE.test(m.client_id))))
    return error(ws, m.ref, 'bad_request');
  if (!ws.user) return error(ws, m.ref, 'not_joined');
  const content = m.content.trim(), n = chars(content);
  if (n < 1 || n > 2000 || content.includes('\u0000')) return error(ws, m.ref, 'content_invalid');
  // token bucket: burst 10, 5/s
  const now = Date.now();
  ws.tokensLeft = Math.min(10, (ws.tokensLeft ?? 10) + (now - (ws.lastRefill ?? now)) * 5 / 1000);
  ws.lastRefill = now;
  if (ws.tokensLeft < 1 && m.client_id == null) return error(ws, m.ref, 'rate_limited');
  if (ws.tokensLeft >= 1) ws.tokensLeft -= 1;
  else if (m.client_id != null) { /* a retry of a stored client_id uses no token: the writer decides */ }
  enqueueSend({ ws, ref: m.ref, content, user: ws.user, cid: m.client_id ?? crypto.randomUUID() });
}

async function onHistory(ws, m, catchUp) {
  if (!ws.user) return error(ws, m.ref, 'not_joined');
  const cursor = catchUp ? m.after : m.before, lim = catchUp ? HISTORY : m.limit;
  if (!Number.isInteger(cursor) || !Number.isInteger(lim) || lim < 1 || lim > 500) return error(ws, m.ref, 'bad_request');
  try {
    const r = catchUp
      ? await pool.query(`SELECT ${MSG_COLS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.seq > $1 ORDER BY m.seq LIMIT $2`, [cursor, lim + 1])
      : await pool.query(`SELECT * FROM (SELECT ${MSG_COLS} FROM messages m JOIN users u ON u.id = m.user_id WHERE m.seq < $1 ORDER BY m.seq DESC LIMIT $2) x ORDER BY seq`, [cursor, lim + 1]);
    let rows = r.rows, more = rows.length > lim;
    if (more) rows = catchUp ? rows.slice(0, lim) : rows.slice(1);
    send(ws, `{"type":"history","ref":${JSON.stringify(m.ref ?? null)},"messages":[${rows.map(encodeMsg).join(',')}],"more":${more}}`);
  } catch { error(ws, m.ref, 'unavailable'); }
}

function onFrame(ws, data, isBinary) {
  if (isBinary) return ws.close(1003);
  let m;
  try { m = JSON.parse(data); } catch { return error(ws, undefined, 'bad_request', 'not JSON'); }
  if (!m || typeof m !== 'object' || Array.isArray(m)) return error(ws, undefined, 'bad_request');
  if (m.ref != null && typeof m.ref !== 'number' && typeof m.ref !== 'string') return error(ws, undefined, 'bad_request');
  // Requests of one socket are answered in order: each waits for the one before.
  ws.chain = ws.chain.then(() => dispatch(ws, m)).catch(() => {});
}
function dispatch(ws, m) {
  switch (m.type) {
    case 'join': return onJoin(ws, m);
    case 'users': return onUsers(ws, m);
    case 'send': return onSend(ws, m);
    case 'history': return onHistory(ws, m, false);
    case 'catch_up': return onHistory(ws, m, true);
    case 'leave':
      if (!ws.user) return error(ws, m.ref, 'not_joined');
      trackLeave(ws); joined.delete(ws); ws.user = null; ws.token = null;
      return reply(ws, { type: 'left', ref: m.ref });
    case 'ping': return reply(ws, { type: 'pong', ref: m.ref });
    default: return error(ws, m.ref, 'bad_request', 'unknown type');
  }
}

// ------------------------------------------------------------- server

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    pool.query('SELECT 1').then(() => { res.writeHead(200); res.end('ok'); }, () => { res.writeHead(503); res.end('unavailable'); });
    return;
  }
  res.writeHead(404); res.end('not found');
});
const wss = new WebSocketServer({ server, path: '/ws', maxPayload: 65536, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  ws.addr = req.socket.remoteAddress;
  ws.chain = Promise.resolve();
  sockets.add(ws);
  send(ws, `{"type":"welcome","protocol":2,"total_users":${users.size},"online_count":${online.length}}`);
  ws.on('message', (d, bin) => onFrame(ws, d, bin));
  ws.on('close', () => { sockets.delete(ws); joined.delete(ws); trackLeave(ws); });
  ws.on('error', () => {});
});

async function main() {
  await pool.query(SCHEMA);
  const u = await pool.query('SELECT id, name FROM users');
  for (const r of u.rows) users.set(r.name, { id: r.id, name: r.name, metas: new Map() });
  offline.push(...[...users.keys()].sort(byteCmp));
  const h = await pool.query(`SELECT * FROM (SELECT ${MSG_COLS} FROM messages m JOIN users u ON u.id = m.user_id ORDER BY m.seq DESC LIMIT ${HISTORY}) x ORDER BY seq`);
  recent = h.rows.map(encodeMsg);
  maxSeq = h.rows.length ? Number(h.rows[h.rows.length - 1].seq) : 0;
  dbOk = true;
  server.listen(PORT, HOST, () => { if (!quiet) console.log(`node peer on ${HOST}:${PORT}, ${users.size} users`); });
}
process.on('SIGTERM', () => { server.close(); pool.end().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
main().catch((e) => { console.error('node peer:', e.message); process.exit(1); });
void dbOk;
