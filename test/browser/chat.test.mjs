// End-to-end browser tests: the real chatter server, headless Debian chromium
// driven by playwright-core, protocol v2.  Run with
//   node test/lib/run-tests.mjs test/browser      (or: make test-browser)
// Screenshots of each view land in _build/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import {
  browserSuite, gotoHome, join, waitJoined, send, waitForMessage, messageIds,
  countMessagesWithText, userDot, uniqueName, screenshot, assertNoProblems, ensureMessages, DESKTOP, PHONE,
  startServerOn, freePort, numberIn,
} from './helpers.mjs';

const env = browserSuite();
const { page } = env;

// A page per name, all opened first, then each joined in turn.
async function joinedPages(...names) {
  const opened = [];
  for (let i = 0; i < names.length; i++) opened.push(await page());
  for (let i = 0; i < names.length; i++) await join(opened[i], names[i]);
  return opened;
}

test('two users join, see each other online, chat both ways, and see a leave', { timeout: 180000 }, async () => {
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
  const total = await numberIn(b, '#total-users');
  const online = await numberIn(b, '#online-count');
  assert.ok(total >= 1 && online >= 1 && online <= total, `counts: ${online} online of ${total}`);
  await screenshot(b, 'home.png');

  await b.fill('#name-input', bob);
  await b.click('#join-button');
  await waitJoined(b);

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
  const phoneName = uniqueName('phone');
  await join(phone, phoneName);
  await phone.waitForSelector(`#messages .message[data-id="${id2}"]`);
  await screenshot(phone, 'chat-phone.png');
  await phone.click('#people-toggle');
  await phone.waitForSelector(`#chat-people-slot ${userDot(alice, 'online')}:visible`);
  await screenshot(phone, 'chat-phone-people.png');

  // Bob leaves: he is home again; Alice sees him leave the Online section
  // and the count drop, and finds him Offline by searching his name.
  await a.waitForSelector(userDot(phoneName, 'online'));   // every join so far is counted
  const onlineBefore = await numberIn(a, '#online-count');
  await b.click('#leave-button');
  await b.waitForSelector('#name-input:visible');
  assert.equal(new URL(b.url()).pathname, '/');
  await a.waitForSelector(`#online-list .user[data-name="${bob}"]`, { state: 'detached' });
  await a.waitForFunction((n) => Number(document.querySelector('#online-count').textContent.replace(/,/g, '')) === n,
    onlineBefore - 1);
  await a.fill('#people-search', bob);
  await a.waitForSelector(`#offline-list ${userDot(bob, 'offline')}`);
  assert.equal(await a.$(userDot(bob, 'online')), null);
  await b.fill('#people-search', bob);
  await b.waitForSelector(`#offline-list ${userDot(bob, 'offline')}`);

  assertNoProblems(assert, a, b, phone);
});

test('a reload rejoins with the saved token and catches up without duplicates', { timeout: 180000 }, async () => {
  const carol = uniqueName('carol');
  const dave = uniqueName('dave');
  const [c, d] = await joinedPages(carol, dave);
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
  await waitJoined(c);
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

test('a dropped socket reconnects, rejoins and catches up', { timeout: 180000 }, async () => {
  const erin = uniqueName('erin');
  const frank = uniqueName('frank');
  const [e, f] = await joinedPages(erin, frank);
  await send(e, `${erin} is here`);

  // Cut Erin's socket and hold the reconnect back while Frank writes.
  await e.evaluate(() => window.chatter.conn.drop(1500));
  await e.waitForSelector('#conn-status[data-state="reconnecting"]');
  const missed = `${frank} wrote this while ${erin} was away`;
  await send(f, missed);

  await e.waitForSelector('#conn-status[data-state="connected"]');
  await waitJoined(e);
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

test('HTML in a message is shown as text and never runs', { timeout: 120000 }, async () => {
  const gina = uniqueName('gina');
  const hank = uniqueName('hank');
  const [g, h] = await joinedPages(gina, hank);
  const evil = '<img src=x onerror=alert(1)>';
  const id = await send(g, evil);
  assert.equal(await waitForMessage(h, evil, gina), id);
  for (const p of [g, h]) {
    const text = await p.textContent(`#messages .message[data-id="${id}"] .message-content`);
    assert.equal(text, evil);
    assert.equal(await p.$$eval('#messages img', (n) => n.length), 0, 'no img element');
    assert.equal(await p.$$eval('img', (n) => n.length), 0, 'no img element anywhere');
  }
  // A name with HTML-ish text is never accepted, and never rendered as HTML.
  assertNoProblems(assert, g, h);
});

test('the name form shows name_taken and name_invalid inline', { timeout: 120000 }, async () => {
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

test('scrolling up loads older messages; the view sticks to the bottom unless scrolled up', { timeout: 240000 }, async () => {
  await ensureMessages(env.server.wsUrl, 620);
  const kim = uniqueName('kim');
  const lee = uniqueName('lee');
  const [k, l] = await joinedPages(kim, lee);
  await k.waitForSelector('#messages .message[data-id]');
  const first = await messageIds(k);
  assert.equal(first.length, 500, 'join brings the 500 most recent messages');
  const atBottom = () => k.$eval('#messages', (s) => s.scrollHeight - s.scrollTop - s.clientHeight < 4);
  assert.ok(await atBottom(), 'starts at the bottom');

  // Scroll to the top: history pages in, above, without duplicates, in seq order.
  await k.$eval('#messages', (s) => { s.scrollTop = 0; });
  await k.waitForFunction(() => document.querySelectorAll('#messages .message[data-id]').length >= 600);
  const seqs = await k.$$eval('#messages .message[data-id]', (n) => n.map((x) => Number(x.dataset.seq)));
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seq order at ${i}`);
  const ids = await messageIds(k);
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual(ids.slice(-500), first, 'the older page went above what was there');

  // Scrolled up: a new message does not move the view; a "new messages" pill appears.
  await k.$eval('#messages', (s) => { s.scrollTop = s.scrollHeight / 2; });
  const top = await k.$eval('#messages', (s) => s.scrollTop);
  const text = `${lee} says hi while ${kim} reads old messages`;
  await send(l, text);
  await waitForMessage(k, text);
  await k.waitForSelector('#jump-button:visible');
  assert.ok(Math.abs((await k.$eval('#messages', (s) => s.scrollTop)) - top) < 4, 'did not scroll');
  await k.click('#jump-button');
  await k.waitForFunction(() => {
    const s = document.querySelector('#messages');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 4;
  });

  // At the bottom: new messages keep it there.
  const text2 = `${lee} again`;
  await send(l, text2);
  await waitForMessage(k, text2);
  await k.waitForFunction(() => {
    const s = document.querySelector('#messages');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 4;
  });
  assertNoProblems(assert, k, l);
});

test('the client throttles sends like the server (burst 10, 5 a second)', { timeout: 120000 }, async () => {
  const m = await page();
  const max = uniqueName('max');
  await join(m, max);

  // The bucket itself, on a fake clock.
  const steps = await m.evaluate(async () => {
    const { TokenBucket } = await import('/js/ratelimit.js');
    let now = 0;
    const b = new TokenBucket({ capacity: 10, perSecond: 5, now: () => now });
    const out = {};
    let n = 0;
    while (b.take()) n++;
    out.burst = n;                       // 10 at once
    out.waitMs = b.wait();               // 200 ms for the next
    now += 199;
    out.at199 = b.take();
    now += 1;
    out.at200 = b.take();
    now += 1000;
    n = 0;
    while (b.take()) n++;
    out.perSecond = n;                   // 5 a second sustained
    now += 60000;
    n = 0;
    while (b.take()) n++;
    out.refilled = n;                    // never more than the burst
    return out;
  });
  assert.deepEqual(steps, { burst: 10, waitMs: 200, at199: false, at200: true, perSecond: 5, refilled: 10 });

  // The page: with the bucket empty, a send is held back with a notice and
  // the text stays in the box; once a token is back, it goes through.
  // Empty, on a clock that stands still until the test lets a token come
  // back (a real clock would refill during a slow step of the test).
  // The notice shows for the 200 ms of the cooldown only, which a polling
  // wait can miss on a loaded machine: a MutationObserver latches it.
  await m.evaluate(() => {
    const b = window.chatter.bucket;
    const frozen = performance.now();
    b.now = () => frozen;
    b.stamp = frozen;
    b.tokens = 0;
    const box = document.querySelector('#composer-error');
    window.cooldownNotice = new Promise((resolve) => {
      new MutationObserver((_, observer) => {
        if (!box.hidden) {
          observer.disconnect();
          resolve(box.textContent);
        }
      }).observe(box, { attributes: true, childList: true, characterData: true, subtree: true });
    });
  });
  const held = `held back for a moment, says ${max}`;
  await m.fill('#message-input', held);
  await m.press('#message-input', 'Enter');
  assert.match(await m.evaluate(() => window.cooldownNotice), /send again in/i);
  assert.equal(await m.inputValue('#message-input'), held);
  assert.equal(m.sent.filter((f) => f.type === 'send' && f.content === held).length, 0, 'nothing sent yet');
  await m.evaluate(() => {
    const b = window.chatter.bucket;
    b.now = () => performance.now();
    b.stamp = performance.now() - 200;      // one token's worth of time has passed
  });
  await m.waitForSelector('#composer-error', { state: 'hidden' });
  await m.click('#send-button');
  await m.waitForFunction(() => document.querySelector('#message-input').value === '');
  await waitForMessage(m, held, max);
  assertNoProblems(assert, m);
});

test('a tab whose name is taken over with its token goes home with a notice', { timeout: 120000 }, async () => {
  const nia = uniqueName('nia');
  const first = await page();
  await join(first, nia);
  const saved = await first.evaluate(() => sessionStorage.getItem('chatter.session'));
  assert.ok(saved && JSON.parse(saved).token, 'the token is kept in sessionStorage');

  // Another window carrying the same session (as a duplicated tab would).
  const second = await page();
  await second.addInitScript((s) => sessionStorage.setItem('chatter.session', s), saved);
  await second.goto(`${second.base}/chat?name=${encodeURIComponent(nia)}`);
  await waitJoined(second);
  assert.equal(await second.textContent('#me-name'), nia);

  await first.waitForSelector('#notice:visible');
  assert.match(await first.textContent('#notice-text'), /another tab/i);
  await first.waitForSelector('#name-input:visible');
  assert.equal(new URL(first.url()).pathname, '/');
  assert.equal(await first.evaluate(() => sessionStorage.getItem('chatter.session')), null);
  // The name stayed online throughout.
  await first.waitForSelector(userDot(nia, 'online'));
  await screenshot(first, 'home-notice.png');
  assertNoProblems(assert, first, second);
});

test('the client rides out a server restart: reconnects, rejoins, catches up', { timeout: 240000 }, async (t) => {
  const port = await freePort();
  let server = await startServerOn(port);
  t.after(() => server.stop());
  const olga = uniqueName('olga');
  const paul = uniqueName('paul');
  const o = await page(DESKTOP, server.base);
  const p = await page(DESKTOP, server.base);
  await join(o, olga);
  await join(p, paul);
  const before1 = await send(o, `${olga} before the restart`);

  await server.stop();
  await o.waitForSelector('#conn-status[data-state="reconnecting"]');
  await screenshot(o, 'chat-reconnecting.png');
  server = await startServerOn(port);

  // Both come back by themselves, under the same names.
  await o.waitForSelector('#conn-status[data-state="connected"]', { timeout: 60000 });
  await waitJoined(o, 30000);
  await waitJoined(p, 30000);
  assert.equal(await o.textContent('#me-name'), olga);
  await o.waitForSelector(userDot(paul, 'online'));
  const after1 = `${paul} after the restart`;
  await send(p, after1);
  await waitForMessage(o, after1, paul);
  const ids = await messageIds(o);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.ok(ids.includes(before1));
  // The socket errors while the server was down are expected; dialogs and
  // bad frames are not.
  for (const page of [o, p]) {
    page.problems.errors = page.problems.errors.filter((e) => !/WebSocket connection to .* failed/.test(e));
  }
  assertNoProblems(assert, o, p);
});

test('a message whose `sent` never came is re-sent with its client_id after the reconnect and shown once',
  { timeout: 180000 }, async () => {
    const quinn = uniqueName('quinn');
    const rita = uniqueName('rita');
    const [q, r] = await joinedPages(quinn, rita);

    // The socket drops right after the `send` frame leaves, before any reply:
    // the server may have stored the message (and pushed it to Rita) or not.
    await q.evaluate(() => {
      const conn = window.chatter.conn;
      const ws = conn.ws;
      const plain = ws.send.bind(ws);
      ws.send = (data) => {
        plain(data);
        if (JSON.parse(data).type === 'send') conn.drop(60000);   // held until released below
      };
    });
    const lost = `${quinn}: the reply to this one is lost`;
    await q.fill('#message-input', lost);
    await q.click('#send-button');
    await q.waitForSelector('#conn-status[data-state="reconnecting"]');
    assert.equal(await q.textContent('#pending-list .message.pending .message-content'), lost,
      'shown as pending while unconfirmed');
    await screenshot(q, 'chat-pending.png');

    // Composed while the socket is down: queued, sent after the rejoin.
    const queued = `${quinn}: written while reconnecting`;
    await q.fill('#message-input', queued);
    await q.click('#send-button');
    assert.equal(await q.inputValue('#message-input'), '');
    assert.equal(await q.$$eval('#pending-list .message.pending', (n) => n.length), 2);

    await q.evaluate(() => {
      window.chatter.conn.holdUntil = 0;
      window.chatter.conn.kick();
    });
    await waitJoined(q);
    await waitForMessage(q, lost, quinn);
    await waitForMessage(q, queued, quinn);
    await q.waitForFunction(() => document.querySelectorAll('#pending-list .message').length === 0);

    // Every send of `lost` carried the same client_id, a fresh one unlike the
    // second message's.
    const sends = q.sent.filter((m) => m.type === 'send');
    const lostSends = sends.filter((m) => m.content === lost);
    assert.ok(lostSends.length >= 2, `sent before the drop and again after: ${JSON.stringify(sends)}`);
    assert.match(lostSends[0].client_id, /^[A-Za-z0-9_-]{1,64}$/);
    assert.ok(lostSends.every((m) => m.client_id === lostSends[0].client_id), 'one client_id for every retry');
    const queuedSends = sends.filter((m) => m.content === queued);
    assert.equal(queuedSends.length, 1);
    assert.notEqual(queuedSends[0].client_id, lostSends[0].client_id);

    // Exactly once for both, in order: a later message has arrived after any
    // duplicate would have (pushes come in seq order).
    const last = `${quinn}: after the reconnect`;
    const lastId = await send(q, last);
    assert.equal(await waitForMessage(r, last, quinn), lastId);
    for (const p of [q, r]) {
      assert.equal(await countMessagesWithText(p, lost), 1, 'the lost-reply message once');
      assert.equal(await countMessagesWithText(p, queued), 1, 'the queued message once');
      const ids = await messageIds(p);
      assert.equal(new Set(ids).size, ids.length, 'no message element twice');
    }
    for (const p of [q, r]) {
      p.problems.errors = p.problems.errors.filter((e) => !/WebSocket/.test(e));
    }
    assertNoProblems(assert, q, r);
  });

test('user text is isolated for bidi and shown as text; invisible names are refused', { timeout: 120000 }, async () => {
  const sam = uniqueName('sam');
  const [s, u] = await joinedPages(sam, uniqueName('uma'));
  // CVE-2021-42574's trick: a right-to-left override left open, an isolate
  // left open.  Inside the message they act; outside it they must not.
  const tricky = `admin\u202E gnp.exe\u2067 says hi`;
  const id = await send(s, tricky);
  await waitForMessage(u, tricky, sam);
  for (const p of [s, u]) {
    const shown = await p.$eval(`#messages .message[data-id="${id}"]`, (node) => {
      const parts = ['.message-name', '.message-content'].map((sel) => node.querySelector(sel));
      return parts.map((n) => ({ dir: n.getAttribute('dir'), bidi: getComputedStyle(n).unicodeBidi, text: n.textContent }));
    });
    assert.deepEqual(shown, [
      { dir: 'auto', bidi: 'isolate', text: sam },
      { dir: 'auto', bidi: 'isolate', text: tricky },
    ]);
    const names = await p.$$eval('.user .user-name, #me-name', (nodes) =>
      nodes.map((n) => `${n.getAttribute('dir')} ${getComputedStyle(n).unicodeBidi}`));
    assert.ok(names.length > 0);
    assert.deepEqual([...new Set(names)], ['auto isolate'], 'every name is isolated');
  }

  // A name that renders blank (U+3164 HANGUL FILLER is a letter) is refused
  // by the form before anything is sent.
  const v = await page();
  await gotoHome(v);
  await v.fill('#name-input', '\u3164\u3164');
  await v.click('#join-button');
  await v.waitForSelector('#name-error:visible');
  assert.equal(v.sent.filter((m) => m.type === 'join').length, 0);
  assert.equal(new URL(v.url()).pathname, '/');
  assertNoProblems(assert, s, u, v);
});

test('join rate_limited (too many new names from one address) is explained inline', { timeout: 120000 }, async (t) => {
  const server = await startServer({ env: { CHATTER_NEW_USERS_PER_MINUTE: '1' } });
  t.after(() => server.stop());
  const w = await page(DESKTOP, server.base);
  await join(w, uniqueName('wes'));
  await w.click('#leave-button');
  await w.waitForSelector('#name-input:visible');
  await w.fill('#name-input', uniqueName('wes'));
  await w.click('#join-button');
  await w.waitForSelector('#name-error:visible');
  assert.match(await w.textContent('#name-error'), /too many new names/i);
  assert.equal(new URL(w.url()).pathname, '/');
  assertNoProblems(assert, w);
});
