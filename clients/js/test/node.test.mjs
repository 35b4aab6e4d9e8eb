// flowcast.js in Node (no browser) against a real server: each WebSocket
// Node offers (its own global one, the `ws` package), SSE and long-poll (on
// fetch) see every change once, in order, across a kill -9 and restart of the
// server; the workflow's name on every update (a deletion has none); a
// deletion and a re-creation; the REST helpers.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WebSocket as WsWebSocket } from 'ws';
import { FlowcastClient, HttpError } from '../flowcast.js';
import { Server, sleep, until } from '../../../tests/node/server.mjs';

let server;
before(async () => { server = await Server.start(); });
after(async () => { await server.stop('SIGKILL'); });

/* A client on server that records what it delivers. */
function recorder(opts) {
  const seen = [];
  const states = [];
  const errors = [];
  const c = new FlowcastClient({
    url: server.url,
    backoff: { initial: 50, max: 500 },
    onUpdate: (u) => seen.push(u),
    onState: (s) => states.push(s),
    onError: (e) => errors.push(e),
    ...opts,
  });
  return { c, seen, states, errors };
}

const variants = [
  ['the global WebSocket', { transports: ['websocket'] }, typeof WebSocket === 'function'],
  ['the ws package', { transports: ['websocket'], WebSocket: WsWebSocket }, true],
  ['Server-Sent Events (on fetch unless Node has EventSource)', { transports: ['sse'] }, true],
  ['long-poll', { transports: ['longpoll'], pollInterval: 300 }, true],
];

for (const [name, opts, usable] of variants) {
  test(`Node, ${name}: every change once, in order, across a kill -9 and restart`, { skip: !usable && 'no global WebSocket in this Node' }, async () => {
    const id = `node-${opts.transports[0]}-${opts.WebSocket ? 'ws' : 'g'}`;
    await server.create({ id, name: `Node ${name}` });
    const { c, seen, states } = recorder(opts);
    c.subscribe([id]);
    try {
      await until(() => c.state === 'open' && seen.length === 1, () => JSON.stringify(states.at(-1)));
      assert.equal(c.transport, opts.transports[0]);
      for (let i = 1; i <= 5; i++) await server.patch(id, { current_step: i });
      await until(() => seen.length === 6, () => `${seen.length} updates`);
      await server.stop('SIGKILL');
      await until(() => c.state !== 'open', () => c.state);
      await server.restart();
      for (let i = 6; i <= 10; i++) await server.patch(id, { current_step: i, status: i === 10 ? 'completed' : 'running' });
      await until(() => seen.length >= 11 && seen.at(-1).seq === 11, () => JSON.stringify(seen.map((u) => u.seq)));
      await sleep(300); /* no late repeat */
      assert.deepEqual(seen.map((u) => u.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      assert.deepEqual(seen.map((u) => u.current_step), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.ok(seen.every((u) => u.epoch === seen[0].epoch && typeof u.epoch === 'number'));
      assert.equal(seen.at(-1).status, 'completed');
      assert.ok(states.some((s) => s.state === 'reconnecting'), 'the restart was noticed');
    } finally {
      c.close();
    }
  });
}

for (const [name, opts, usable] of variants) {
  test(`Node, ${name}: every update carries the workflow's name, a deletion none`, { skip: !usable && 'no global WebSocket in this Node' }, async () => {
    const id = `name-${opts.transports[0]}-${opts.WebSocket ? 'ws' : 'g'}`;
    const title = `Nächtlich "${name}" \\ 夜间`;
    await server.create({ id, name: title });
    const { c, seen } = recorder(opts);
    c.subscribe([id]);
    try {
      await until(() => seen.length === 1, () => `${seen.length} updates`);
      await server.patch(id, { current_step: 1 });
      await until(() => seen.length === 2, () => `${seen.length} updates`);
      await server.remove(id);
      await until(() => seen.length === 3, () => `${seen.length} updates`);
      assert.deepEqual(seen.map((u) => [u.seq, u.deleted === true, u.name]),
        [[1, false, title], [2, false, title], [3, true, undefined]]);
    } finally {
      c.close();
    }
  });
}

test('Node, WebSocket and all: workflows the list finds carry their name too', async () => {
  await server.create({ id: 'name-listed', name: 'Listed job' });
  const { c, seen } = recorder({ transports: ['websocket'], WebSocket: WsWebSocket });
  c.subscribeAll(); /* subscribe_all sends no states: the existing ones come from the list */
  try {
    await until(() => seen.some((u) => u.workflow_id === 'name-listed'), () => `${seen.length} updates`);
    assert.equal(seen.find((u) => u.workflow_id === 'name-listed').name, 'Listed job');
    for (const u of seen) if (!u.deleted) assert.ok(typeof u.name === 'string' && u.name, JSON.stringify(u));
  } finally {
    c.close();
  }
});

test('Node: a deletion, then the new incarnation with resync, never a continuation', async () => {
  await server.create({ id: 'node-del', name: 'to delete' });
  const { c, seen } = recorder({ WebSocket: WsWebSocket });
  c.subscribeAll();
  try {
    await until(() => c.state === 'open' && seen.some((u) => u.workflow_id === 'node-del'));
    await server.patch('node-del', { current_step: 3 });
    await server.remove('node-del');
    await server.create({ id: 'node-del', name: 'again' });
    const mine = () => seen.filter((u) => u.workflow_id === 'node-del');
    await until(() => mine().length >= 4, () => JSON.stringify(mine()));
    const m = mine();
    assert.equal(m[1].seq, 2);
    assert.equal(m[2].deleted, true);
    assert.equal(m[2].epoch, m[0].epoch);
    assert.equal(m[3].seq, 1);
    assert.notEqual(m[3].epoch, m[0].epoch);
  } finally {
    c.close();
  }
});

test('Node: the REST helpers (create, update with if_seq, get, list, history, remove)', async () => {
  const c = new FlowcastClient({ url: server.url, autoConnect: false });
  const w = await c.create({ id: 'node-rest', name: 'rest', total_steps: 4 });
  assert.equal(w.seq, 1);
  const w2 = await c.update('node-rest', { current_step: 2, if_seq: 1 });
  assert.equal(w2.seq, 2);
  await assert.rejects(c.update('node-rest', { current_step: 3, if_seq: 1 }), (e) => e instanceof HttpError && e.status === 409);
  assert.equal((await c.get('node-rest')).current_step, 2);
  assert.ok((await c.list({ limit: 1000 })).workflows.some((x) => x.id === 'node-rest'));
  const h = await c.history('node-rest', { since: 0, epoch: w.epoch });
  assert.deepEqual(h.events.map((e) => e.seq), [1, 2]);
  /* the same Idempotency-Key twice: applied once */
  const a = await c.update('node-rest', { current_step: 3 }, { idempotencyKey: 'k-node-1' });
  const b = await c.update('node-rest', { current_step: 3 }, { idempotencyKey: 'k-node-1' });
  assert.equal(a.seq, 3);
  assert.equal(b.seq, 3);
  assert.equal(await c.remove('node-rest'), null);
  await assert.rejects(c.get('node-rest'), (e) => e.status === 404);
});
