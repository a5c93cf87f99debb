// bench/dashboard-reader.mjs -- reads /dashboard/ws the way a busy viewer
// would, for issue 9 §1's measurement "reading the dashboard at 10 Hz while
// the sessions chat must not move the chat's p99" (bench/dashboard-p99.sh
// runs the chat with and without it).
//
// Each of --viewers sockets (1; the server takes DASH_MAX_VIEWERS = 8) gets
// the pushed deltas (every DASH_TICK_MS = 200 ms) and, --hz times a second,
// asks `resync`, whose answer is a whole snapshot taken at once: the most a
// viewer can make the server gather.  Runs until SIGTERM/SIGINT or until the
// server closes the socket; then prints one line: frames, snapshots, bytes,
// and how many resyncs went unanswered (a slow server shows there).
//
//   node bench/dashboard-reader.mjs --url ws://127.0.0.1:4000/dashboard/ws --hz 10
import { createRequire } from 'node:module';

const require = createRequire(new URL('../test/package.json', import.meta.url));
const WebSocket = require('ws'); // the test suites' pinned copy (make deps-test)

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const url = opt('url', 'ws://127.0.0.1:4000/dashboard/ws');
const hz = Number(opt('hz', '10'));
const viewers = Number(opt('viewers', '1'));
if (!(hz >= 0 && hz <= 100) || !(viewers >= 1 && viewers <= 8)) {
  console.error('usage: dashboard-reader.mjs [--url URL] [--hz 0..100] [--viewers 1..8]');
  process.exit(2);
}

const st = { frames: 0, snapshots: 0, bytes: 0, asked: 0, closed: 0 };
const timers = [];
const sockets = [];

function report(why) {
  console.log(`dashboard-reader: ${why}: viewers=${viewers} hz=${hz} frames=${st.frames} ` +
    `snapshots=${st.snapshots} resyncs=${st.asked} bytes=${st.bytes}`);
}

function stop(why, code = 0) {
  for (const t of timers) clearInterval(t);
  for (const s of sockets) s.terminate();
  report(why);
  process.exit(code);
}

for (let i = 0; i < viewers; i++) {
  const ws = new WebSocket(url);
  sockets.push(ws);
  ws.on('message', (data) => {
    st.frames++;
    st.bytes += data.length;
    if (data.toString('utf8', 0, 24).includes('"snapshot"')) st.snapshots++;
  });
  ws.on('open', () => {
    if (hz > 0) {
      timers.push(setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send('{"type":"resync"}');
        st.asked++;
      }, 1000 / hz));
    }
  });
  ws.on('error', (e) => stop(`error ${e.message}`, 1));
  ws.on('close', () => { if (++st.closed === viewers) stop('closed by the server'); });
}
process.on('SIGTERM', () => stop('stopped'));
process.on('SIGINT', () => stop('stopped'));
