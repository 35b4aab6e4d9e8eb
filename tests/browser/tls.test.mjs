// flowcast over TLS in Chromium (issue 9, section 2): a test CA made here
// with the openssl CLI, the server on --tls-cert/--tls-key, and Chromium
// trusting that certificate for this run only (--ignore-certificate-errors-
// spki-list). The dashboard runs over https: and wss:, and flowcast.js
// derives wss:/https: from the URL on every transport, with a token.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, jwtKeyFile, launchBrowser, makeTestCa, mintJwt, openPage, realErrors, waitConn, waitRow } from './lib.mjs';

const ADMIN = 'tls-browser-admin-token';
let server, context, key, tls;

before(async () => {
  tls = makeTestCa();
  key = jwtKeyFile();
  server = await Server.start({ tls, args: ['--jwt-key', key, '--api-token', ADMIN], token: ADMIN });
  context = await launchBrowser([`--ignore-certificate-errors-spki-list=${tls.spki}`]);
});

after(async () => {
  await context?.close();
  await server?.stop();
});

test('the dashboard over https: and wss:, with a token', async () => {
  assert.match(server.url, /^https:/);
  await server.create({ id: 'tls-1', name: 'Over TLS', total_steps: 4 });
  const page = await openPage(context, server.url + '/');
  await page.getByTestId('token-input').fill(mintJwt(key));
  await page.getByTestId('token-submit').click();
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'tls-1', { steps: '0 / 4' });
  await server.patch('tls-1', { status: 'running', current_step: 2, message: 'encrypted' });
  await waitRow(page, 'tls-1', { steps: '2 / 4', message: 'encrypted' });
  const r = await page.evaluate(() => ({ page: location.protocol, ws: window.flowcast._t.ws.url.split('//')[0] }));
  assert.deepEqual(r, { page: 'https:', ws: 'wss:' });
  assert.deepEqual(realErrors(page), []);
  await page.close();
});

test('flowcast.js over wss: and https: on every transport, every change once', async () => {
  const page = await openPage(context, server.url + '/flowcast.js');
  for (const transport of ['websocket', 'sse', 'longpoll']) {
    const id = `tls-${transport}`;
    await server.create({ id, name: id, total_steps: 10 });
    await page.evaluate(async ([url, transport, id, token]) => {
      const { FlowcastClient } = await import('/flowcast.js');
      window.seen = [];
      window.fc = new FlowcastClient({ url, transports: [transport], token: async () => token,
        onUpdate: (u) => window.seen.push(u.seq) });
      window.fc.subscribe([id]);
    }, [server.url, transport, id, mintJwt(key)]);
    await page.waitForFunction(() => window.fc.state === 'open' && window.seen.length >= 1, null, { timeout: 15000 });
    for (let step = 1; step <= 3; step++) await server.patch(id, { current_step: step });
    await page.waitForFunction(() => window.seen.includes(4), null, { timeout: 15000 });
    assert.deepEqual(await page.evaluate(() => window.seen), [1, 2, 3, 4], transport);
    assert.equal(await page.evaluate(() => window.fc.transport), transport);
    await page.evaluate(() => window.fc.close());
  }
  await page.close();
});
