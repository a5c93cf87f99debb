// Runs a folder's *.test.mjs files one at a time, in name order, each in its
// own `node --test` process, and fails if any failed.  The same on Node 18
// (Debian 12's nodejs) and Node 20+: no reliance on how a node version's test
// runner orders, globs or parallelises files.  Order matters: files named z_*
// stop PostgreSQL on purpose and must run last.
//
//   node test/lib/run-tests.mjs test/protocol [test/browser ...] [a/file.test.mjs ...]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const dirs = process.argv.slice(2);
if (!dirs.length) {
  console.error('usage: node test/lib/run-tests.mjs DIR...');
  process.exit(2);
}
const failed = [];
let ran = 0;
for (const dir of dirs) {
  const files = dir.endsWith('.test.mjs') ? [dir] // a file of its own
    : fs.readdirSync(dir).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => path.join(dir, f));
  if (!files.length) {
    console.error(`run-tests: no *.test.mjs in ${dir}`);
    process.exit(2);
  }
  for (const file of files) {
    console.log(`== ${file}`);
    const r = spawnSync(process.execPath, ['--test', file], { stdio: 'inherit' });
    ran++;
    if (r.status !== 0) failed.push(`${file} (${r.signal || `exit ${r.status}`})`);
  }
}
if (failed.length) {
  console.log(`run-tests: ${failed.length} of ${ran} files FAILED:\n  ${failed.join('\n  ')}`);
  process.exit(1);
}
console.log(`run-tests: all ${ran} files passed (node ${process.version})`);
