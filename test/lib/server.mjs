// Starts a real chatter server for a test file and stops it afterwards.
//
// The binary comes from $CHATTER_BIN (the Makefile sets it), the database from
// $DATABASE_URL (the private cluster of sql/devdb.sh by default).  Each server
// gets a free port on 127.0.0.1; start() resolves once /healthz answers 200.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function healthy(base) {
  try {
    const r = await fetch(base + '/healthz');
    return r.status === 200;
  } catch {
    return false;
  }
}

// Settings every test server gets unless the test (or the environment) says
// otherwise.  CHATTER_NEW_USERS_PER_MINUTE=0: no limit on new names per
// source address, since every test creates fresh names from 127.0.0.1; a
// test of the limit passes its own value in env.
const TEST_DEFAULTS = {
  CHATTER_NEW_USERS_PER_MINUTE: process.env.CHATTER_NEW_USERS_PER_MINUTE ?? '0',
};

// Returns {port, base, wsUrl, proc, logs(), stop()}.  env adds variables
// (CHATTER_CHAOS, ...); port is a free one unless given (a test that stops
// and starts the server where its clients expect it).  Waits at most
// timeoutMs for /healthz.
// bin and cwd default to the build under test and the repository (a test of
// `make install` runs an installed copy from elsewhere).
export async function startServer({ env = {}, timeoutMs = 20000, port, bin, cwd } = {}) {
  bin = bin || process.env.CHATTER_BIN || path.join(root, '_build/default/chatter');
  port = port || await freePort();
  let out = '';
  const proc = spawn(bin, [], {
    cwd: cwd || root,
    env: { ...process.env, PORT: String(port), LOG_LEVEL: process.env.LOG_LEVEL || 'info', ...TEST_DEFAULTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = { code, sig }; });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (!(await healthy(base))) {
    if (exited) throw new Error(`chatter exited early (${JSON.stringify(exited)}):\n${out}`);
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`chatter not healthy in ${timeoutMs} ms:\n${out}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    base,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    proc,
    logs: () => out,
    exited: () => exited,
    async stop() {
      if (exited) return exited;
      const done = new Promise((r) => proc.once('exit', (code, sig) => r({ code, sig })));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const res = await done;
      clearTimeout(t);
      // Under the sanitizers, a report at exit (a leak, say) is a failure.
      if (process.env.CHATTER_CHECK_EXIT === '1' && (res.code !== 0 || res.sig))
        throw new Error(`chatter did not exit cleanly (${JSON.stringify(res)}):\n${out.slice(-4000)}`);
      return res;
    },
  };
}
