// The dashboard while updates stream and while the server is away: the
// newest history entries are readable (no entrance fade restarted at every
// update), rows are marked stale with nothing moving while disconnected,
// the connection pill offers "Retry now", and failing retries do not flood
// the console (one failed request per retry once the server is known down).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, launchBrowser, openPage, row, sleep, waitConn, waitRow } from './lib.mjs';

let context;

before(async () => {
  context = await launchBrowser();
});

after(async () => {
  await context?.close();
});

test('the newest history entries stay readable while updates stream', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'busy', name: 'Busy producer', total_steps: 1000, status: 'running' });
    const page = await openPage(context, s.url + '/#w=busy');
    await waitConn(page, 'live', 'websocket');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 1);
    let stop = false;
    const load = (async () => {
      for (let i = 1; !stop; i++) {
        await s.patch('busy', { current_step: i, message: `step ${i}` });
        await sleep(200);
      }
    })();
    const samples = [];
    try {
      for (let k = 0; k < 30; k++) {
        samples.push(await page.evaluate(() => {
          const items = [...document.querySelectorAll('[data-testid="history-item"]')].slice(0, 3);
          return items.map((li) => ({
            seq: Number(li.dataset.seq),
            opacity: Number(getComputedStyle(li).opacity),
            moving: li.getAnimations({ subtree: true }).filter((a) => a.playState === 'running').length,
          }));
        }));
        await sleep(100);
      }
    } finally {
      stop = true;
      await load;
    }
    const seen = new Set(samples.flat().map((x) => x.seq));
    assert.ok(seen.size >= 8, `the history moved while sampled (${seen.size} seqs seen)`);
    for (const x of samples.flat()) {
      assert.equal(x.opacity, 1, `history entry #${x.seq} drawn at opacity ${x.opacity}`);
      assert.equal(x.moving, 0, `history entry #${x.seq} is animating`);
    }
    const last = await page.evaluate(() => Number(document.querySelector('[data-testid="history-item"]').dataset.seq));
    await page.waitForFunction((seq) => Number(document.querySelector('[data-testid="history-item"]').dataset.seq) >= seq, last);
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    await s.stop();
  }
});

test('disconnected: rows stale and still, a quiet console, and "Retry now"', async () => {
  const s = await Server.start();
  try {
    await s.create({ id: 'run-1', name: 'Running job', total_steps: 10, status: 'running', current_step: 4 });
    await s.create({ id: 'run-2', name: 'Another', total_steps: 10, status: 'running', current_step: 7 });
    const page = await openPage(context, s.url + '/');
    await waitConn(page, 'live', 'websocket');
    await waitRow(page, 'run-2', { steps: '7 / 10' });
    assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), false);
    assert.ok(await page.getByTestId('retry-now').isHidden());

    const errors = [];
    page.on('console', (m) => errors.push(m.text()));
    await s.stop('SIGKILL');
    const lost = Date.now();
    await page.waitForFunction(() => document.querySelector('[data-testid="conn"]').dataset.state !== 'live');
    // Marked stale; once the bars' slides end, nothing on the rows moves.
    await page.waitForFunction(() => document.body.classList.contains('stale'));
    await sleep(600);
    const rows = await page.evaluate(() => [...document.querySelectorAll('[data-testid="workflow-row"]')].map((li) => ({
      opacity: Number(getComputedStyle(li).opacity),
      moving: li.getAnimations({ subtree: true }).filter((a) => a.playState === 'running').length,
    })));
    assert.equal(rows.length, 2);
    for (const r of rows) {
      assert.ok(r.opacity < 1, `a stale row looks like a live one (opacity ${r.opacity})`);
      assert.equal(r.moving, 0, 'an animation runs on a stale row');
    }

    // 12 s of failing retries: the first rounds try each transport (four
    // failed requests a round), then one health probe per retry.
    await sleep(Math.max(0, 12000 - (Date.now() - lost)));
    const flood = errors.length;
    console.log(`# ${flood} console messages in 12 s of failed retries: ${JSON.stringify(errors.slice(0, 3))} ...`);
    assert.ok(flood <= 16, `${flood} console messages in 12 s of failed retries`);

    // "Retry now" skips a long wait (made certain: backoff 60 s, no jitter).
    await page.evaluate(() => {
      window.flowcast.backoff = { initial: 60000, max: 60000 };
      Math.random = () => 0.999;
    });
    await page.waitForFunction(() => {
      const t = document.querySelector('[data-testid="conn-text"]').textContent;
      const m = /in (\d+) s/.exec(t);
      return m && Number(m[1]) >= 30 && !document.querySelector('[data-testid="retry-now"]').hidden;
    }, null, { timeout: 90000, polling: 100 });
    // The pill with its button fits a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(200);
    const fit = await page.evaluate(() => {
      const b = document.querySelector('[data-testid="retry-now"]').getBoundingClientRect();
      return { sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth, right: b.right, width: b.width };
    });
    assert.ok(fit.sw <= fit.cw && fit.right <= fit.cw && fit.width > 0, `pill on a phone: ${JSON.stringify(fit)}`);
    await page.setViewportSize({ width: 1280, height: 760 });

    await s.restart();
    await s.patch('run-1', { current_step: 5, message: 'while away' });
    const before = Date.now();
    await page.getByTestId('retry-now').click();
    await waitConn(page, 'live', 'websocket', 20000);
    assert.ok(Date.now() - before < 20000);
    await waitRow(page, 'run-1', { steps: '5 / 10', message: 'while away' });
    assert.equal(await page.evaluate(() => document.body.classList.contains('stale')), false);
    assert.ok(await row(page, 'run-2').isVisible());
    assert.ok(await page.getByTestId('retry-now').isHidden());
    await page.close();
  } finally {
    await s.stop();
  }
});
