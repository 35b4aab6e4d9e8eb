// Helpers for the browser tests: flowcast servers (tests/node/server.mjs,
// shared with the Node tests of clients/js), a test CA and JWTs, Debian's
// Chromium through playwright-core, waits with timeouts.
// Environment (set by run.sh): FLOWCAST_BIN, FC_WORK (temp dir), FC_ROOT.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { WORK } from '../node/server.mjs';

export { BIN, Server, WORK, freePort, request, sleep } from '../node/server.mjs';
export const ROOT = process.env.FC_ROOT || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

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
