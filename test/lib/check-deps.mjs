// Exits 0 when test/node_modules holds exactly the versions test/package.json
// pins, 1 otherwise (then `make deps-test` runs npm install).  A machine that
// kept an older install (say playwright-core 1.65, which refuses Node 18) is
// brought to the pinned versions instead of being trusted because a folder
// exists.  Run from test/.
import fs from 'node:fs';

const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8'));
let ok = true;
for (const [name, want] of Object.entries(pkg.dependencies || {})) {
  let have = null;
  try {
    have = JSON.parse(fs.readFileSync(`node_modules/${name}/package.json`, 'utf8')).version;
  } catch { /* not installed */ }
  if (have !== want) {
    console.log(`test dependency ${name}: have ${have ?? 'none'}, want ${want}`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
