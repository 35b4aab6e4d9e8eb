// Conformance driver of the JavaScript client (clients/js) in Node: the
// command line and output of tests/client/fcc_probe.c (see README.md here).
//   node js_driver.mjs URL[,URL...] [--all] [--backoff-max MS] [--max-retries N]
//                      [--since ID=[EPOCH:]SEQ]... ID...
// Node 20 needs --experimental-websocket for its WebSocket (else the client
// uses long-poll).
import { FlowcastClient } from '../../clients/js/flowcast.js';

const args = process.argv.slice(2);
const url = args.shift();
let all = false;
let backoffMax = 30000;
let maxRetries = Infinity;
const since = {};
const ids = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--all') all = true;
  else if (a === '--backoff-max') backoffMax = Number(args[++i]);
  else if (a === '--max-retries') maxRetries = Number(args[++i]);
  else if (a === '--since') {
    const [id, pos] = args[++i].split('=');
    const p = pos.split(':').map(Number);
    since[id] = p.length === 2 ? { epoch: p[0], seq: p[1] } : p[0];
  } else if (a.startsWith('-')) {
    process.stderr.write(`js_driver: unknown option ${a}\n`);
    process.exit(2);
  } else ids.push(a);
}

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const c = new FlowcastClient({
  url,
  backoff: { initial: 100, max: backoffMax },
  maxRetries,
  onUpdate(u) {
    out({
      event: 'update', workflow_id: u.workflow_id, epoch: u.epoch ?? 0, seq: u.seq, status: u.status ?? '',
      current_step: u.current_step ?? 0, total_steps: u.total_steps ?? 0, resync: u.resync === true,
      deleted: u.deleted === true, name: u.name ?? '',
    });
  },
  onState(s) {
    /* an attempt is 'connecting' (as in the C and Python clients), a wait 'reconnecting' */
    const state = s.trying ? 'connecting' : s.state;
    out({ event: 'state', state, attempt: s.attempt, delay_ms: s.delay ?? 0, url: s.url });
    if (s.state === 'closed') process.exit(0);
  },
  onError(e) { process.stderr.write(`js_driver: ${e.message}\n`); },
});
if (all) c.subscribeAll();
if (ids.length || Object.keys(since).length) c.subscribe([...ids, ...Object.keys(since)], since);
process.on('SIGTERM', () => { c.close(); process.exit(0); });
