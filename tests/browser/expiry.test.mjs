// Tokens that expire while flowcast.js streams (issue 9): the server ends a
// stream at its token's exp (close 4401, SSE `event: error`, long-poll 401
// token_expired); flowcast.js asks its token function for a new one and
// resumes from the last (epoch, seq), so each change arrives once, in
// order. On the multi WebSocket it refreshes in place ({"op":"auth"})
// before exp and the stream never closes. And the dashboard offers to paste
// a new token when its token runs out, then resumes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, jwtKeyFile, launchBrowser, mintJwt, openPage, sleep, waitConn, waitRow } from './lib.mjs';

const ADMIN = 'expiry-browser-admin-token';
const TTL = 3; /* seconds: each test outlives two or three tokens */
let server, context, key;

before(async () => {
  key = jwtKeyFile();
  server = await Server.start({ args: ['--jwt-key', key, '--api-token', ADMIN], token: ADMIN });
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
  await server?.stop();
});

/* Patches id every 250 ms for `ms`; resolves to the last seq written. */
async function drive(id, ms) {
  let seq = 1;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(250)) {
    seq = (await server.patch(id, { current_step: seq % 100, message: `m${seq}` })).seq;
  }
  return seq;
}

/* Starts a client in the page. Its token function mints a fresh TTL-second
 * token in the test (exposed to the page) for every call, except that with
 * sameOnRefresh a 'refresh' call hands back the current one (no new token
 * yet: the stream must end at exp and resume). */
async function startClient(page, transport, id, { sameOnRefresh = false, wsAuth, claims = () => ({}) } = {}) {
  let n = 0;
  await page.exposeFunction('mint', () => mintJwt(key, { ttl: TTL, ...claims(n++) }));
  await page.evaluate(async ([url, transport, id, sameOnRefresh, wsAuth]) => {
    const { FlowcastClient } = await import('/flowcast.js');
    Object.assign(window, { calls: [], seen: [], states: [], errors: [] });
    window.fc = new FlowcastClient({
      url, transports: [transport], wsAuth,
      token: async ({ reason, previous }) => {
        window.calls.push(reason);
        return sameOnRefresh && reason === 'refresh' ? previous : window.mint();
      },
      onUpdate: (u) => window.seen.push(typeof id === 'string' ? u.seq : `${u.workflow_id}:${u.seq}`),
      onState: (s) => window.states.push(s.state),
      onError: (e) => window.errors.push(`${e.name}:${e.code}:${e.workflowId ?? ''}`),
    });
    window.fc.subscribe(id);
  }, [server.url, transport, id, sameOnRefresh, wsAuth]);
  await page.waitForFunction((n) => window.fc.state === 'open' && window.seen.length >= n, [].concat(id).length, { timeout: 15000 });
}

/* Drives id across about three token lifetimes, then checks that the page
 * saw every seq once, in order; returns what the page recorded. */
async function acrossExpiry(page, id) {
  const last = await drive(id, 3 * TTL * 1000 + 500);
  await page.waitForFunction((last) => window.seen.includes(last), last, { timeout: 15000 }).catch(async () => {
    throw new Error(`seq ${last} never arrived: ${JSON.stringify(await page.evaluate(() => [window.seen, window.calls, window.states]))}`);
  });
  const r = await page.evaluate(() => ({ seen: window.seen, calls: window.calls, states: window.states, errors: window.errors }));
  assert.deepEqual(r.seen, Array.from({ length: last }, (_, i) => i + 1), 'every change once, in order');
  await page.evaluate(() => window.fc.close());
  return r;
}

test('multi WebSocket: refreshed in place before exp, never closed', async () => {
  await server.create({ id: 'exp-ws-inplace', name: 'x', total_steps: 100 });
  const page = await openPage(context, server.url + '/flowcast.js');
  await startClient(page, 'websocket', 'exp-ws-inplace');
  const r = await acrossExpiry(page, 'exp-ws-inplace');
  assert.ok(r.calls.filter((c) => c === 'refresh').length >= 2, r.calls.join());
  assert.ok(!r.calls.includes('expired'), r.calls.join());
  assert.deepEqual(r.states.filter((s) => s !== 'connecting'), ['open'], 'no reconnect');
  assert.deepEqual(r.errors, []);
  await page.close();
});

test('multi WebSocket: with no new token before exp, closed 4401 at exp, then resumed', async () => {
  await server.create({ id: 'exp-ws-close', name: 'x', total_steps: 100 });
  const page = await openPage(context, server.url + '/flowcast.js');
  await startClient(page, 'websocket', 'exp-ws-close', { sameOnRefresh: true });
  const r = await acrossExpiry(page, 'exp-ws-close');
  assert.ok(r.calls.filter((c) => c === 'expired').length >= 2, r.calls.join());
  assert.ok(r.states.includes('reconnecting'), r.states.join());
  assert.deepEqual(r.errors, []);
  await page.close();
});

test('multi WebSocket: the token as the first message, refreshed in place', async () => {
  await server.create({ id: 'exp-ws-msg', name: 'x', total_steps: 100 });
  const page = await openPage(context, server.url + '/flowcast.js');
  await startClient(page, 'websocket', 'exp-ws-msg', { wsAuth: 'message' });
  assert.doesNotMatch(await page.evaluate(() => window.fc._t.ws.url), /access_token/);
  const r = await acrossExpiry(page, 'exp-ws-msg');
  assert.ok(r.calls.includes('refresh'), r.calls.join());
  assert.deepEqual(r.states.filter((s) => s !== 'connecting'), ['open'], 'no reconnect');
  await page.close();
});

test('multi WebSocket: a refresh that narrows the scope ends those subscriptions (ForbiddenError), the others go on', async () => {
  await server.create({ id: 'deploy-narrow', name: 'x', total_steps: 100 });
  await server.create({ id: 'secret-narrow', name: 'x', total_steps: 100 });
  const page = await openPage(context, server.url + '/flowcast.js');
  /* the first token reads everything, the next ones deploy-* only */
  await startClient(page, 'websocket', ['deploy-narrow', 'secret-narrow'], { claims: (n) => (n ? { workflows: ['deploy-*'] } : {}) });
  await page.waitForFunction(() => window.errors.length > 0, null, { timeout: 15000 });
  await server.patch('secret-narrow', { current_step: 1 });
  const last = (await server.patch('deploy-narrow', { current_step: 1 })).seq;
  await page.waitForFunction((last) => window.seen.includes(`deploy-narrow:${last}`), last, { timeout: 15000 });
  const r = await page.evaluate(() => ({ seen: window.seen, errors: window.errors, states: window.states, ids: [...window.fc.ids] }));
  assert.deepEqual(r.errors, ['ForbiddenError:forbidden:secret-narrow']);
  assert.deepEqual(r.ids, ['deploy-narrow']);
  assert.deepEqual(r.seen, ['deploy-narrow:1', 'secret-narrow:1', 'deploy-narrow:2']);
  assert.deepEqual(r.states.filter((s) => s !== 'connecting'), ['open'], 'no reconnect');
  await page.evaluate(() => window.fc.close());
  await page.close();
});

test('multi WebSocket: a refresh token that may not read is refused, the old one holds until exp', async () => {
  await server.create({ id: 'exp-ws-noread', name: 'x', total_steps: 100 });
  const page = await openPage(context, server.url + '/flowcast.js');
  /* the second token has no read scope: refused in place; the third works */
  await startClient(page, 'websocket', 'exp-ws-noread', { claims: (n) => (n === 1 ? { scope: 'write' } : {}) });
  const r = await acrossExpiry(page, 'exp-ws-noread');
  assert.equal(r.errors[0], 'ForbiddenError:forbidden:', r.errors.join());
  assert.deepEqual(r.calls.slice(0, 3), ['initial', 'refresh', 'expired']);
  assert.equal(r.states.filter((s) => s === 'reconnecting').length, 1, r.states.join());
  await page.close();
});

for (const transport of ['sse', 'longpoll']) {
  test(`${transport}: ended at exp, resumed with the next token`, async () => {
    const id = `exp-${transport}`;
    await server.create({ id, name: 'x', total_steps: 100 });
    const page = await openPage(context, server.url + '/flowcast.js');
    await startClient(page, transport, id);
    const r = await acrossExpiry(page, id);
    assert.ok(r.calls.filter((c) => c === 'expired').length >= 2, r.calls.join());
    assert.deepEqual(r.errors, []);
    await page.close();
  });
}

test('dashboard: the token runs out, a new one is pasted, the view resumes', async () => {
  await server.create({ id: 'exp-dash', name: 'Expiring view', total_steps: 10 });
  const page = await openPage(context, server.url + '/');
  await page.getByTestId('token-input').fill(mintJwt(key, { ttl: 6 }));
  await page.getByTestId('token-submit').click();
  await waitConn(page, 'live', 'websocket');
  await waitRow(page, 'exp-dash', { steps: '0 / 10' });
  const chip = page.getByTestId('token-expiry');
  assert.match(await chip.textContent(), /^Token expires in [0-5] s$/);
  // Before exp the page offers to paste a new token; at exp it says so.
  await page.waitForFunction(() => document.querySelector('[data-testid="auth-title"]').textContent === 'Token expires soon', null, { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="auth-title"]').textContent === 'Token expired', null, { timeout: 10000 });
  await page.waitForFunction(() => /^Token expired/.test(document.querySelector('[data-testid="token-expiry"]').textContent));
  assert.equal(await chip.getAttribute('data-state'), 'expired');
  await waitConn(page, 'auth');
  // A change while the page has no valid token arrives once a new one is in.
  await server.patch('exp-dash', { status: 'running', current_step: 7, message: 'while expired' });
  await page.getByTestId('token-input').fill(mintJwt(key));
  await page.getByTestId('token-submit').click();
  await waitRow(page, 'exp-dash', { steps: '7 / 10', message: 'while expired' });
  await waitConn(page, 'live', 'websocket');
  assert.ok(await page.getByTestId('token-form').isHidden());
  assert.match(await chip.textContent(), /^Token expires in 59 min [0-9]+ s$/);
  await page.close();
});
