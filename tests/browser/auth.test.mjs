// Tokens in Chromium (issue 9): the dashboard asks for one when the server
// wants it, keeps it for the tab only, shows its expiry and 403s; flowcast.js
// sends a string or a function's token on every transport, asks the function
// again on a 401, and reports a 403 as a ForbiddenError, not an AuthError.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, jwtKeyFile, launchBrowser, mintJwt, openPage, realErrors, row, waitConn, waitRow } from './lib.mjs';

const ADMIN = 'auth-browser-admin-token';
let server, context, key;

before(async () => {
  key = jwtKeyFile();
  server = await Server.start({ args: ['--jwt-key', key, '--api-token', ADMIN], token: ADMIN });
  for (const id of ['deploy-1', 'deploy-2', 'secret-1']) await server.create({ id, name: `Job ${id}`, total_steps: 10 });
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
  await server?.stop();
});

/* The dashboard, with the token typed into its form. */
async function signIn(page, token) {
  await page.getByTestId('token-form').waitFor({ state: 'visible' });
  await page.getByTestId('token-input').fill(token);
  await page.getByTestId('token-submit').click();
}

test('dashboard: 401 asks for a token; the list appears; kept in sessionStorage only; expiry shown', async () => {
  const page = await openPage(context, server.url + '/');
  await page.getByTestId('token-form').waitFor({ state: 'visible' });
  assert.equal(await page.getByTestId('auth-title').textContent(), 'Access token needed');
  assert.equal(await page.getByTestId('conn-text').textContent(), 'Token needed');
  assert.equal(await row(page, 'deploy-1').count(), 0);

  const token = mintJwt(key, { ttl: 600 });
  await signIn(page, token);
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'deploy-1', { steps: '0 / 10' });
  await waitRow(page, 'secret-1', { steps: '0 / 10' });
  assert.ok(await page.getByTestId('token-form').isHidden());
  const chip = page.getByTestId('token-expiry');
  assert.match(await chip.textContent(), /^Token expires in 9 min [0-9]+ s$/);
  assert.equal(await chip.getAttribute('data-state'), 'ok');
  const storage = await page.evaluate(() => ({ s: sessionStorage.getItem('flowcast.token'), l: localStorage.length }));
  assert.deepEqual(storage, { s: token, l: 0 });

  // Live updates and the names (REST with the bearer header) both work.
  await server.patch('deploy-1', { status: 'running', current_step: 4, message: 'four' });
  await waitRow(page, 'deploy-1', { steps: '4 / 10', message: 'four' });
  await page.waitForFunction(() =>
    document.querySelector('[data-testid="workflow-row"][data-id="deploy-1"] [data-testid="wf-name"]').textContent === 'Job deploy-1');

  // A reload in the same tab keeps the token: no question.
  await page.reload({ waitUntil: 'load' });
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'deploy-1', { steps: '4 / 10' });
  assert.ok(await page.getByTestId('token-form').isHidden());
  assert.deepEqual(realErrors(page), []);
  await page.close();

  // Another tab (sessionStorage is per tab) asks again.
  const other = await openPage(context, server.url + '/');
  await other.getByTestId('token-form').waitFor({ state: 'visible' });
  await other.close();
});

test('dashboard: a scoped token lists its workflows only; 403 shown in the detail of another', async () => {
  const page = await openPage(context, server.url + '/#w=secret-1');
  await signIn(page, mintJwt(key, { workflows: ['deploy-*'] }));
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'deploy-2', {});
  assert.equal(await row(page, 'secret-1').count(), 0);
  await page.waitForFunction(() => document.querySelector('[data-testid="detail-status"]').textContent === 'forbidden (403)');
  assert.match(await page.getByTestId('history-note').textContent(), /403 forbidden/);
  await page.close();
});

test('dashboard: a token without read is Forbidden (403), and another token fixes it', async () => {
  const page = await openPage(context, server.url + '/');
  await signIn(page, mintJwt(key, { scope: 'write' }));
  await page.waitForFunction(() => document.querySelector('[data-testid="auth-title"]').textContent === 'Forbidden (403)');
  assert.ok(await page.getByTestId('token-form').isVisible());
  assert.equal(await page.getByTestId('conn-text').textContent(), 'Forbidden (403)');
  await signIn(page, mintJwt(key, { scope: 'read write' }));
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'secret-1', { steps: '0 / 10' });
  await page.close();
});

test('dashboard: a narrower token pasted through the expiry chip marks the rows it may not read', async () => {
  const page = await openPage(context, server.url + '/');
  await signIn(page, mintJwt(key));
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'secret-1', { steps: '0 / 10' });
  let reconnects = 0;
  page.on('websocket', () => reconnects++);
  await page.getByTestId('token-expiry').click();
  assert.equal(await page.getByTestId('auth-title').textContent(), 'New token');
  await signIn(page, mintJwt(key, { workflows: ['deploy-*'] }));
  await page.waitForFunction(() => document.querySelector(
    '[data-testid="workflow-row"][data-id="secret-1"] [data-testid="wf-status"]').textContent === 'forbidden (403)');
  assert.equal(await row(page, 'deploy-2').getByTestId('wf-status').textContent(), 'pending');
  await server.patch('deploy-2', { current_step: 2, message: 'still live' });
  await waitRow(page, 'deploy-2', { steps: '2 / 10', message: 'still live' });
  assert.equal(reconnects, 0, 'the token changed in place');
  assert.ok(await page.getByTestId('token-form').isHidden());
  await page.close();
});

test('dashboard: a refused token asks again', async () => {
  const page = await openPage(context, server.url + '/');
  await signIn(page, 'not-a-token');
  await page.waitForFunction(() => document.querySelector('[data-testid="auth-title"]').textContent === 'Token refused');
  await signIn(page, mintJwt(key));
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'deploy-2', {});
  await page.close();
});

test('flowcast.js: string token on REST; 401 is AuthError, 403 is ForbiddenError', async () => {
  const page = await openPage(context, server.url + '/flowcast.js');
  const r = await page.evaluate(async ([url, good, scoped]) => {
    const { FlowcastClient, AuthError, ForbiddenError } = await import('/flowcast.js');
    const kind = async (p) => {
      try {
        await p;
        return 'ok';
      } catch (e) {
        return `${e instanceof AuthError ? 'AuthError' : e instanceof ForbiddenError ? 'ForbiddenError' : e.name} ${e.status} ${e.code}`;
      }
    };
    const none = new FlowcastClient({ url, autoConnect: false });
    const ok = new FlowcastClient({ url, autoConnect: false, token: good });
    const narrow = new FlowcastClient({ url, autoConnect: false, token: scoped });
    return {
      none: await kind(none.list()),
      ok: (await ok.get('secret-1')).id,
      narrow: await kind(narrow.get('secret-1')),
      narrowList: (await narrow.list()).workflows.map((w) => w.id).sort(),
    };
  }, [server.url, mintJwt(key), mintJwt(key, { workflows: ['deploy-*'] })]);
  assert.deepEqual(r, {
    none: 'AuthError 401 unauthorized', ok: 'secret-1', narrow: 'ForbiddenError 403 forbidden',
    narrowList: ['deploy-1', 'deploy-2'],
  });
  await page.close();
});

/* A client in the page whose token function hands out `tokens` in turn
 * (the last one again when they run out), recording each call's reason. */
async function startClient(page, transport, tokens, ids, opts = {}) {
  await page.evaluate(async ([url, transport, tokens, ids, opts]) => {
    const { FlowcastClient } = await import('/flowcast.js');
    window.calls = [];
    window.seen = [];
    window.errors = [];
    window.states = [];
    window.fc = new FlowcastClient({
      url, transports: [transport], ...opts,
      token: async ({ reason }) => {
        window.calls.push(reason);
        await new Promise((r) => setTimeout(r, 20));
        return tokens[Math.min(window.calls.length - 1, tokens.length - 1)];
      },
      onUpdate: (u) => window.seen.push(`${u.workflow_id}:${u.seq}`),
      onError: (e) => window.errors.push(`${e.name}:${e.code}:${e.workflowId ?? ''}`),
      onState: (s) => window.states.push(s.state),
    });
    window.fc.subscribe(ids);
  }, [server.url, transport, tokens, ids, opts]);
}

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`flowcast.js on ${transport}: a refused first token, the function asked again, every change once`, async () => {
    const id = `fn-${transport}`;
    await server.create({ id, name: id, total_steps: 20 });
    const page = await openPage(context, server.url + '/flowcast.js');
    await startClient(page, transport, ['bad.token.here', mintJwt(key)], [id]);
    await page.waitForFunction(() => window.fc.state === 'open' && window.seen.length >= 1, null, { timeout: 15000 });
    for (let step = 1; step <= 5; step++) await server.patch(id, { current_step: step });
    await page.waitForFunction((id) => window.seen.includes(`${id}:6`), id, { timeout: 15000 });
    const r = await page.evaluate(() => ({ calls: window.calls, seen: window.seen, transport: window.fc.transport }));
    assert.deepEqual(r.calls, ['initial', 'unauthorized']);
    assert.deepEqual(r.seen, [1, 2, 3, 4, 5, 6].map((s) => `${id}:${s}`));
    assert.equal(r.transport, transport);
    await page.evaluate(() => window.fc.close());
    assert.deepEqual(realErrors(page), []);
    await page.close();
  });
}

test('flowcast.js: a subscription outside the token is a ForbiddenError naming it; the others go on', async () => {
  for (const transport of ['websocket', 'sse', 'longpoll']) {
    const page = await openPage(context, server.url + '/flowcast.js');
    await startClient(page, transport, [mintJwt(key, { workflows: ['deploy-*'] })], ['deploy-1', 'secret-1']);
    await page.waitForFunction(() => window.fc.state === 'open' && window.seen.some((s) => s.startsWith('deploy-1:'))
      && window.errors.length === 1, null, { timeout: 15000 }).catch(async (e) => {
      throw new Error(`${transport}: ${JSON.stringify(await page.evaluate(() => [window.seen, window.errors, window.states, window.fc.state]))}`);
    });
    const r = await page.evaluate(() => ({ errors: window.errors, ids: [...window.fc.ids] }));
    assert.deepEqual(r, { errors: ['ForbiddenError:forbidden:secret-1'], ids: ['deploy-1'] }, transport);
    await page.evaluate(() => window.fc.close());
    await page.close();
  }
});
