// clients/js/flowcast.js's REST helper without a browser (fetch replaced): changes
// carry an Idempotency-Key and are resent with the same key and body when
// their answer is lost; HTTP errors, GETs and aborts are not resent. Then
// the same against the real server, across a kill -9 and restart.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { FlowcastClient, newIdempotencyKey } from '../../clients/js/flowcast.js';
import { Server, sleep } from './lib.mjs';

const realFetch = globalThis.fetch;
afterEach(() => { globalThis.fetch = realFetch; });

/* Replaces fetch: answers[i] is the i-th call's outcome ('lost' rejects like a
 * broken connection, else [status, body]); returns the calls seen. */
function fakeFetch(answers) {
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, ...init, headers: { ...init.headers } });
    const a = answers[calls.length - 1];
    if (a === 'lost') throw new TypeError('fetch failed');
    return { ok: a[0] < 300, status: a[0], text: async () => JSON.stringify(a[1]) };
  };
  return calls;
}

const client = () => new FlowcastClient({ url: 'http://127.0.0.1:1', autoConnect: false, requestBackoff: { initial: 1, max: 5 } });

test('keys: 32 hex characters, new each time', () => {
  const a = newIdempotencyKey(), b = newIdempotencyKey();
  assert.match(a, /^[0-9a-f]{32}$/);
  assert.notEqual(a, b);
});

test('a change whose answer is lost is resent with the same key and body', async () => {
  const calls = fakeFetch(['lost', 'lost', [200, { id: 'w', seq: 2 }]]);
  const w = await client().update('w', { current_step: 1 });
  assert.deepEqual(w, { id: 'w', seq: 2 });
  assert.equal(calls.length, 3);
  const key = calls[0].headers['Idempotency-Key'];
  assert.match(key, /^[0-9a-f]{32}$/);
  for (const c of calls) {
    assert.equal(c.method, 'PATCH');
    assert.equal(c.headers['Idempotency-Key'], key);
    assert.equal(c.body, '{"current_step":1}');
  }
});

test('create and remove carry keys; a given key is used as is; GET carries none', async () => {
  const calls = fakeFetch([[201, { id: 'n' }], [204, null], [200, { id: 'n' }]]);
  const c = client();
  await c.create({ name: 'n', total_steps: 1 }, { idempotencyKey: 'my-key-1' });
  await c.remove('n');
  await c.get('n');
  assert.equal(calls[0].headers['Idempotency-Key'], 'my-key-1');
  assert.match(calls[1].headers['Idempotency-Key'], /^[0-9a-f]{32}$/);
  assert.equal(calls[2].headers['Idempotency-Key'], undefined);
});

test('gives up after requestRetries; HTTP errors and GETs are not resent', async () => {
  let calls = fakeFetch(['lost', 'lost', 'lost']);
  const c = new FlowcastClient({ url: 'http://x', autoConnect: false, requestRetries: 2, requestBackoff: { initial: 1, max: 2 } });
  await assert.rejects(c.update('w', { message: 'm' }), TypeError);
  assert.equal(calls.length, 3);
  calls = fakeFetch([[422, { error: { code: 'idempotency_key_reused', message: 'used' } }]]);
  await assert.rejects(c.update('w', { message: 'm' }), (e) => e.status === 422 && e.code === 'idempotency_key_reused');
  assert.equal(calls.length, 1);
  calls = fakeFetch(['lost', [200, {}]]);
  await assert.rejects(c.get('w'), TypeError);
  assert.equal(calls.length, 1);
});

test('an aborted change is not resent', async () => {
  const ac = new AbortController();
  const calls = fakeFetch(['lost', [200, {}]]);
  ac.abort();
  await assert.rejects(client().request('PATCH', '/api/workflows/w', { message: 'm' }, ac.signal));
  assert.equal(calls.length, 1);
});

test('real server: a retry with the key is answered once; a change survives a restart in flight', async () => {
  const s = await Server.start();
  try {
    const c = new FlowcastClient({ url: s.url, autoConnect: false, requestRetries: 20, requestBackoff: { initial: 50, max: 300 } });
    await c.create({ id: 'js-1', name: 'js', total_steps: 5 });
    const a = await c.update('js-1', { current_step: 1 }, { idempotencyKey: 'js-step-1' });
    const b = await c.update('js-1', { current_step: 1 }, { idempotencyKey: 'js-step-1' });
    assert.deepEqual(b, a);
    await assert.rejects(c.update('js-1', { current_step: 2 }, { idempotencyKey: 'js-step-1' }),
      (e) => e.status === 422 && e.code === 'idempotency_key_reused');
    await s.stop('SIGKILL');
    const pending = c.update('js-1', { current_step: 2, message: 'while down' });
    await sleep(400);
    await s.restart();
    const w = await pending;
    assert.equal(w.seq, 3);
    assert.deepEqual((await c.get('js-1')).seq, 3);
  } finally {
    await s.stop();
  }
});
