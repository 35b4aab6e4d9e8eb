// web/flowcast.js without a browser: the backoff rule and the seq
// bookkeeping that makes delivery exactly-once (dedupe, resync, delete).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowcastClient, backoffDelay, workflowToUpdate } from '../../web/flowcast.js';

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
  const w = { id: 'x', name: 'n', status: 'paused', current_step: 2, total_steps: 4, message: 'm', seq: 7, created_at: 'c', updated_at: 'u' };
  assert.deepEqual(workflowToUpdate(w), {
    workflow_id: 'x', status: 'paused', current_step: 2, total_steps: 4, message: 'm', timestamp: 'u', seq: 7,
  });
});
