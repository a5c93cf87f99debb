// A database of its own holding 100,000 users, for the browser test that
// shows the directory stays quick at that size (issue 6 §1).  Its own
// database (DATABASE_URL's cluster, database name BIG_DB), so the seeded
// users never reach the other suites; it is kept between runs (seeding
// again is skipped when the users are there).
//
//   node test/lib/bigdb.mjs        prints the URL, seeding first if needed
//
// The users are inserted by one INSERT ... SELECT over generate_series
// through psql (about a second for 100,000 rows), named seed_000001 to
// seed_100000.  The server loads every user into memory when it starts, so
// seeding happens while no server runs on this database: the tables come
// from starting the server once (it applies sql/ migrations), stopping it,
// then inserting.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';

export const BIG_DB = 'chatter_browser_100k';
export const SEEDED = 100000;

// seed name n (1-based), as the SQL below writes it.
export function seedName(n) {
  return `seed_${String(n).padStart(6, '0')}`;
}

function baseUrl() {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set (make test-browser sets it)');
  return url;
}

// The same cluster and credentials, another database name.  (libpq URIs
// may have an empty host, which WHATWG's URL refuses: edit the text.)
export function bigUrl(url = baseUrl()) {
  const m = /^(postgres(?:ql)?:\/\/[^/?]*)(\/[^?]*)?(\?.*)?$/.exec(url);
  if (!m) throw new Error(`DATABASE_URL is not a postgresql:// URI: ${url}`);
  return `${m[1]}/${BIG_DB}${m[3] || ''}`;
}

function psql(url, sql) {
  return execFileSync('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export async function bigDatabase() {
  const url = bigUrl();
  const have = psql(baseUrl(), `SELECT count(*) FROM pg_database WHERE datname = '${BIG_DB}'`);
  if (have === '0') psql(baseUrl(), `CREATE DATABASE ${BIG_DB}`);
  let seeded = '-1';
  if (psql(url, "SELECT to_regclass('users') IS NOT NULL") === 't') {
    seeded = psql(url, "SELECT count(*) FROM users WHERE name LIKE 'seed\\_%'");
  }
  if (seeded === '-1') {
    const server = await startServer({ env: { DATABASE_URL: url } });   // applies the migrations
    await server.stop();
    seeded = '0';
  }
  if (Number(seeded) < SEEDED) {
    psql(url, `INSERT INTO users (name) SELECT 'seed_' || lpad(g::text, 6, '0') FROM generate_series(1, ${SEEDED}) g `
      + 'ON CONFLICT (name) DO NOTHING');
  }
  return url;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(await bigDatabase());
}
