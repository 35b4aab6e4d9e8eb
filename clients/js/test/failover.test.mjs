// flowcast.js with several server URLs (issue 10 §3), in Node against real
// servers: a refused first URL is passed over; a server killed mid-stream is
// left for the next URL, where a new process has the same SQLite file open,
// and the stream resumes there by (epoch, seq): every change once, in
// order; the backoff wait comes once per full round of failed URLs.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, test } from 'node:test';
import { WebSocket as WsWebSocket } from 'ws';
import { FlowcastClient, serverUrls } from '../flowcast.js';
import { Server, freePort, sleep, until } from '../../../tests/node/server.mjs';

const started = [];
after(async () => { for (const s of started) await s.stop('SIGKILL'); });

async function serve(opts) {
  const s = await Server.start(opts);
  started.push(s);
  return s;
}

function recorder(url, opts) {
  const seen = [];
  const states = [];
  const c = new FlowcastClient({
    url,
    WebSocket: WsWebSocket,
    backoff: { initial: 50, max: 400 },
    onUpdate: (u) => seen.push(u),
    onState: (s) => states.push(s),
    ...opts,
  });
  return { c, seen, states };
}

test('serverUrls: an array or a comma string, trimmed, trailing slashes dropped', () => {
  assert.deepEqual(serverUrls('http://a:1/, http://b:2'), ['http://a:1', 'http://b:2']);
  assert.deepEqual(serverUrls(['http://a:1', ' http://b:2// ']), ['http://a:1', 'http://b:2']);
  assert.deepEqual(serverUrls('http://a:1'), ['http://a:1']);
  assert.throws(() => serverUrls(' , '), TypeError);
});

for (const transport of ['websocket', 'longpoll']) {
  test(`${transport}: a refused first URL is passed over, then a server killed mid-stream is left for the next URL with the same db`, async () => {
    const refused = `http://127.0.0.1:${await freePort()}`; /* nothing listens there */
    const a = await serve();
    const bPort = await freePort();
    const id = `fo-${transport}`;
    await a.create({ id, name: 'failover' });
    const { c, seen, states } = recorder([refused, a.url, `http://127.0.0.1:${bPort}`], { transports: [transport], pollInterval: 300 });
    c.subscribe([id]);
    try {
      await until(() => c.state === 'open' && seen.length === 1, () => JSON.stringify(states.at(-1)));
      assert.equal(c.url, a.url);
      assert.ok(states.some((s) => s.trying && s.url === refused), 'the first URL was tried');
      /* a producer writes while the server in use dies */
      let step = 0;
      for (; step < 5; step++) await a.patch(id, { current_step: step + 1 });
      await until(() => seen.length === 6, () => `${seen.length}`);
      await a.stop('SIGKILL');
      const b = await serve({ port: bPort, db: a.db });
      for (; step < 10; step++) await b.patch(id, { current_step: step + 1 });
      await until(() => seen.at(-1)?.seq === 11, () => JSON.stringify(seen.map((u) => u.seq)));
      await sleep(300);
      assert.equal(c.url, b.url);
      assert.equal(c.state, 'open');
      assert.deepEqual(seen.map((u) => u.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      assert.deepEqual(seen.map((u) => u.current_step), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.ok(seen.every((u) => u.epoch === seen[0].epoch));
    } finally {
      c.close();
    }
  });
}

test('backoff once per full round: every URL is tried between two waits, round robin', async () => {
  const urls = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
  const { c, states } = recorder(urls.join(','), { transports: ['websocket'], backoff: { initial: 20, max: 40 }, maxRetries: 3 });
  c.connect();
  await until(() => c.state === 'closed', () => JSON.stringify(states.at(-1)), 20000);
  /* tries and waits in order: 3 tries, a wait, 3 tries, ... */
  const events = states.filter((s) => s.trying || s.delay != null).map((s) => (s.trying ? s.url : 'wait'));
  const round = [...urls, 'wait'];
  assert.deepEqual(events, [...round, ...round, ...round, ...urls]);
  const waits = states.filter((s) => s.delay != null);
  assert.deepEqual(waits.map((s) => s.attempt), [1, 2, 3]);
  for (const w of waits) assert.ok(w.delay >= 0 && w.delay <= 40, `delay ${w.delay}`);
});

test('a change sent to a refused URL is resent to the next one, same Idempotency-Key, applied once', async () => {
  const refused = `http://127.0.0.1:${await freePort()}`;
  const a = await serve();
  const c = new FlowcastClient({ url: [refused, a.url], autoConnect: false, requestBackoff: { initial: 10, max: 20 } });
  const w = await c.create({ id: 'fo-rest', name: 'rest', total_steps: 3 }, { idempotencyKey: 'fo-rest-key' });
  assert.equal(w.seq, 1);
  /* the same key again (an answer lost on the way back): the first answer, not a 409 */
  const again = await c.create({ id: 'fo-rest', name: 'rest', total_steps: 3 }, { idempotencyKey: 'fo-rest-key' });
  assert.deepEqual(again, w);
});

test('with several URLs, a change a gateway answers 502 goes to the next URL with its Idempotency-Key, applied once', async () => {
  const a = await serve();
  const keys = [];
  const gateway = http.createServer((req, res) => {
    keys.push(req.headers['idempotency-key']);
    req.resume();
    res.writeHead(502, { 'Content-Type': 'application/json' }).end('{"error":{"code":"bad_gateway"}}');
  });
  await new Promise((r) => gateway.listen(0, '127.0.0.1', r));
  try {
    const c = new FlowcastClient({ url: [`http://127.0.0.1:${gateway.address().port}`, a.url], autoConnect: false, requestBackoff: { initial: 10, max: 20 } });
    const w = await c.create({ id: 'fo-502', name: '502', total_steps: 3 });
    assert.equal(w.seq, 1);
    const u = await c.update('fo-502', { current_step: 1 });
    assert.equal(u.seq, 2);
    assert.equal(keys.length, 2);
    assert.notEqual(keys[0], keys[1]);
    assert.match(keys[0], /^[0-9a-f]{32}$/);
    /* one server: a 502 is the answer */
    const one = new FlowcastClient({ url: `http://127.0.0.1:${gateway.address().port}`, autoConnect: false });
    await assert.rejects(one.update('fo-502', { current_step: 2 }), (e) => e.status === 502);
  } finally {
    gateway.close();
  }
});
