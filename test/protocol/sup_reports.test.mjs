// Supervisor reports in OTP's words in the log (issue 9 §2, issue 8): a
// child killed through POST /debug/kill gives a `child_terminated` line with
// its reason, then a `started` progress report for its restart (debug
// level, as OTP 21+ keeps progress reports below the default level), each
// as logfmt fields inside the event's text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../lib/server.mjs';
import { kill } from './client.mjs';

// The key=value pairs of a logfmt text; values bare or quoted with \" escapes.
function fields(text) {
  const out = {};
  for (const m of text.matchAll(/([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)/g))
    out[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  return out;
}

// The supervisor reports in file (each line's msg, as fields), waiting
// until pred finds one; bounded.
async function waitReport(file, pred, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const reports = text.split('\n').filter(Boolean).map((l) => fields(fields(l).msg ?? ''))
      .filter((f) => f.supervisor);
    const hit = reports.find(pred);
    if (hit) return { hit, reports };
    if (Date.now() > deadline) throw new Error(`no such report in ${file}:\n${text.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// A server (CHATTER_DEBUG=1) logging logfmt at `level` to a file of its own
// in a fresh temporary folder; body(server, file) runs, then the server
// stops and the folder goes, whatever body did.
async function withReportLog(level, body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatter-reports-'));
  const file = path.join(dir, 'chatter.log');
  const server = await startServer({
    env: { LOG_FORMAT: 'logfmt', LOG_FILE: file, LOG_LEVEL: level, CHATTER_DEBUG: '1' },
  });
  try {
    await body(server, file);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a killed child is reported as child_terminated, its restart as started', async () => {
  await withReportLog('debug', async (server, file) => {
    // the tree's own start: a progress report per static child
    const { hit: first } = await waitReport(file, (f) => f.context === 'started' && f.child === 'pubsub');
    assert.equal(first.supervisor, 'chatter');
    assert.equal(first.restart_type, 'permanent');
    assert.equal(first.child_type, 'worker');
    assert.equal(first.shutdown, '5000');
    assert.match(first.pid, /^<\d+\.\d+\.\d+>$/);

    await kill(assert, server, 'pubsub');
    const { hit: term } = await waitReport(file, (f) => f.context === 'child_terminated' && f.child === 'pubsub');
    assert.equal(term.supervisor, 'chatter');
    assert.equal(term.reason, 'killed');
    assert.equal(term.pid, first.pid, 'the offender is the pid that was killed');
    const { reports } = await waitReport(file, (f) => f.context === 'started' && f.child === 'pubsub' && f.pid !== first.pid);
    const restarted = reports.filter((f) => f.context === 'started' && f.child === 'pubsub');
    assert.equal(restarted.length, 2, 'one start, one restart');
    // the levels: the error report at error, the progress report at debug
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('context=child_terminated'));
    assert.match(lines[0], /level=error/);
    const started = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.includes('context=started'));
    assert.match(started, /level=debug/);
  });
});

test('at the default level there are no progress reports, only supervisor reports', async () => {
  await withReportLog('info', async (server, file) => {
    await kill(assert, server, 'presence');
    await waitReport(file, (f) => f.context === 'child_terminated' && f.child === 'presence');
    const r = await fetch(`${server.base}/healthz`);
    await r.text();
    assert.doesNotMatch(fs.readFileSync(file, 'utf8'), /context=started/);
  });
});
