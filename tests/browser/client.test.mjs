// clients/js/flowcast.js without a browser: the backoff rule and the (epoch, seq)
// bookkeeping that makes delivery exactly-once (dedupe, resync, delete,
// re-creation under the same id).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowcastClient, backoffDelay, workflowToUpdate } from '../../clients/js/flowcast.js';

test('backoff: first retry within 100 ms, doubling, capped at 30 s, full jitter', () => {
  const top = (a) => backoffDelay(a, undefined, () => 1);
  assert.deepEqual([0, 1, 2, 3, 4].map(top), [100, 200, 400, 800, 1600]);
  assert.equal(top(8), 25600);
  assert.equal(top(9), 30000);
  assert.equal(top(1000), 30000);
  assert.equal(backoffDelay(5, undefined, () => 0), 0);
  assert.equal(backoffDelay(2, { initial: 50, max: 120 }, () => 1), 120);
  for (let a = 0; a < 40; a++) {
    const d = backoffDelay(a);
    assert.ok(d >= 0 && d <= Math.min(30000, 100 * 2 ** a), `attempt ${a}: ${d}`);
  }
});

function recorder(opts = {}) {
  const seen = [];
  const c = new FlowcastClient({ url: 'http://127.0.0.1:1', autoConnect: false, onUpdate: (u) => seen.push(u), ...opts });
  return { c, seen };
}

const u = (id, seq, extra = {}) => ({
  workflow_id: id, status: 'running', current_step: seq, total_steps: 100, message: '',
  timestamp: '2026-11-27T05:00:00.000Z', seq, ...extra,
});

test('dedupe by seq: replays after a reconnect are dropped, order kept', () => {
  const { c, seen } = recorder();
  c.subscribe(['a', 'b']);
  for (const m of [u('a', 1), u('a', 2), u('b', 1), u('a', 2), u('a', 1), u('a', 3), u('b', 1), u('b', 2), u('c', 1)])
    c._deliver(m);
  assert.deepEqual(seen.map((m) => `${m.workflow_id}${m.seq}`), ['a1', 'a2', 'b1', 'a3', 'b2']);
  assert.equal(c.lastSeq('a'), 3);
});

test('since given to subscribe() is where delivery resumes', () => {
  const { c, seen } = recorder();
  c.subscribe(['a'], { a: 5 });
  c._deliver(u('a', 5));
  c._deliver(u('a', 6));
  assert.deepEqual(seen.map((m) => m.seq), [6]);
});

test('resync and deletion', () => {
  const { c, seen } = recorder();
  c.subscribeAll();
  c._deliver(u('a', 1));
  c._deliver(u('a', 1500, { resync: true }));
  assert.equal(seen.at(-1).resync, true);
  c._deliver({ workflow_id: 'a', deleted: true, seq: 1501, timestamp: 'x' });
  assert.equal(c.lastSeq('a'), undefined);
  c._deliver({ workflow_id: 'a', deleted: true, seq: 1501, timestamp: 'x' }); // no second deletion
  c._deliver(u('a', 1)); // recreated under the same id
  assert.deepEqual(seen.map((m) => `${m.seq}${m.deleted ? 'd' : ''}${m.resync ? 'r' : ''}`), ['1', '1500r', '1501d', '1']);
  c._gone('a');
  assert.equal(seen.at(-1).deleted, true);
  assert.equal(seen.at(-1).seq, 2);
});

test('workflowToUpdate maps a REST workflow to the update format', () => {
  const w = { id: 'x', epoch: 42, name: 'n', status: 'paused', current_step: 2, total_steps: 4, message: 'm', seq: 7, created_at: 'c', updated_at: 'u' };
  assert.deepEqual(workflowToUpdate(w), {
    workflow_id: 'x', epoch: 42, name: 'n', status: 'paused', current_step: 2, total_steps: 4, message: 'm', timestamp: 'u', seq: 7,
  });
});

const e = (id, epoch, seq, extra = {}) => u(id, seq, { epoch, ...extra });
const tag = (m) => `${m.workflow_id}${m.epoch ?? ''}:${m.seq}${m.deleted ? 'd' : ''}${m.resync ? 'r' : ''}`;

// Issue 8 item 1: held (7, 3); w was deleted at seq 4 and created again
// (epoch 9) with seq 1..3: the deletion, then the new incarnation (seq 3
// is not above 3 and still is new), never a silent continuation.
test('resume across delete and re-create: deletion, then the new incarnation', () => {
  const { c, seen } = recorder();
  c.subscribe(['w'], { w: { epoch: 7, seq: 3 } });
  assert.deepEqual(c.position('w'), { epoch: 7, seq: 3 });
  c._deliver({ workflow_id: 'w', epoch: 7, deleted: true, seq: 4, timestamp: 'x' });
  assert.equal(c.position('w'), undefined);
  c._deliver(e('w', 9, 3, { resync: true }));
  c._deliver(e('w', 9, 3));       // a repeat
  c._deliver(e('w', 7, 5));       // late news of the replaced incarnation
  c._deliver(e('w', 9, 4));
  assert.deepEqual(seen.map(tag), ['w7:4d', 'w9:3r', 'w9:4']);
  assert.deepEqual(c.position('w'), { epoch: 9, seq: 4 });
});

test('another epoch with a lower seq is a new workflow, not an old change', () => {
  const { c, seen } = recorder();
  c.subscribe(['w']);
  for (const m of [e('w', 7, 5), e('w', 9, 1), e('w', 9, 2), e('w', 9, 2), e('w', 9, 1)]) c._deliver(m);
  assert.deepEqual(seen.map(tag), ['w7:5', 'w9:1', 'w9:2']);
});

test('a resync of the same epoch is delivered only when it is not a repeat', () => {
  const { c, seen } = recorder();
  c.subscribe(['a']);
  c._deliver(e('a', 7, 5));
  c._deliver(e('a', 7, 5, { resync: true })); // the state we have
  c._deliver(e('a', 7, 2, { resync: true })); // a restored server: take it
  c._deliver(e('a', 7, 3));
  assert.deepEqual(seen.map(tag), ['a7:5', 'a7:2r', 'a7:3']);
});

test('a subscribed id keeps its deletion: no repeat, a later incarnation is new', () => {
  const { c, seen } = recorder();
  c.subscribe(['a']);
  c._deliver(e('a', 7, 1));
  c._deliver({ workflow_id: 'a', epoch: 7, deleted: true, seq: 2, timestamp: 'x' });
  c._deliver({ workflow_id: 'a', epoch: 7, deleted: true, seq: 2, timestamp: 'x' });
  c._gone('a'); // already known: nothing more
  c._deliver(e('a', 7, 3));
  c._deliver(e('a', 11, 1));
  assert.deepEqual(seen.map(tag), ['a7:1', 'a7:2d', 'a11:1']);
});

test('_gone synthesizes the deletion of the incarnation it knew', () => {
  const { c, seen } = recorder();
  c.subscribeAll();
  c._deliver(e('a', 7, 4));
  c._gone('a');
  assert.deepEqual(seen.map(tag), ['a7:4', 'a7:5d']);
  assert.equal(c.last.has('a'), false); // all mode forgets deleted workflows
});

// Long-poll and list polls learn of a re-creation from a workflow object.
test('_catchUp of another incarnation: the old one deleted, the new one as resync', async () => {
  const { c, seen } = recorder();
  c.subscribe(['w']);
  c._deliver(e('w', 7, 6));
  const w = { id: 'w', epoch: 9, name: 'n', status: 'running', current_step: 1, total_steps: 5, message: '', seq: 2, created_at: 'c', updated_at: 'u' };
  await c._catchUp(w);
  await c._catchUp(w);
  assert.deepEqual(seen.map(tag), ['w7:6', 'w7:7d', 'w9:2r']);
});

// Issue 8 item 3: a list of ids is a set.
test('subscribe() with a repeated id follows it once', () => {
  const { c, seen } = recorder();
  c.subscribe(['a', 'a', 'b', 'a']);
  assert.deepEqual([...c.ids], ['a', 'b']);
  c._deliver(e('a', 7, 1));
  c._deliver(e('a', 7, 1));
  assert.deepEqual(seen.map(tag), ['a7:1']);
});

test('a bare seq in since (epoch unknown) adopts the epoch of the first update', () => {
  const { c, seen } = recorder();
  c.subscribe(['a'], { a: 4 });
  assert.deepEqual(c.position('a'), { epoch: null, seq: 4 });
  c._deliver(e('a', 7, 4));
  c._deliver(e('a', 7, 5));
  assert.deepEqual(c.position('a'), { epoch: 7, seq: 5 });
  assert.deepEqual(seen.map(tag), ['a7:5']);
});
