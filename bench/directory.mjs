// bench/directory.mjs -- the protocol 2 directory at scale: a server whose
// database holds N users (default 100,000, seeded once into a database of
// its own, `chatter_directory_bench`, beside the development one), then:
// the welcome's size, a walk over every offline page of 500, prefix
// searches, and sequential joins of new names.  Prints one line per figure.
//
//   DATABASE_URL=$(bash sql/devdb.sh url) CHATTER_BIN=_build/default/chatter \
//     node bench/directory.mjs [N]
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { startServer } from '../test/lib/server.mjs';
import { connect, uniq } from '../test/protocol/client.mjs';

const N = Number(process.argv[2] || 100000);
const base = process.env.DATABASE_URL;
if (!base) throw new Error('DATABASE_URL (the development cluster) is required');
const dbName = 'chatter_directory_bench';
const psql = (u, sql) => execFileSync('psql', [u, '-qtAc', sql], { encoding: 'utf8' }).trim();
const adminUrl = base;
if (psql(adminUrl, `SELECT count(*) FROM pg_database WHERE datname = '${dbName}'`) === '0')
  psql(adminUrl, `CREATE DATABASE ${dbName}`);
// postgresql://user@/db?host=...: swap the database name only
const benchUrl = base.replace(/^(postgres(?:ql)?:\/\/[^/]*\/)[^?]*/, `$1${dbName}`);
if (benchUrl === base) throw new Error(`cannot place ${dbName} in ${base}`);
const env = { DATABASE_URL: benchUrl, CHATTER_NEW_USERS_PER_MINUTE: '0', LOG_LEVEL: 'warn' };

let server = await startServer({ env }); // applies the migrations
const have = Number(psql(benchUrl, 'SELECT count(*) FROM users'));
if (have < N) {
  psql(benchUrl, `INSERT INTO users (name) SELECT 'dirbench_' || lpad(g::text, 7, '0')
                  FROM generate_series(${have + 1}, ${N}) g ON CONFLICT DO NOTHING`);
  await server.stop();
  server = await startServer({ env, timeoutMs: 60000 }); // presence loads them
}
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
try {
  const c = await connect(server.wsUrl);
  console.log(`users in the directory: ${c.welcome.total_users}`);
  console.log(`welcome: ${JSON.stringify(c.welcome).length} bytes`);
  const lat = [];
  let pages = 0, users = 0, after;
  const t0 = performance.now();
  for (;;) {
    const t = performance.now();
    const r = await c.users(false, { after, limit: 500 });
    lat.push(performance.now() - t);
    pages++; users += r.users.length;
    if (!r.more) break;
    after = r.users.at(-1).name;
  }
  const walk = performance.now() - t0;
  console.log(`offline walk: ${users} users in ${pages} pages of 500, ${walk.toFixed(0)} ms; page round trip p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms`);
  const plat = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await c.users(false, { prefix: `dirbench_${String(i * 37 % 1000).padStart(3, '0')}`, limit: 50 });
    plat.push(performance.now() - t);
  }
  console.log(`prefix search (50 of ~100 matches): p50 ${pct(plat, 0.5).toFixed(2)} ms, p99 ${pct(plat, 0.99).toFixed(2)} ms`);
  const jlat = [];
  for (let i = 0; i < 200; i++) {
    const s = await connect(server.wsUrl);
    const t = performance.now();
    await s.joinOk(uniq('dj'));
    jlat.push(performance.now() - t);
    await s.close();
  }
  console.log(`join of a new name (200 in a row): p50 ${pct(jlat, 0.5).toFixed(2)} ms, p99 ${pct(jlat, 0.99).toFixed(2)} ms`);
} finally {
  await server.stop();
}
process.exit(0);
