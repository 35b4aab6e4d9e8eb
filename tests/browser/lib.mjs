// Helpers for the browser tests: start/stop flowcast servers, launch Debian's
// Chromium through playwright-core, talk to the REST API, wait with timeouts.
// Environment (set by run.sh): FLOWCAST_BIN, FC_WORK (temp dir), FC_ROOT.
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BIN = process.env.FLOWCAST_BIN;
export const WORK = process.env.FC_WORK || fs.mkdtempSync('/tmp/flowcast-browser-');
export const ROOT = process.env.FC_ROOT || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

let serverCount = 0;

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

/* A test CA and a server certificate for 127.0.0.1 signed by it, made with
 * the openssl CLI in a new directory: {ca, cert, key} (file names), caPem,
 * and spki: the base64 SHA-256 of the server key's SubjectPublicKeyInfo, for
 * Chromium's --ignore-certificate-errors-spki-list (trusts it for one run). */
export function makeTestCa() {
  const dir = fs.mkdtempSync(path.join(WORK, 'ca-'));
  const f = (n) => path.join(dir, n);
  const ssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=flowcast browser test CA');
  ssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  const pub = ssl('x509', '-in', f('server.pem'), '-pubkey', '-noout');
  const der = crypto.createPublicKey(pub).export({ type: 'spki', format: 'der' });
  return {
    ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), caPem: fs.readFileSync(f('ca.pem')),
    spki: crypto.createHash('sha256').update(der).digest('base64'),
  };
}

/* A flowcast process; restart() starts it again on the same port and db. */
export class Server {
  /* token: the credential api() sends (an --api-token value, say). */
  /* tls: {cert, key, caPem} from makeTestCa(): serve HTTPS/WSS with them. */
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

  static async start({ args = [], db, token, tls } = {}) {
    const port = await freePort();
    const s = new Server({ port, db: db || path.join(WORK, `db-${serverCount + 1}-${port}.db`), args, token, tls });
    await s.restart();
    return s;
  }

  async restart() {
    if (!BIN) throw new Error('FLOWCAST_BIN is not set');
    const fd = fs.openSync(this.log, 'a');
    this.proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--db', this.db, ...this.args], {
      stdio: ['ignore', fd, fd],
      env: { ASAN_OPTIONS: 'detect_leaks=0', ...process.env },
    });
    fs.closeSync(fd);
    fs.appendFileSync(path.join(WORK, 'pids'), `${this.proc.pid}\n`); /* run.sh's trap kills leftovers */
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`server exited (${this.proc.exitCode}):\n${this.tail()}`);
      try {
        const r = await request(`${this.url}/healthz`, { ca: this.tls?.caPem, timeout: 1000 });
        if (r.ok) return;
      } catch {
        /* not up yet */
      }
      await sleep(50);
    }
    throw new Error(`server not ready in 10 s:\n${this.tail()}`);
  }

  /* Stops the process with `signal` and waits (at most 5 s) for it to exit. */
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

  create(fields) {
    return this.api('POST', '/api/workflows', { total_steps: 10, ...fields });
  }

  patch(id, fields) {
    return this.api('PATCH', `/api/workflows/${id}`, fields);
  }
}

/* An HMAC key file for --jwt-key (48 bytes of hex, no newline). */
export function jwtKeyFile() {
  const file = path.join(WORK, `jwt-${crypto.randomBytes(4).toString('hex')}.key`);
  fs.writeFileSync(file, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
  return file;
}

const b64url = (x) => Buffer.from(x).toString('base64url');

/* An HS256 JWT signed with the key in keyFile: scope 'read' and exp in
 * `ttl` seconds unless claims say otherwise. */
export function mintJwt(keyFile, { ttl = 3600, ...claims } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { scope: 'read', iat: now, exp: now + ttl, ...claims };
  const head = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(body))}`;
  const sig = crypto.createHmac('sha256', fs.readFileSync(keyFile)).update(head).digest('base64url');
  return `${head}.${sig}`;
}

/* One Chromium for a test file, with a fresh profile directory. */
export async function launchBrowser(extraArgs = []) {
  const profile = fs.mkdtempSync(path.join(WORK, 'profile-'));
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    viewport: { width: 1280, height: 760 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', ...extraArgs,
    ],
  });
}

/* Messages that a page shows when a server is down or a transport is
 * refused on purpose: expected in the fallback and restart tests. */
const NETWORK_NOISE = /WebSocket connection to|Failed to load resource|net::ERR_|EventSource/;

/* A new page that records console errors and uncaught exceptions. */
export async function openPage(context, url) {
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  if (url) await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  return page;
}

/* Errors other than expected network noise. */
export function realErrors(page) {
  return page.errors.filter((e) => e.startsWith('pageerror') || !NETWORK_NOISE.test(e));
}

export const row = (page, id) => page.locator(`[data-testid="workflow-row"][data-id="${id}"]`);

/* Waits until the row of `id` shows `steps` ("3 / 10") and, if given, `message`/`status`. */
export async function waitRow(page, id, { steps, message, status }, timeout = 15000) {
  await page.waitForFunction(
    ({ id, steps, message, status }) => {
      const li = document.querySelector(`[data-testid="workflow-row"][data-id="${id}"]`);
      if (!li || li.hidden) return false;
      const t = (s) => li.querySelector(`[data-testid="${s}"]`).textContent;
      return (steps == null || t('wf-steps') === steps) &&
        (message == null || t('wf-message') === message) &&
        (status == null || li.dataset.status === status);
    },
    { id, steps, message, status },
    { timeout, polling: 50 },
  );
}

export async function waitConn(page, state, transport, timeout = 15000) {
  await page.waitForFunction(
    ({ state, transport }) => {
      const c = document.querySelector('[data-testid="conn"]');
      const t = document.querySelector('[data-testid="transport"]');
      return c.dataset.state === state && (transport == null || t.dataset.transport === transport);
    },
    { state, transport },
    { timeout, polling: 50 },
  );
}
