// Real flowcast servers for the tests that run in Node (clients/js/test and
// tests/browser): FLOWCAST_BIN on a free loopback port with its own SQLite
// file in WORK (FC_WORK when a runner gives one, else a temp dir of our own).
// Every process started is killed when the test process exits, even on
// failure, and its pid goes to WORK/pids for a runner's trap (run.sh).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.mjs';

export const BIN = process.env.FLOWCAST_BIN;
const ownWork = !process.env.FC_WORK;
export const WORK = process.env.FC_WORK || fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-js-'));
export { freePort };
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  if (ownWork) fs.rmSync(WORK, { recursive: true, force: true });
});

/* Resolves once pred() holds (checked every 20 ms), else rejects after `ms` with what(). */
export async function until(pred, what = () => '', ms = 15000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await sleep(20);
  }
}

/* fetch() for the tests' own requests, or, when `ca` (PEM) is given, the
 * same over node:https trusting that CA only (fetch cannot be given one). */
export function request(url, { method = 'GET', headers = {}, body, ca, timeout = 5000 } = {}) {
  if (!ca) return fetch(url, { method, headers, body, signal: AbortSignal.timeout(timeout) });
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca, timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ ok: res.statusCode < 300, status: res.statusCode, text: async () => text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

let serverCount = 0;

/* A flowcast process; restart() starts it (again) on the same port and db. */
export class Server {
  /* token: the credential api() sends (an --api-token value, say).
   * tls: {cert, key, caPem} (tests/browser's makeTestCa()): serve HTTPS/WSS with them. */
  constructor({ port, db, args = [], token = null, tls = null }) {
    this.token = token;
    this.tls = tls;
    this.port = port;
    this.db = db;
    this.args = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key, ...args] : args;
    this.url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    this.log = path.join(WORK, `server-${++serverCount}.log`);
    this.proc = null;
  }

  static async start({ port, db, args = [], token, tls } = {}) {
    const p = port || (await freePort());
    const s = new Server({ port: p, db: db || path.join(WORK, `db-${serverCount + 1}-${p}.db`), args, token, tls });
    await s.restart();
    return s;
  }

  async restart() {
    if (!BIN) throw new Error('FLOWCAST_BIN is not set');
    const fd = fs.openSync(this.log, 'a');
    const proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--db', this.db, ...this.args], {
      stdio: ['ignore', fd, fd],
      env: { ASAN_OPTIONS: 'detect_leaks=0', ...process.env },
    });
    fs.closeSync(fd);
    this.proc = proc;
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    fs.appendFileSync(path.join(WORK, 'pids'), `${proc.pid}\n`);
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`server exited (${proc.exitCode}):\n${this.tail()}`);
      try {
        const r = await request(`${this.url}/healthz`, { ca: this.tls?.caPem, timeout: 1000 });
        if (r.ok) return;
      } catch {
        /* not up yet */
      }
      await sleep(50);
    }
    throw new Error(`server not ready in 15 s:\n${this.tail()}`);
  }

  /* Ends the process with `signal` (SIGKILL: no goodbye to any client) and
   * waits (at most 5 s, then 2 s more after a SIGKILL) for it to exit. */
  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await Promise.race([done, sleep(5000)]);
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await Promise.race([done, sleep(2000)]);
    }
  }

  tail(n = 40) {
    try {
      return fs.readFileSync(this.log, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  }

  async api(method, p, body) {
    const headers = body ? { 'Content-Type': 'application/json' } : {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const r = await request(this.url + p, { method, headers, body: body ? JSON.stringify(body) : undefined, ca: this.tls?.caPem });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p} -> ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  create(fields) { return this.api('POST', '/api/workflows', { total_steps: 10, ...fields }); }
  patch(id, fields) { return this.api('PATCH', `/api/workflows/${id}`, fields); }
  remove(id) { return this.api('DELETE', `/api/workflows/${id}`); }
}
