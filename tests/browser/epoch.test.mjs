// flowcast.js across a delete and re-create of a watched workflow (issue 8
// item 1), on each transport: while the client is away the workflow is
// deleted and created again under the same id (through another server on
// the same database), and its seq climbs back to where the client was. The
// client must deliver the old incarnation's deletion and the new one's state
// with resync, then follow the new one; never continue the old one silently.
// The dashboard then shows the new workflow, with only its own history.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, launchBrowser, openPage, realErrors, row, waitRow } from './lib.mjs';

let context;

before(async () => {
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
});

/* Stops s, deletes `id` and creates it again through another server on the
 * same database (patched until its seq is the old one's again), and starts
 * s again. Returns the old and the new workflow objects. */
async function recreateWhileAway(s, id) {
  const old = await s.api('GET', `/api/workflows/${id}`);
  const steps = old.seq - 1;
  await s.stop();
  const other = await Server.start({ db: s.db });
  let now;
  try {
    await other.api('DELETE', `/api/workflows/${id}`);
    now = await other.create({ id, name: 'second life', total_steps: 10 });
    for (let i = 1; i <= steps; i++) now = await other.patch(id, { current_step: i, message: `new ${i}` });
  } finally {
    await other.stop();
  }
  assert.notEqual(now.epoch, old.epoch);
  assert.equal(now.seq, old.seq);
  await s.restart();
  return { old, now };
}

const shape = (u) => [u.epoch, u.seq, u.deleted ? 'd' : u.resync ? 'r' : ''];

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`flowcast.js on ${transport}: the deletion, then the new incarnation, never a continuation`, async () => {
    const s = await Server.start();
    try {
      await s.create({ id: 'w', name: 'first life', total_steps: 10 });
      await s.patch('w', { current_step: 1 });
      await s.patch('w', { current_step: 2 });
      const page = await openPage(context, s.url + '/flowcast.js');
      await page.evaluate(async (transport) => {
        const { FlowcastClient } = await import('/flowcast.js');
        window.seen = [];
        window.c = new FlowcastClient({
          transports: [transport], backoff: { initial: 100, max: 300 }, pollInterval: 300, longPollTimeout: 2,
          onUpdate: (u) => window.seen.push(u), onState: (st) => (window.st = st.state),
        });
        window.c.subscribe(['w', 'w']); // a repeated id is one subscription
      }, transport);
      await page.waitForFunction(() => window.st === 'open' && window.seen.some((u) => u.seq === 3));
      // A plain restart first: the client resumes, nothing lost or repeated.
      await s.stop('SIGKILL');
      await page.waitForFunction(() => window.st !== 'open');
      await s.restart();
      await s.patch('w', { current_step: 3 });
      await s.patch('w', { current_step: 4 });
      await page.waitForFunction(() => window.seen.some((u) => u.seq === 5), null, { timeout: 30000 });
      const { old, now } = await recreateWhileAway(s, 'w');
      await page.waitForFunction(() => window.seen.some((u) => u.resync), null, { timeout: 30000 });
      await s.patch('w', { current_step: 7, message: 'live' });
      await page.waitForFunction(() => window.seen.at(-1).seq === 6 && !window.seen.at(-1).resync, null, { timeout: 15000 });
      const seen = await page.evaluate(() => window.seen);
      const e1 = old.epoch, e2 = now.epoch;
      assert.deepEqual(seen.map(shape), [
        [e1, 3, ''], [e1, 4, ''], [e1, 5, ''], [e1, 6, 'd'], [e2, 5, 'r'], [e2, 6, ''],
      ]);
      assert.equal(seen[4].message, 'new 4');
      assert.deepEqual(await page.evaluate(() => window.c.position('w')), { epoch: e2, seq: 6 });
      await page.evaluate(() => window.c.close());
      await page.close();
    } finally {
      await s.stop();
    }
  });
}

test('flowcast.js on sse: a deletion seen live does not break the next stream', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'a', name: 'a', total_steps: 10 });
    await s.create({ id: 'b', name: 'b', total_steps: 10 });
    const page = await openPage(context, s.url + '/flowcast.js');
    await page.evaluate(async () => {
      const { FlowcastClient } = await import('/flowcast.js');
      window.seen = [];
      window.states = [];
      window.c = new FlowcastClient({
        transports: ['sse'], backoff: { initial: 100, max: 300 },
        onUpdate: (u) => window.seen.push(`${u.workflow_id}${u.seq}${u.deleted ? 'd' : ''}`),
        onState: (st) => window.states.push(st.state),
      });
      window.c.subscribe(['a', 'b']);
    });
    await page.waitForFunction(() => window.seen.length === 2 && window.states.at(-1) === 'open');
    await s.api('DELETE', '/api/workflows/a');
    await page.waitForFunction(() => window.seen.includes('a2d'));
    // Reopening the streams (a new id) must not name the deleted workflow.
    await s.create({ id: 'c', name: 'c', total_steps: 10 });
    await page.evaluate(() => window.c.subscribe(['c']));
    await page.waitForFunction(() => window.seen.includes('c1'));
    await s.patch('b', { current_step: 1 });
    await page.waitForFunction(() => window.seen.includes('b2'));
    const { seen, states } = await page.evaluate(() => ({ seen: window.seen, states: window.states }));
    assert.deepEqual(seen.sort(), ['a1', 'a2d', 'b1', 'b2', 'c1']);
    assert.ok(!states.includes('reconnecting'), states.join(','));
    await page.evaluate(() => window.c.close());
    await page.close();
  } finally {
    await s.stop();
  }
});

test('the dashboard replaces a re-created workflow and its history', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'job', name: 'first life', total_steps: 10 });
    await s.patch('job', { current_step: 1, message: 'old 1' });
    await s.patch('job', { current_step: 2, message: 'old 2' });
    const page = await openPage(context, s.url + '/#w=job');
    await waitRow(page, 'job', { steps: '2 / 10', message: 'old 2' });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 3);
    await recreateWhileAway(s, 'job');
    await waitRow(page, 'job', { steps: '2 / 10', message: 'new 2' }, 30000);
    await page.waitForFunction(() => document.querySelector('[data-testid="detail-name"]').textContent === 'second life');
    await s.patch('job', { current_step: 3, message: 'new 3' });
    await waitRow(page, 'job', { steps: '3 / 10', message: 'new 3' });
    // The old incarnation's history is gone from the panel: only the new
    // one's changes that reached the page (its state at seq 3, then seq 4).
    const items = await page.evaluate(() =>
      [...document.querySelectorAll('[data-testid="history-item"]')].map((li) => li.textContent));
    assert.equal(items.length, 2, items.join(' | '));
    assert.ok(items.every((t) => !t.includes('old')), items.join(' | '));
    assert.equal(await row(page, 'job').locator('[data-testid="wf-name"]').textContent(), 'second life');
    assert.deepEqual(realErrors(page), []);
    await page.close();
  } finally {
    await s.stop();
  }
});
