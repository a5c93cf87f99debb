// End-to-end browser tests: the real chatter server, headless Debian chromium
// driven by playwright-core.  Run with
//   node --test --test-concurrency=1 test/browser/
// Screenshots of each view land in _build/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setUp, tearDown, openPage, gotoHome, join, send, waitForMessage, messageIds,
  countMessagesWithText, userDot, uniqueName, screenshot, assertNoProblems, DESKTOP, PHONE,
} from './helpers.mjs';

let env;
const pages = [];

before(async () => {
  env = await setUp();
});

after(async () => {
  for (const p of pages) await p.context().close().catch(() => {});
  await tearDown(env);
});

async function page(options = DESKTOP) {
  const p = await openPage(env.browser, env.server.base, options);
  pages.push(p);
  return p;
}

test('two users join, see each other online, chat both ways, and see a leave', { timeout: 90000 }, async () => {
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const a = await page();
  const b = await page();

  await join(a, alice);
  assert.equal(new URL(a.url()).pathname, '/chat');
  assert.equal(new URL(a.url()).searchParams.get('name'), alice);
  assert.equal(await a.textContent('#me-name'), alice);
  await a.waitForSelector('#conn-status[data-state="connected"]');

  // Bob's home view shows Alice online, live, with the counts.
  await gotoHome(b);
  await b.waitForSelector(userDot(alice, 'online'));
  const total = Number(await b.textContent('#total-users'));
  const online = Number(await b.textContent('#online-count'));
  assert.ok(total >= 1 && online >= 1 && online <= total, `counts: ${online} online of ${total}`);
  await screenshot(b, 'home.png');

  await b.fill('#name-input', bob);
  await b.click('#join-button');
  await b.waitForSelector('#app[data-joined="true"]');

  // Each sees the other come online.
  await a.waitForSelector(userDot(bob, 'online'));
  await b.waitForSelector(userDot(alice, 'online'));

  // Both ways.
  const m1 = `hi ${bob}, this is ${alice}. Welcome to the lobby!`;
  const id1 = await send(a, m1);
  assert.equal(await waitForMessage(b, m1), id1);
  const m2 = `hello ${alice}! Good to see you here.`;
  const id2 = await send(b, m2);
  assert.equal(await waitForMessage(a, m2), id2);

  // Newest at the bottom, with name and time.
  const last = await a.$eval('#messages .message[data-id]:last-of-type', (n) => ({
    id: n.dataset.id,
    name: n.querySelector('.message-name').textContent,
    time: n.querySelector('.message-time').textContent,
  }));
  assert.equal(last.id, id2);
  assert.equal(last.name, bob);
  assert.match(last.time, /\d/);
  assert.equal(await a.getAttribute('#message-input', 'placeholder'), 'type your message here...');
  await screenshot(a, 'chat.png');

  // A phone-sized chat view.
  const phone = await page(PHONE);
  await join(phone, uniqueName('phone'));
  await phone.waitForSelector(`#messages .message[data-id="${id2}"]`);
  await screenshot(phone, 'chat-phone.png');
  await phone.click('#people-toggle');
  await phone.waitForSelector(`#chat-people-slot ${userDot(alice, 'online')}:visible`);
  await screenshot(phone, 'chat-phone-people.png');

  // Bob leaves: he is home again, and Alice sees his dot go grey.
  await b.click('#leave-button');
  await b.waitForSelector('#name-input:visible');
  assert.equal(new URL(b.url()).pathname, '/');
  await a.waitForSelector(userDot(bob, 'offline'));
  assert.equal(await a.$(userDot(bob, 'online')), null);
  await b.waitForSelector(userDot(bob, 'offline'));

  assertNoProblems(assert, a, b, phone);
});

test('a reload rejoins with the saved token and catches up without duplicates', { timeout: 90000 }, async () => {
  const carol = uniqueName('carol');
  const dave = uniqueName('dave');
  const c = await page();
  const d = await page();
  await join(c, carol);
  await join(d, dave);
  const texts = [];
  for (let i = 1; i <= 3; i++) {
    const t = `before reload ${i} from ${carol}`;
    texts.push(t);
    await send(c, t);
  }
  await waitForMessage(d, texts[2]);

  // Reload while joined; Dave writes meanwhile.
  const reloaded = c.reload();
  const during = `while ${carol} reloads`;
  await send(d, during);
  await reloaded;
  await c.waitForSelector('#app[data-joined="true"]');
  assert.equal(new URL(c.url()).pathname, '/chat');
  assert.equal(await c.textContent('#me-name'), carol);
  for (const t of [...texts, during]) await waitForMessage(c, t);

  const after1 = `after reload from ${dave}`;
  await send(d, after1);
  await waitForMessage(c, after1);

  const ids = await messageIds(c);
  assert.equal(new Set(ids).size, ids.length, 'every message element has a distinct id');
  for (const t of [...texts, during, after1]) assert.equal(await countMessagesWithText(c, t), 1, t);
  // Carol never went offline for Dave (the token took the name over).
  assert.ok(await d.$(userDot(carol, 'online')));
  assertNoProblems(assert, c, d);
});

test('a dropped socket reconnects, rejoins and catches up', { timeout: 90000 }, async () => {
  const erin = uniqueName('erin');
  const frank = uniqueName('frank');
  const e = await page();
  const f = await page();
  await join(e, erin);
  await join(f, frank);
  await send(e, `${erin} is here`);

  // Cut Erin's socket and hold the reconnect back while Frank writes.
  await e.evaluate(() => window.chatter.conn.drop(1500));
  await e.waitForSelector('#conn-status[data-state="reconnecting"]');
  const missed = `${frank} wrote this while ${erin} was away`;
  await send(f, missed);

  await e.waitForSelector('#conn-status[data-state="connected"]');
  await e.waitForSelector('#app[data-joined="true"]');
  await waitForMessage(e, missed);
  const after1 = `${frank} again, after the reconnect`;
  await send(f, after1);
  await waitForMessage(e, after1);
  assert.equal(await countMessagesWithText(e, missed), 1);
  assert.equal(await countMessagesWithText(e, after1), 1);
  const ids = await messageIds(e);
  assert.equal(new Set(ids).size, ids.length);
  assertNoProblems(assert, e, f);
});

test('HTML in a message is shown as text and never runs', { timeout: 60000 }, async () => {
  const gina = uniqueName('gina');
  const hank = uniqueName('hank');
  const g = await page();
  const h = await page();
  await join(g, gina);
  await join(h, hank);
  const evil = '<img src=x onerror=alert(1)>';
  const id = await send(g, evil);
  assert.equal(await waitForMessage(h, evil), id);
  for (const p of [g, h]) {
    const text = await p.textContent(`#messages .message[data-id="${id}"] .message-content`);
    assert.equal(text, evil);
    assert.equal(await p.$$eval('#messages img', (n) => n.length), 0, 'no img element');
    assert.equal(await p.$$eval('img', (n) => n.length), 0, 'no img element anywhere');
  }
  // A name with HTML-ish text is never accepted, and never rendered as HTML.
  assertNoProblems(assert, g, h);
});

test('the name form shows name_taken and name_invalid inline', { timeout: 60000 }, async () => {
  const ivan = uniqueName('ivan');
  const i = await page();
  const j = await page();
  await join(i, ivan);

  await gotoHome(j);
  await j.fill('#name-input', ivan);
  await j.click('#join-button');
  await j.waitForSelector('#name-error:visible');
  assert.match(await j.textContent('#name-error'), /in use/i);
  assert.equal(new URL(j.url()).pathname, '/');

  await j.fill('#name-input', 'no  double spaces');
  await j.click('#join-button');
  await j.waitForSelector('#name-error:visible');
  assert.match(await j.textContent('#name-error'), /letters, digits/i);

  // ?name= pre-fills the form.
  await j.goto(`${j.base}/chat?name=${encodeURIComponent(ivan + 'x')}`);
  await j.waitForSelector('#name-input:visible');
  assert.equal(await j.inputValue('#name-input'), ivan + 'x');
  assertNoProblems(assert, i, j);
});
