// CORS (issue 9, section 3) in Chromium: a page served from another origin
// imports flowcast.js from the server and uses the REST helpers, SSE and
// long-poll when --allow-origin names its origin; a page on an origin not
// allowed can use none of it (the browser refuses the answers).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { Server, freePort, launchBrowser, openPage } from './lib.mjs';

const TOKEN = 'cors-browser-token';
let srv, browser, pages = [], good, bad;

/* An HTML page server on its own port: the application's origin. */
async function pageServer() {
  const port = await freePort();
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>app</title><p>app</p>');
  });
  await new Promise((r) => s.listen(port, '127.0.0.1', r));
  pages.push(s);
  return `http://127.0.0.1:${port}`;
}

before(async () => {
  good = await pageServer();
  bad = await pageServer();
  srv = await Server.start({ args: ['--allow-origin', good, '--api-token', TOKEN] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  for (const s of pages) s.close();
});

/* A change from the test itself (no Origin), with the token. */
function write(method, path, body) {
  return fetch(srv.url + path, {
    method, headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body), signal: AbortSignal.timeout(5000),
  });
}

/* Runs fn(serverUrl, token) in a fresh page of origin; returns its result. */
async function inPage(origin, fn) {
  const page = await openPage(browser, origin + '/');
  try {
    return await page.evaluate(fn, [srv.url, TOKEN]);
  } finally {
    await page.close();
  }
}

test('allowed origin: flowcast.js imported, every REST helper works', async () => {
  const r = await inPage(good, async ([url, token]) => {
    const { FlowcastClient } = await import(url + '/flowcast.js');
    const c = new FlowcastClient({ url, token, autoConnect: false });
    const made = await c.create({ id: 'cors-rest', name: 'x', total_steps: 4 });
    const upd = await c.update('cors-rest', { current_step: 2, message: 'two' });
    const got = await c.get('cors-rest');
    const list = await c.list();
    const hist = await c.history('cors-rest');
    await c.remove('cors-rest');
    let gone = null;
    try { await c.get('cors-rest'); } catch (e) { gone = e.status; }
    return { made: made.seq, upd: upd.current_step, got: got.message,
      listed: list.workflows.some((w) => w.id === 'cors-rest'), events: hist.events.length, gone };
  });
  assert.deepEqual(r, { made: 1, upd: 2, got: 'two', listed: true, events: 2, gone: 404 });
});

for (const transport of ['sse', 'longpoll']) {
  test(`allowed origin: updates arrive over ${transport}`, async () => {
    const id = `cors-${transport}`;
    assert.equal((await write('POST', '/api/workflows', { id, name: id, total_steps: 10 })).status, 201);
    const page = await openPage(browser, good + '/');
    try {
      await page.evaluate(async ([url, id, transport, token]) => {
        const { FlowcastClient } = await import(url + '/flowcast.js');
        window.seen = [];
        window.fc = new FlowcastClient({ url, token, transports: [transport], onUpdate: (u) => window.seen.push(u.current_step) });
        window.fc.subscribe([id]);
      }, [srv.url, id, transport, TOKEN]);
      await page.waitForFunction(() => window.fc.state === 'open' && window.seen.length >= 1, null, { timeout: 15000 });
      for (let step = 1; step <= 3; step++)
        assert.equal((await write('PATCH', `/api/workflows/${id}`, { current_step: step })).status, 200);
      await page.waitForFunction(() => window.seen.includes(3), null, { timeout: 15000 });
      assert.equal(await page.evaluate(() => window.fc.transport), transport);
      await page.evaluate(() => window.fc.close());
    } finally {
      await page.close();
    }
  });
}

test('other origin: the import, REST and SSE all fail', async () => {
  const r = await inPage(bad, async ([url, token]) => {
    const out = {};
    try { await import(url + '/flowcast.js'); out.imported = true; } catch { out.imported = false; }
    try { await fetch(url + '/api/workflows'); out.list = true; } catch { out.list = false; }
    try {
      await fetch(url + '/api/workflows', {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ id: 'cors-bad', name: 'x', total_steps: 1 }),
      });
      out.create = true;
    } catch { out.create = false; }
    out.sse = await new Promise((resolve) => {
      const es = new EventSource(url + '/api/events');
      es.onopen = () => { es.close(); resolve(true); };
      es.onerror = () => { es.close(); resolve(false); };
    });
    return out;
  });
  assert.deepEqual(r, { imported: false, list: false, create: false, sse: false });
  /* The preflight was refused, so the create never reached the server. */
  const res = await fetch(`${srv.url}/api/workflows/cors-bad`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 404);
});
