// Shared set-up for the browser tests: the real server, Debian's chromium
// through playwright-core, pages that record errors and dialogs, and small
// helpers that wait for events (never for fixed times).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after, afterEach } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer, freePort } from '../lib/server.mjs';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const screenshotDir = path.join(root, '_build', 'screenshots');

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export const DESKTOP = { viewport: { width: 1280, height: 800 } };
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

// A name unique to this run: the database outlives it.
export function uniqueName(prefix) {
  return `${prefix}_${Math.random().toString(36).slice(2, 8)}`;
}

// What every browser-test server is started with (beyond test/lib/server.mjs's
// defaults, which already lift the limit on new names per address).
export const SERVER_ENV = {};

// The server (SERVER_ENV and `env` on top of test/lib/server.mjs's defaults;
// `timeoutMs` for its start) and Debian's chromium.
export async function setUp({ env = {}, timeoutMs } = {}) {
  const server = await startServer({ env: { ...SERVER_ENV, ...env }, timeoutMs });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
  fs.mkdirSync(screenshotDir, { recursive: true });
  return { server, browser };
}

export async function tearDown({ server, browser } = {}) {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
}

// A test file's browser set-up, as node:test hooks: before its tests, the
// server and chromium (setUp; `serverOptions` is awaited first, for what must
// be ready before the server starts); after each test, the contexts of the
// pages it opened close, so that later tests do not share the CPU with idle
// tabs; after them all, both stop.  The suite's `server` and `browser` are
// set by the time the tests run; suite.page() opens a page (openPage) that
// the next afterEach closes, on the suite's server unless `base` is given.
export function browserSuite(serverOptions = async () => ({})) {
  const pages = [];
  const suite = {
    server: null,
    browser: null,
    async page(options = DESKTOP, base = suite.server.base) {
      const p = await openPage(suite.browser, base, options);
      pages.push(p);
      return p;
    },
  };
  before(async () => {
    Object.assign(suite, await setUp(await serverOptions()));
  });
  afterEach(async () => {
    for (const p of pages.splice(0)) await p.context().close().catch(() => {});
  });
  after(async () => {
    await tearDown(suite);
  });
  return suite;
}

// A new browser context and page.  page.problems collects uncaught errors,
// console errors and dialogs (any dialog is a failure: alert() must never
// run).  web/index.html carries a strict Content-Security-Policy of its own
// (default-src 'self'), so an inline script or style, or a resource from
// elsewhere, is refused with a console error ("Refused to ...") and fails
// the test whatever header the server sends.
export async function openPage(browser, base, options = DESKTOP) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.setDefaultTimeout(30000);   // generous: the machine is shared (2 cores, load 20+ seen)
  page.problems = { errors: [], dialogs: [], badFrames: [] };
  // Every frame from the server must be one JSON object (PROTOCOL.md).
  page.frames_ = [];
  page.sent = [];             // every request this page sent, parsed, in order
  const note = (line) => {
    page.frames_.push(`${new Date().toISOString().slice(11, 23)} ${line.slice(0, 240)}`);
    if (page.frames_.length > 40) page.frames_.shift();
  };
  page.on('websocket', (ws) => {
    note(`open ${ws.url()}`);
    ws.on('close', () => note('close'));
    ws.on('socketerror', (e) => note(`socket error ${e}`));
    ws.on('framesent', ({ payload }) => {
      note(`> ${String(payload)}`);
      try { page.sent.push(JSON.parse(String(payload))); } catch { /* not ours to judge */ }
    });
    ws.on('framereceived', ({ payload }) => {
      const text = String(payload);
      note(`< ${text}`);
      try {
        const msg = JSON.parse(text);
        if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') throw new Error('no type');
      } catch (err) {
        page.problems.badFrames.push(`${err.message}; ${text.length} bytes: ${text.slice(0, 160)}…`);
      }
    });
  });
  page.on('pageerror', (err) => page.problems.errors.push(String(err)));
  page.on('dialog', (dialog) => {
    page.problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.errors.push(`console: ${msg.text()}`);
  });
  page.base = base;
  return page;
}

export async function gotoHome(page) {
  await page.goto(page.base + '/');
  await page.waitForSelector('#conn-status[data-state="connected"]');
  await page.waitForSelector('#name-input:visible');
}

// Joins from the home view and waits for the chat view.  `unavailable`
// (PostgreSQL briefly away: other suites stop it on purpose) is shown inline;
// then the helper waits for /healthz and clicks again.
export async function join(page, name) {
  await gotoHome(page);
  await page.fill('#name-input', name);
  for (let attempt = 1; ; attempt++) {
    await page.click('#join-button');
    await explained(page, () => page.waitForSelector('#app[data-joined="true"], #name-error:visible', { timeout: 20000 }));
    if (await page.$('#app[data-joined="true"]')) break;
    const error = await page.textContent('#name-error');
    if (!/unavailable/i.test(error) || attempt >= 5) {
      throw new Error(`join as ${name} failed: ${error}\nlast frames:\n  ${page.frames_.join('\n  ')}`);
    }
    await waitHealthy(page.base);
    await page.waitForSelector('#join-button:enabled');
  }
  await page.waitForSelector('#message-input:visible');
}

// Polls /healthz until the server says the database answers.
export async function waitHealthy(base, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(base + '/healthz')).status === 200) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${base}/healthz not 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Waits for the page to be joined; on failure the error tells what the
// socket carried and what the client thought.
export async function waitJoined(page, timeout = 20000) {
  await explained(page, () => page.waitForSelector('#app[data-joined="true"]', { timeout }));
}

// Runs a wait; when it fails, adds the client's state and the last frames.
export async function explained(page, wait) {
  try {
    return await wait();
  } catch (err) {
    let state = '';
    try {
      state = await page.evaluate(() => JSON.stringify({
        url: location.href,
        conn: window.chatter.conn.state,
        pending: [...window.chatter.conn.pending.keys()],
        state: window.chatter.state,
        nameError: document.querySelector('#name-error').textContent,
        composerError: document.querySelector('#composer-error').textContent,
      }));
    } catch (e) {
      state = `(page state unavailable: ${e.message})`;
    }
    err.message += `\nclient: ${state}\nlast frames:\n  ${page.frames_.join('\n  ')}`;
    throw err;
  }
}

export function userDot(name, state) {
  return `.user[data-name="${name}"] .dot.${state}`;
}

// Sends a message through the UI and waits until it is on screen as a stored
// message (it has an id: a `sent` reply or a push, not the pending copy of
// the outbox).  The client itself retries `unavailable` with the same
// client_id, so the helper does not.
export async function send(page, text) {
  await page.fill('#message-input', text);
  await page.click('#send-button');
  // Taken into the outbox (the box is cleared), or refused under the box.
  await explained(page, () => page.waitForFunction(() => document.querySelector('#message-input').value === ''
    || !document.querySelector('#composer-error').hidden));
  if ((await page.inputValue('#message-input')) !== '') {
    throw new Error(`send refused: ${await page.textContent('#composer-error')}\nlast frames:\n  ${page.frames_.join('\n  ')}`);
  }
  return waitForMessage(page, text, await page.textContent('#me-name'));
}

// A count shown on the page ("100,001" -> 100001).
export function numberIn(page, selector) {
  return page.$eval(selector, (n) => Number(n.textContent.replace(/,/g, '')));
}

// When things happened in the page, in ms since navigation started: the
// client script ran, the welcome came, each section's first page showed.
export function pageTiming(page) {
  return page.evaluate(() => {
    const c = window.chatter;
    const r = (x) => (x === null ? null : Math.round(x));
    return { script: r(c.state.scriptAt), welcome: r(c.state.welcomeAt),
      online: r(c.users.firstPageAt.online), offline: r(c.users.firstPageAt.offline) };
  });
}

// The names shown in a directory section ('online' or 'offline'), in order.
export function sectionNames(page, section) {
  return page.$$eval(`#${section}-list .user`, (nodes) => nodes.map((n) => n.dataset.name));
}

// Waits until a directory section's pages are loaded and settled.
export async function sectionSettled(page, section) {
  await explained(page, () => page.waitForFunction((s) => {
    const st = document.querySelector(`#${s}-status`).dataset.state;
    return st !== 'loading' && st !== 'idle';
  }, section));
}

// Waits until a message with exactly this text (and, if given, from this
// sender) is shown; returns the id of the newest such message.
export async function waitForMessage(page, text, from = null) {
  const handle = await explained(page, () => page.waitForFunction(([t, name]) => {
    const nodes = [...document.querySelectorAll('#messages .message[data-id]')].reverse();
    for (const node of nodes) {
      if (node.querySelector('.message-content').textContent === t
          && (name === null || node.dataset.name === name)) return node.dataset.id;
    }
    return null;
  }, [text, from]));
  return handle.jsonValue();
}

// Ids of every message element, in page order.
export function messageIds(page) {
  return page.$$eval('#messages .message[data-id]', (nodes) => nodes.map((n) => n.dataset.id));
}

export function countMessagesWithText(page, text) {
  return page.$$eval('#messages .message[data-id] .message-content',
    (nodes, t) => nodes.filter((n) => n.textContent === t).length, text);
}

export async function screenshot(page, file) {
  await page.screenshot({ path: path.join(screenshotDir, file) });
}

export function assertNoProblems(assert, ...pages) {
  for (const page of pages) {
    assert.deepEqual(page.problems.badFrames, [], 'the server sent frames that are not JSON objects');
    assert.deepEqual(page.problems.dialogs, [], 'no dialog may open');
    assert.deepEqual(page.problems.errors, [], 'no page errors');
  }
}

// ------------------------------------------------ a plain WebSocket client
// Used only to prepare data (enough messages for infinite scroll).
import WebSocket from 'ws';

export class WsClient {
  static async open(url) {
    const c = new WsClient(url);
    await c.welcome;
    return c;
  }

  constructor(url) {
    this.ws = new WebSocket(url);
    this.ref = 1;
    this.pending = new Map();
    this.welcome = new Promise((resolve, reject) => {
      this.ws.once('error', reject);
      this.ws.on('message', (data) => {
        const msg = JSON.parse(String(data));
        if (msg.type === 'welcome') resolve(msg);
        if (msg.ref !== undefined && this.pending.has(msg.ref)) {
          const { ok, fail, timer } = this.pending.get(msg.ref);
          this.pending.delete(msg.ref);
          clearTimeout(timer);
          if (msg.type === 'error') fail(Object.assign(new Error(`${msg.code}: ${msg.message}`), { code: msg.code }));
          else ok(msg);
        }
      });
    });
  }

  request(type, fields = {}, timeoutMs = 10000) {
    const ref = this.ref++;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        fail(new Error(`no reply to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(ref, { ok, fail, timer });
      this.ws.send(JSON.stringify({ type, ref, ...fields }));
    });
  }

  close() {
    this.ws.close();
  }
}

// Makes sure the lobby holds more than `min` messages, so that a joining
// client gets `more: true` and must page back with `history`.  One user sends
// bursts of 10 (the rate limit), moving to a fresh socket by token take-over
// between bursts.
export async function ensureMessages(wsUrl, min, name = uniqueName('backfill')) {
  let client = await WsClient.open(wsUrl);
  let joined = await client.request('join', { name });
  if (joined.more || joined.messages.length > min) {
    client.close();
    return 0;
  }
  let need = min + 1 - joined.messages.length;
  let sent = 0;
  while (need > 0) {
    const burst = Math.min(10, need);
    const replies = [];
    for (let i = 0; i < burst; i++) {
      sent++;
      replies.push(client.request('send', { content: `Backfill message ${sent} (for the infinite-scroll test)` }));
    }
    await Promise.all(replies);
    need -= burst;
    if (need > 0) {
      const next = await WsClient.open(wsUrl);
      joined = await next.request('join', { name, token: joined.token });
      client.close();
      client = next;
    }
  }
  await client.request('leave');
  client.close();
  return sent;
}

// A server on a port chosen by the caller, so that it can be stopped and
// started again where the browsers expect it.  Resolves once /healthz is 200.
export function startServerOn(port, timeoutMs = 20000) {
  return startServer({ port, timeoutMs, env: SERVER_ENV });
}

export { freePort };
