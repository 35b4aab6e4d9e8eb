// The dashboard across a server crash and restart, and its fallbacks: SSE
// when the server refuses WebSockets, long-poll when WebSocket and SSE are
// both blocked.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, launchBrowser, openPage, realErrors, row, waitConn, waitRow } from './lib.mjs';

let context;

before(async () => {
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
});

test('reconnects after kill -9 and restart, and shows the change made meanwhile', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'job-1', name: 'Long job', total_steps: 10 });
    const page = await openPage(context, s.url + '/');
    await waitConn(page, 'live', 'websocket');
    await s.patch('job-1', { status: 'running', current_step: 1, message: 'one' });
    await waitRow(page, 'job-1', { steps: '1 / 10', message: 'one' });

    await s.stop('SIGKILL');
    await page.waitForFunction(() => document.querySelector('[data-testid="conn"]').dataset.state !== 'live', null, { timeout: 10000 });
    const text = await page.getByTestId('conn-text').textContent();
    assert.match(text, /^(Reconnecting|Offline)/);
    assert.equal(await page.getByTestId('transport').textContent(), '—');

    await s.restart();
    // Right after the restart, before or while the page reconnects:
    await s.patch('job-1', { current_step: 2, message: 'two' });
    await s.patch('job-1', { current_step: 3, message: 'three' });
    await s.create({ id: 'job-2', name: 'Born while away', total_steps: 4 });

    await waitConn(page, 'live', 'websocket', 30000);
    await waitRow(page, 'job-1', { steps: '3 / 10', message: 'three' }, 30000);
    await waitRow(page, 'job-2', { steps: '0 / 4' }, 30000);
    assert.equal(await row(page, 'job-1').getAttribute('data-seq'), '4');

    // Every change reached the client once, in order: the detail history shows seq 1..4.
    await row(page, 'job-1').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 4);
    assert.deepEqual(realErrors(page), []);
    await page.close();
  } finally {
    await s.stop();
  }
});

test('the client delivers each change exactly once across a restart', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'x', name: 'x', total_steps: 100 });
    const page = await openPage(context, s.url + '/flowcast.js'); // same origin, a blank-ish document
    await page.evaluate(async () => {
      const { FlowcastClient } = await import('/flowcast.js');
      window.seen = [];
      window.c = new FlowcastClient({ onUpdate: (u) => window.seen.push(u.seq), onState: (st) => (window.st = st.state) });
      window.c.subscribe(['x']);
    });
    await page.waitForFunction(() => window.st === 'open' && window.seen.length === 1);
    for (let i = 1; i <= 5; i++) await s.patch('x', { current_step: i });
    await page.waitForFunction(() => window.seen.length === 6);
    await s.stop('SIGKILL');
    await page.waitForFunction(() => window.st !== 'open');
    await s.restart();
    for (let i = 6; i <= 10; i++) await s.patch('x', { current_step: i });
    await page.waitForFunction(() => window.seen.at(-1) === 11, null, { timeout: 30000 });
    for (let i = 11; i <= 12; i++) await s.patch('x', { current_step: i });
    await page.waitForFunction(() => window.seen.at(-1) === 13);
    const seen = await page.evaluate(() => window.seen);
    assert.deepEqual(seen, Array.from({ length: 13 }, (_, i) => i + 1));
    await page.evaluate(() => window.c.close());
    await page.close();
  } finally {
    await s.stop();
  }
});

test('with --no-websocket the page runs on SSE and says so', async () => {
  const s = await Server.start({ args: ['--no-websocket'] });
  try {
    await s.create({ id: 'sse-1', name: 'Over SSE', total_steps: 5 });
    const page = await openPage(context, s.url + '/');
    await waitConn(page, 'live', 'sse');
    assert.equal(await page.getByTestId('transport').textContent(), 'SSE');
    await waitRow(page, 'sse-1', { steps: '0 / 5' });
    await s.patch('sse-1', { status: 'running', current_step: 2, message: 'via event stream' });
    await waitRow(page, 'sse-1', { steps: '2 / 5', message: 'via event stream' });
    // New workflows are found by the list poll and streamed too.
    await s.create({ id: 'sse-2', name: 'Later', total_steps: 2 });
    await waitRow(page, 'sse-2', { steps: '0 / 2' });
    await s.patch('sse-2', { current_step: 1, message: 'streamed' });
    await waitRow(page, 'sse-2', { steps: '1 / 2', message: 'streamed' });
    assert.deepEqual(realErrors(page), []);
    await page.close();
  } finally {
    await s.stop();
  }
});

test('long-poll when WebSocket and SSE are both blocked', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'lp-1', name: 'Over long-poll', total_steps: 5 });
    const page = await openPage(context);
    await page.routeWebSocket(/\/api\/updates/, (ws) => ws.close({ code: 1008, reason: 'blocked by test' }));
    await page.route(/\/api\/events/, (route) => route.abort('blockedbyclient'));
    await page.goto(s.url + '/');
    await waitConn(page, 'live', 'longpoll');
    assert.equal(await page.getByTestId('transport').textContent(), 'Long-poll');
    await waitRow(page, 'lp-1', { steps: '0 / 5' });
    await s.patch('lp-1', { status: 'running', current_step: 1, message: 'a' });
    await s.patch('lp-1', { current_step: 2, message: 'b' });
    await waitRow(page, 'lp-1', { steps: '2 / 5', message: 'b' });
    await s.create({ id: 'lp-2', name: 'Later', total_steps: 3 });
    await waitRow(page, 'lp-2', { steps: '0 / 3' });
    await row(page, 'lp-1').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 3);
    assert.deepEqual(realErrors(page), []);
    await page.close();
  } finally {
    await s.stop();
  }
});
