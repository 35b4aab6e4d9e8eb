// The dashboard against a running server: workflows created and changed
// through the API appear live, filter, detail view with history, no console
// errors; and the screenshots docs/dashboard.png and docs/dashboard-phone.png.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, Server, launchBrowser, openPage, row, sleep, waitConn, waitRow } from './lib.mjs';

let server, context;

before(async () => {
  server = await Server.start();
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
  await server?.stop();
});

test('shows a workflow created through the API, then a PATCH, without reload', async () => {
  const page = await openPage(context, server.url + '/');
  await waitConn(page, 'live', 'websocket');
  assert.equal(await page.getByTestId('transport').textContent(), 'WebSocket');
  assert.equal(await page.getByTestId('conn-text').textContent(), 'Live');

  await server.create({ id: 'build-1', name: 'Nightly build', total_steps: 8 });
  await waitRow(page, 'build-1', { steps: '0 / 8', status: 'pending' });
  // The creation's update carries the name (older servers: fetched later).
  await page.waitForFunction(
    () => document.querySelector('[data-testid="workflow-row"][data-id="build-1"] [data-testid="wf-name"]')
      .textContent === 'Nightly build',
    null, { timeout: 15000, polling: 50 });

  let navigations = 0;
  page.on('framenavigated', () => navigations++);
  await server.patch('build-1', { status: 'running', current_step: 3, message: 'linking' });
  await waitRow(page, 'build-1', { steps: '3 / 8', message: 'linking', status: 'running' });
  const r = row(page, 'build-1');
  assert.equal(await r.getByTestId('wf-percent').textContent(), '37%');
  assert.equal(await r.getByTestId('wf-status').textContent(), 'running');
  assert.equal(await r.getByTestId('wf-bar').getAttribute('aria-valuenow'), '3');
  assert.equal(navigations, 0, 'the page must not reload');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an update is on the page within a frame of its arrival', async () => {
  await server.create({ id: 'frame-1', name: 'Frame timing', total_steps: 100 });
  const page = await openPage(context, server.url + '/');
  await waitRow(page, 'frame-1', { steps: '0 / 100' });
  // Records, in the page, when the client delivered seq 2 and when the row showed it.
  await page.evaluate(() => {
    const c = window.flowcast;
    const orig = c.onUpdate;
    c.onUpdate = (u, m) => {
      if (u.workflow_id === 'frame-1' && u.seq === 2) window.__arrived = performance.now();
      orig(u, m);
    };
    const li = document.querySelector('[data-testid="workflow-row"][data-id="frame-1"]');
    new MutationObserver(() => {
      if (li.dataset.seq === '2' && !window.__shown) window.__shown = performance.now();
    }).observe(li, { attributes: true, subtree: true, childList: true, characterData: true });
  });
  await server.patch('frame-1', { current_step: 50 });
  await waitRow(page, 'frame-1', { steps: '50 / 100' });
  const { arrived, shown } = await page.evaluate(() => ({ arrived: window.__arrived, shown: window.__shown }));
  assert.ok(arrived && shown, 'both times recorded');
  assert.ok(shown - arrived < 100, `shown ${shown - arrived} ms after arrival`);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('filter by status and the detail view with history', async () => {
  await server.create({ id: 'f-run', name: 'Runs', total_steps: 4, status: 'running' });
  await server.create({ id: 'f-fail', name: 'Fails', total_steps: 4, status: 'failed', message: 'exit 1' });
  const page = await openPage(context, server.url + '/');
  await waitRow(page, 'f-fail', { status: 'failed' });

  await page.getByTestId('filter-failed').click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="workflow-row"]')].filter((r) => !r.hidden);
    return rows.length > 0 && rows.every((r) => r.dataset.status === 'failed');
  });
  assert.ok(await row(page, 'f-run').isHidden());
  assert.match(page.url(), /status=failed/);
  await page.getByTestId('filter-all').click();
  await row(page, 'f-run').waitFor({ state: 'visible' });

  for (let i = 1; i <= 3; i++) await server.patch('f-run', { current_step: i, message: `step ${i}` });
  await waitRow(page, 'f-run', { steps: '3 / 4' });
  await row(page, 'f-run').click();
  const detail = page.getByTestId('detail');
  await detail.waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 4);
  assert.equal(await page.getByTestId('detail-name').textContent(), 'Runs');
  const seqs = await page.$$eval('[data-testid="history-item"]', (els) => els.map((e) => e.dataset.seq));
  assert.deepEqual(seqs, ['4', '3', '2', '1']); // newest first

  // A live change is appended to the open history.
  await server.patch('f-run', { status: 'completed', current_step: 4, message: 'done' });
  await page.waitForFunction(() => document.querySelector('[data-testid="history-item"]')?.dataset.seq === '5');
  assert.equal(await page.getByTestId('detail-status').textContent(), 'completed');
  await page.getByTestId('detail-close').click();
  await detail.waitFor({ state: 'hidden' });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('workflows created while the page is open cost no GET: the updates carry their names', async () => {
  const page = await openPage(context, server.url + '/');
  await waitConn(page, 'live', 'websocket');
  await sleep(500); // the list read at connect is done
  const gets = [];
  page.on('request', (r) => {
    if (r.method() === 'GET' && new URL(r.url()).pathname.startsWith('/api/workflows')) gets.push(r.url());
  });
  for (let i = 0; i < 5; i++) await server.create({ id: `named-${i}`, name: `Named job ${i}`, total_steps: 3 });
  await server.patch('named-4', { status: 'running', current_step: 1 });
  for (let i = 0; i < 5; i++) {
    await page.waitForFunction((i) => document.querySelector(`[data-testid="workflow-row"][data-id="named-${i}"] [data-testid="wf-name"]`)
      ?.textContent === `Named job ${i}`, i);
  }
  await sleep(800); // a batched read of missing details would have gone out by now
  assert.deepEqual(gets, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a deleted workflow leaves the list', async () => {
  await server.create({ id: 'gone-1', name: 'Short lived' });
  const page = await openPage(context, server.url + '/');
  await waitRow(page, 'gone-1', { steps: '0 / 10' });
  await server.api('DELETE', '/api/workflows/gone-1');
  await row(page, 'gone-1').waitFor({ state: 'detached' });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('screenshots of the dashboard (docs/dashboard.png, docs/dashboard-phone.png)', async () => {
  const s = await Server.start();
  try {
    const wf = [
      ['etl-daily', 'Daily ETL: orders → warehouse', 12, { status: 'completed', current_step: 12, message: 'loaded 1,284,311 rows' }],
      ['deploy-api', 'Deploy api to production', 6, { status: 'failed', current_step: 4, message: 'health check failed on 2 of 8 pods' }],
      ['backup-db', 'Postgres backup', 5, { status: 'paused', current_step: 2, message: 'waiting for maintenance window' }],
      ['train-model', 'Train ranking model v7', 40, { status: 'running', current_step: 27, message: 'epoch 27/40 · loss 0.183' }],
      ['ci-4812', 'CI #4812 · main', 9, { status: 'running', current_step: 5, message: 'integration tests' }],
      ['report-q3', 'Quarterly report', 3, { status: 'pending', message: 'queued' }],
    ];
    for (const [id, name, total, patch] of wf) {
      await s.create({ id, name, total_steps: total });
      if (id === 'ci-4812') {
        for (const [step, msg] of [[1, 'checkout'], [2, 'build'], [3, 'unit tests'], [4, 'lint']])
          await s.patch(id, { status: 'running', current_step: step, message: msg });
      }
      await s.patch(id, patch);
    }
    await s.create({ id: 'migrate-users', name: 'Migrate users to new schema', total_steps: 10, status: 'cancelled', message: 'cancelled by alice' });
    const page = await openPage(context, s.url + '/#w=ci-4812');
    await waitConn(page, 'live', 'websocket');
    await waitRow(page, 'report-q3', { message: 'queued' });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 6);
    await page.setViewportSize({ width: 1280, height: 860 });
    await sleep(1400); // let the bars and highlights finish their transitions
    const out = path.join(ROOT, 'docs', 'dashboard.png');
    await page.screenshot({ path: out });
    // The same on a phone, the list without the detail.
    await page.getByTestId('detail-close').click();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await sleep(600);
    await page.screenshot({ path: path.join(ROOT, 'docs', 'dashboard-phone.png') });
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    await s.stop();
  }
});
