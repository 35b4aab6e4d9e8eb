// flowcast.js in Chromium against a three-node cluster (scripts/cluster:
// PostgreSQL, nats-server, three nodes, HAProxy): a client given every node's
// URL sees each change once and in order whichever node committed it, and
// when its node is killed (SIGKILL) it moves to the next URL and resumes
// with no gap; a second client through the proxy sees the same.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BIN, ROOT, WORK, launchBrowser, openPage, request, sleep } from './lib.mjs';

let context;
let cluster;
let info;

before(async () => {
  const file = path.join(WORK, 'cluster.json');
  const log = fs.openSync(path.join(WORK, 'server-cluster.log'), 'a');
  // Every node lets pages of another origin open streams (the page comes
  // from the proxy, the client talks to the nodes).
  cluster = spawn('/usr/bin/python3', [path.join(ROOT, 'scripts/cluster'), '--bin', BIN,
    '--dir', path.join(WORK, 'cluster'), '--info', file, '--free-ports', '--', '--allow-origin', '*'],
  { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const deadline = Date.now() + 60000;
  while (!fs.existsSync(file)) {
    if (cluster.exitCode !== null || Date.now() > deadline) throw new Error('the cluster did not start');
    await sleep(100);
  }
  info = JSON.parse(fs.readFileSync(file, 'utf8'));
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
  if (cluster && cluster.exitCode === null) {
    const done = new Promise((r) => cluster.once('exit', r));
    cluster.kill('SIGTERM'); // scripts/cluster stops every service it started
    await Promise.race([done, sleep(20000)]);
  }
});

const base = (port) => `http://127.0.0.1:${port}`;

async function api(port, method, p, body) {
  const r = await request(base(port) + p, {
    method, headers: { 'Content-Type': 'application/json' }, body: body && JSON.stringify(body), timeout: 10000,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p} -> ${r.status} ${text}`);
  return JSON.parse(text);
}

test('every change once and in order across nodes, and across a killed node', async () => {
  const [n1, n2, n3] = info.nodes;
  await api(n2.port, 'POST', '/api/workflows', { id: 'cj', name: 'cj', total_steps: 100 });
  const page = await openPage(context, base(info.proxy) + '/flowcast.js');
  await page.evaluate(async (urls) => {
    const { FlowcastClient } = await import('/flowcast.js');
    window.seen = { nodes: [], proxy: [] };
    window.st = {};
    const mk = (name, url) => {
      const c = new FlowcastClient({ url, onUpdate: (u) => window.seen[name].push(u.seq), onState: (s) => (window.st[name] = s.state) });
      c.subscribe(['cj']);
      return c;
    };
    window.clients = [mk('nodes', urls.nodes), mk('proxy', urls.proxy)];
  }, { nodes: [base(n1.port), base(n2.port), base(n3.port)], proxy: base(info.proxy) });
  await page.waitForFunction(() => window.st.nodes === 'open' && window.st.proxy === 'open' &&
    window.seen.nodes.length === 1 && window.seen.proxy.length === 1);
  // Changes through every node: each commits on one, the others hear it.
  for (let i = 1; i <= 9; i++) await api([n1, n2, n3][i % 3].port, 'PATCH', '/api/workflows/cj', { current_step: i });
  await page.waitForFunction(() => window.seen.nodes.at(-1) === 10 && window.seen.proxy.at(-1) === 10);
  // The first URL's node dies; changes go on through the others meanwhile.
  process.kill(n1.pid, 'SIGKILL');
  for (let i = 10; i <= 19; i++) await api([n2, n3][i % 2].port, 'PATCH', '/api/workflows/cj', { current_step: i });
  await page.waitForFunction(() => window.seen.nodes.at(-1) === 20 && window.seen.proxy.at(-1) === 20, null, { timeout: 30000 });
  const seen = await page.evaluate(() => window.seen);
  const want = Array.from({ length: 20 }, (_, i) => i + 1);
  assert.deepEqual(seen.nodes, want);
  assert.deepEqual(seen.proxy, want);
  await page.evaluate(() => window.clients.forEach((c) => c.close()));
  await page.close();
});
