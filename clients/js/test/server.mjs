// Real flowcast servers for the Node tests of flowcast.js: FLOWCAST_BIN on a
// free loopback port with its own SQLite file in a temp dir; every process
// started is killed when the test process exits, even on failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.FLOWCAST_BIN;
export const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'flowcast-js-'));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  fs.rmSync(WORK, { recursive: true, force: true });
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let count = 0;

/* A flowcast process; start() (again) serves `db` on `port`. */
export class Server {
  constructor({ port, db, args = [] }) {
    this.port = port;
    this.db = db;
    this.args = args;
    this.url = `http://127.0.0.1:${port}`;
    this.log = path.join(WORK, `server-${++count}.log`);
    this.proc = null;
  }

  static async start({ port, db, args } = {}) {
    const p = port || (await freePort());
    const s = new Server({ port: p, db: db || path.join(WORK, `db-${count + 1}-${p}.db`), args });
    await s.start();
    return s;
  }

  async start() {
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
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`server exited (${proc.exitCode}):\n${this.tail()}`);
      try {
        const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (r.ok) return;
      } catch {
        /* not up yet */
      }
      await sleep(50);
    }
    throw new Error(`server not ready in 15 s:\n${this.tail()}`);
  }

  /* Ends the process with `signal` (SIGKILL: no goodbye to any client) and waits for it. */
  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await Promise.race([done, sleep(5000)]);
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await done;
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
    const r = await fetch(this.url + p, {
      method,
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p} -> ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  create(fields) { return this.api('POST', '/api/workflows', { total_steps: 100, ...fields }); }
  patch(id, fields) { return this.api('PATCH', `/api/workflows/${id}`, fields); }
  remove(id) { return this.api('DELETE', `/api/workflows/${id}`); }
}

/* Resolves once pred() holds (checked every 20 ms), else rejects after `ms` with what(). */
export async function until(pred, what = () => '', ms = 15000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what()}`);
    await sleep(20);
  }
}
