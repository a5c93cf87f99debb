// Running Chatter as a service (issue 9 §2): logfmt lines, LOG_FILE reopened
// on SIGHUP (logrotate's way), and `make install`'s layout serving from
// anywhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from '../lib/server.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Waits until file holds a line matching re (the server writes it on an
// event we caused); bounded.
async function waitForLine(file, re, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const line = text.split('\n').find((l) => re.test(l));
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no line matching ${re} in ${file}:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// One logfmt line: key=value pairs, values bare or quoted with \" escapes.
function parseLogfmt(line) {
  const out = {};
  const re = /([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)/gy;
  let m;
  let at = 0;
  while (at < line.length) {
    re.lastIndex = at;
    m = re.exec(line);
    if (!m) throw new Error(`not logfmt at ${at}: ${line}`);
    out[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2].replace(/\\x([0-9a-f]{2})/g, '\\u00$1')) : m[2];
    at = re.lastIndex;
    if (line[at] === ' ') at++;
  }
  return out;
}

test('LOG_FORMAT=logfmt writes one parseable event per line; SIGHUP reopens LOG_FILE', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatter-log-'));
  const file = path.join(dir, 'chatter.log');
  const server = await startServer({ env: { LOG_FORMAT: 'logfmt', LOG_FILE: file } });
  try {
    const line = await waitForLine(file, /listening on/);
    const ev = parseLogfmt(line);
    assert.match(ev.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(ev.level, 'info');
    assert.ok(ev.actor.length > 0);
    assert.match(ev.msg, /listening on http:\/\/localhost:\d+/);
    for (const l of fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)) parseLogfmt(l);

    fs.renameSync(file, file + '.1'); // what logrotate does
    server.proc.kill('SIGHUP');
    const reopened = await waitForLine(file, /SIGHUP: log reopened/);
    assert.equal(parseLogfmt(reopened).level, 'info');
    assert.ok(fs.existsSync(file + '.1'), 'the rotated file is left alone');
  } finally {
    const res = await server.stop();
    assert.equal(res.code, 0);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('make install: the installed binary finds web/ under PREFIX/share/chatter from any directory', async () => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'chatter-prefix-'));
  try {
    const bin = process.env.CHATTER_BIN || path.join(root, '_build/default/chatter');
    const variant = path.basename(path.dirname(bin));
    execFileSync('make', ['--no-print-directory', '-s', `V=${variant}`, 'install', `PREFIX=${prefix}`],
      { cwd: root, stdio: 'pipe', env: { ...process.env, MAKEFLAGS: '' } });
    assert.ok(fs.existsSync(path.join(prefix, 'share/chatter/web/index.html')));
    assert.ok(fs.existsSync(path.join(prefix, 'share/chatter/sql/001_create_users.sql')));
    assert.ok(!fs.existsSync(path.join(prefix, 'share/chatter/sql/devdb.sh')), 'the dev cluster script is not installed');
    const server = await startServer({ bin: path.join(prefix, 'bin/chatter'), cwd: os.tmpdir() });
    try {
      const page = await fetch(`${server.base}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/i);
    } finally {
      await server.stop();
    }
  } finally {
    fs.rmSync(prefix, { recursive: true, force: true });
  }
});
