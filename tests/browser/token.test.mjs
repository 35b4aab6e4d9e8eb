// clients/js/flowcast.js's credential handling without a browser (fetch replaced):
// exp read from a JWT, the token function asked once for many refusals,
// a 401 answered by resending with the new token (same Idempotency-Key),
// 403 a ForbiddenError that is not retried.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { AuthError, FlowcastClient, ForbiddenError, HttpError, jwtExp } from '../../clients/js/flowcast.js';
import { Credential } from '../../clients/js/flowcast-auth.js';

const realFetch = globalThis.fetch;
afterEach(() => { globalThis.fetch = realFetch; });

/* Replaces fetch: answers[i] is the i-th call's [status, body]; returns the calls. */
function fakeFetch(answers) {
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, ...init, headers: { ...init.headers } });
    const a = answers[Math.min(calls.length - 1, answers.length - 1)];
    return { ok: a[0] < 300, status: a[0], text: async () => JSON.stringify(a[1]) };
  };
  return calls;
}

const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
const expired = [401, { error: { code: 'token_expired', message: 'expired' } }];

test('jwtExp: the exp claim of a JWT, null for anything else', () => {
  assert.equal(jwtExp(jwt({ exp: 1900000000, scope: 'read' })), 1900000000);
  assert.equal(jwtExp(jwt({ scope: 'read' })), null);
  assert.equal(jwtExp(jwt({ exp: '1900000000' })), null);
  assert.equal(jwtExp('static-api-token'), null);
  assert.equal(jwtExp('a.%%%.c'), null);
  assert.equal(jwtExp(null), null);
});

test('Credential: concurrent renewals share one call; a replaced token is not renewed again', async () => {
  let n = 0;
  const c = new Credential(async ({ reason }) => {
    n++;
    await new Promise((r) => setTimeout(r, 5));
    return `t${n}-${reason}`;
  });
  assert.equal(c.stale(), true);
  assert.equal(await c.current(), 't1-initial');
  const [a, b] = await Promise.all([c.renew('expired', 't1-initial'), c.renew('unauthorized', 't1-initial')]);
  assert.deepEqual([a, b, n], ['t2-expired', 't2-expired', 2]);
  assert.equal(await c.renew('expired', 't1-initial'), 't2-expired'); /* already replaced */
  assert.equal(n, 2);
  const s = new Credential('fixed');
  assert.equal(s.stale(), false);
  assert.equal(await s.renew('expired', 'fixed'), 'fixed');
});

test('Credential: a JWT past its exp is stale; the refresh comes before exp', () => {
  const now = Math.floor(Date.now() / 1000);
  const c = new Credential(() => null);
  c.set(jwt({ exp: now - 1 }));
  assert.equal(c.stale(), true);
  c.set(jwt({ exp: now + 40 }));
  assert.equal(c.stale(), false);
  const due = c.refreshIn();
  assert.ok(due > 25000 && due <= 30000, `refresh in ${due} ms (a quarter of 40 s before exp)`);
  assert.ok(c.refreshIn(5000) > 30000);
  c.set('not-a-jwt');
  assert.equal(c.refreshIn(), null);
});

test('a 401 token_expired is resent once with the next token, same Idempotency-Key', async () => {
  const calls = fakeFetch([expired, [200, { id: 'w', seq: 3 }]]);
  const reasons = [];
  const c = new FlowcastClient({ url: 'http://x', autoConnect: false, token: ({ reason }) => { reasons.push(reason); return `tok-${reasons.length}`; } });
  assert.deepEqual(await c.update('w', { current_step: 1 }), { id: 'w', seq: 3 });
  assert.deepEqual(reasons, ['initial', 'expired']);
  assert.deepEqual(calls.map((x) => x.headers.Authorization), ['Bearer tok-1', 'Bearer tok-2']);
  assert.equal(calls[0].headers['Idempotency-Key'], calls[1].headers['Idempotency-Key']);
  assert.equal(c.token, 'tok-2');
});

test('a 401 with no other token is an AuthError; a 403 is a ForbiddenError, not retried', async () => {
  let calls = fakeFetch([expired]);
  const c = new FlowcastClient({ url: 'http://x', autoConnect: false, token: () => 'same' });
  await assert.rejects(c.get('w'), (e) => e instanceof AuthError && e.status === 401 && e.code === 'token_expired');
  assert.equal(calls.length, 1, 'the same token is not sent again');
  calls = fakeFetch([[403, { error: { code: 'forbidden', message: 'no' } }]]);
  await assert.rejects(c.get('w'), (e) => e instanceof ForbiddenError && !(e instanceof AuthError) && e instanceof HttpError && e.status === 403);
  assert.equal(calls.length, 1);
  /* a string token: sent on reads too, never renewed */
  calls = fakeFetch([[401, { error: 'token_expired' }]]);
  const s = new FlowcastClient({ url: 'http://x', autoConnect: false, token: 'static' });
  await assert.rejects(s.list(), (e) => e instanceof AuthError && e.code === 'token_expired');
  assert.deepEqual(calls.map((x) => x.headers.Authorization), ['Bearer static']);
});

test('many requests refused at once ask the token function once', async () => {
  const seen = [];
  globalThis.fetch = async (url, init) => {
    seen.push(init.headers.Authorization);
    const ok = init.headers.Authorization === 'Bearer new';
    return { ok, status: ok ? 200 : 401, text: async () => JSON.stringify(ok ? {} : expired[1]) };
  };
  const reasons = [];
  const c = new FlowcastClient({ url: 'http://x', autoConnect: false, token: async ({ reason }) => {
    reasons.push(reason);
    await new Promise((r) => setTimeout(r, 5));
    return reason === 'initial' ? 'old' : 'new';
  } });
  await c.auth.current();
  await Promise.all([c.get('a'), c.get('b'), c.get('c')]);
  assert.deepEqual(reasons, ['initial', 'expired']);
  assert.deepEqual(seen.sort(), ['Bearer new', 'Bearer new', 'Bearer new', 'Bearer old', 'Bearer old', 'Bearer old']);
});
