// The directory at 100,000 users (issue 6 §1): a server on a database of its
// own seeded with seed_000001 .. seed_100000 (test/lib/bigdb.mjs), and the
// browser client's Online and Offline sections, paged with `users` requests.
// Shown here: the home and chat views render their first pages as soon as
// the socket is welcomed; scrolling loads the next page, in byte order,
// without gaps or duplicates; the search box narrows both sections by exact
// prefix; the counts follow joins and leaves.  No timing is asserted: the
// figures are printed as diagnostics.  Screenshots land in _build/screenshots/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserSuite, gotoHome, join, userDot, uniqueName, screenshot, assertNoProblems, sectionNames, sectionSettled,
  pageTiming, PHONE,
} from './helpers.mjs';
import { bigDatabase, seedName, SEEDED } from '../lib/bigdb.mjs';

const PAGE = 50;            // web/js/directory.js's page size

// The server on the seeded database (made first, if it is not there yet).
const { page } = browserSuite(async () => ({ env: { DATABASE_URL: await bigDatabase() }, timeoutMs: 60000 }));

// Test users are named after every seed name (v > s), so the Offline
// section's first pages are exactly the seed names.
function viewer() {
  return uniqueName('viewer');
}

function seeds(from, count) {
  return Array.from({ length: count }, (_, i) => seedName(from + i));
}

const count = (p, sel) => p.$eval(sel, (n) => Number(n.textContent.replace(/,/g, '')));

async function scrollToEnd(p) {
  await p.$eval('#people-scroll', (s) => { s.scrollTop = s.scrollHeight; });
}

test('home view: first pages at once, scrolling loads the next ones in byte order', { timeout: 180000 }, async (t) => {
  const p = await page();
  const t0 = Date.now();
  await gotoHome(p);
  await sectionSettled(p, 'offline');
  await sectionSettled(p, 'online');
  const tm = await pageTiming(p);
  t.diagnostic(`home view, ${SEEDED} users: ${Date.now() - t0} ms from goto to both first pages settled; in the page `
    + `(ms since navigation): script ${tm.script}, welcome ${tm.welcome}, first Online page ${tm.online}, first Offline page ${tm.offline}`);
  assert.ok(tm.online !== null && tm.offline !== null && tm.welcome !== null);
  assert.ok(await count(p, '#total-users') >= SEEDED, 'total_users counts the seeded users');
  assert.deepEqual(await sectionNames(p, 'offline'), seeds(1, PAGE), 'the first page: the smallest names');
  assert.equal(await p.getAttribute('#offline-status', 'data-state'), 'more');
  assert.equal(await p.$$eval('.user', (n) => n.length) <= 2 * PAGE, true, 'nothing beyond the first pages is in the DOM');
  await screenshot(p, 'directory-home.png');

  // Each scroll to the end loads exactly one more page, continuing in order.
  for (let n = 2; n <= 4; n++) {
    await scrollToEnd(p);
    await p.waitForFunction((want) => document.querySelectorAll('#offline-list .user').length >= want, n * PAGE);
    await sectionSettled(p, 'offline');
    assert.deepEqual(await sectionNames(p, 'offline'), seeds(1, n * PAGE), `after scroll ${n - 1}`);
  }
  await screenshot(p, 'directory-home-scrolled.png');

  const phone = await page(PHONE);
  await gotoHome(phone);
  await sectionSettled(phone, 'offline');
  assert.deepEqual(await sectionNames(phone, 'offline'), seeds(1, PAGE));
  await screenshot(phone, 'directory-home-phone.png');
  assertNoProblems(assert, p, phone);
});

test('the search box narrows both sections by exact prefix, and pages too', { timeout: 180000 }, async () => {
  const p = await page();
  await gotoHome(p);
  await sectionSettled(p, 'offline');

  // seed_099900 .. seed_099999: 100 matches, two pages.
  await p.fill('#people-search', 'seed_0999');
  await p.waitForFunction(() => document.querySelector('#offline-list .user')?.dataset.name === 'seed_099900');
  await sectionSettled(p, 'offline');
  assert.deepEqual(await sectionNames(p, 'offline'), seeds(99900, PAGE));
  assert.deepEqual(await sectionNames(p, 'online'), []);
  assert.match(await p.textContent('#online-status'), /No one online matches/);
  await screenshot(p, 'directory-search.png');
  await scrollToEnd(p);
  await p.waitForFunction((want) => document.querySelectorAll('#offline-list .user').length >= want, 2 * PAGE);
  await sectionSettled(p, 'offline');
  assert.deepEqual(await sectionNames(p, 'offline'), seeds(99900, 2 * PAGE));
  assert.equal(await p.getAttribute('#offline-status', 'data-state'), 'end', 'no page after the last match');

  // One match; then none (the comparison is exact: no case folding).
  await p.fill('#people-search', 'seed_1');
  await p.waitForFunction(() => document.querySelector('#offline-list .user')?.dataset.name === 'seed_100000');
  await sectionSettled(p, 'offline');
  assert.deepEqual(await sectionNames(p, 'offline'), ['seed_100000']);
  await p.fill('#people-search', 'SEED_');
  await p.waitForSelector('#offline-status[data-state="empty"]');
  assert.deepEqual(await sectionNames(p, 'offline'), []);
  assert.match(await p.textContent('#offline-status'), /No one offline matches/);

  // Cleared: the whole directory again, from the start.
  await p.fill('#people-search', '');
  await p.waitForFunction(() => document.querySelector('#offline-list .user')?.dataset.name === 'seed_000001');
  await sectionSettled(p, 'offline');
  assert.deepEqual(await sectionNames(p, 'offline'), seeds(1, PAGE));
  assertNoProblems(assert, p);
});

test('counts and sections follow joins and leaves; the chat view loads at once', { timeout: 180000 }, async (t) => {
  const home = await page();
  await gotoHome(home);
  await sectionSettled(home, 'online');
  const total0 = await count(home, '#total-users');
  const online0 = await count(home, '#online-count');

  // A new user joins: one more in total and online, shown in Online.
  const name = viewer();
  const chat = await page();
  const t0 = Date.now();
  await join(chat, name);
  await sectionSettled(chat, 'offline');
  const tm = await pageTiming(chat);
  t.diagnostic(`chat view, ${SEEDED} users: ${Date.now() - t0} ms from goto to joined with the first pages; in the page `
    + `(ms since navigation): script ${tm.script}, welcome ${tm.welcome}, first Online page ${tm.online}, first Offline page ${tm.offline}`);
  assert.deepEqual(await sectionNames(chat, 'offline'), seeds(1, PAGE), 'the chat view has the first Offline page');
  await chat.waitForSelector(`#online-list ${userDot(name, 'online')}`);
  await home.waitForSelector(`#online-list ${userDot(name, 'online')}`);
  await home.waitForFunction(([t1, o1]) => {
    const n = (s) => Number(document.querySelector(s).textContent.replace(/,/g, ''));
    return n('#total-users') === t1 && n('#online-count') === o1;
  }, [total0 + 1, online0 + 1]);
  assert.equal(await count(home, '#offline-section-count'), total0 - online0, 'offline = total - online');
  await screenshot(chat, 'directory-chat.png');

  // Scrolling the chat view's sidebar pages too.
  await scrollToEnd(chat);
  await chat.waitForFunction((want) => document.querySelectorAll('#offline-list .user').length >= want, 2 * PAGE);

  // A phone joins; its people panel opens on the loaded pages.
  const phone = await page(PHONE);
  const phoneName = viewer();
  await join(phone, phoneName);
  await phone.click('#people-toggle');
  await phone.waitForSelector(`#chat-people-slot ${userDot(phoneName, 'online')}:visible`);
  await sectionSettled(phone, 'offline');
  assert.deepEqual((await sectionNames(phone, 'offline')).slice(0, PAGE), seeds(1, PAGE));
  await screenshot(phone, 'directory-chat-phone.png');
  await home.waitForFunction((o) => Number(document.querySelector('#online-count').textContent.replace(/,/g, '')) === o,
    online0 + 2);

  // Leaves: out of Online, the count back down, and found Offline by name.
  await chat.click('#leave-button');
  await phone.click('#leave-button');
  await home.waitForSelector(`#online-list .user[data-name="${name}"]`, { state: 'detached' });
  await home.waitForFunction((o) => Number(document.querySelector('#online-count').textContent.replace(/,/g, '')) === o,
    online0);
  assert.equal(await count(home, '#total-users'), total0 + 2);
  // Offline holds seed names up to its last loaded one; a name beyond that
  // range is not inserted (the page that reaches it will bring it).
  assert.equal(await home.$(`#offline-list .user[data-name="${name}"]`), null);
  await home.fill('#people-search', name);
  await home.waitForSelector(`#offline-list ${userDot(name, 'offline')}`);
  assertNoProblems(assert, home, chat, phone);
});
