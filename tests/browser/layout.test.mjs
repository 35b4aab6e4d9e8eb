// The dashboard's layout against content that used to break it: a
// 250-character name, a 4 KB message without a space, names in several
// scripts, at 1400×900 and on a phone (390×844). Nothing may widen the page
// (scrollWidth <= clientWidth), every row's badge and time stay on screen,
// bars are drawn to scale, and the detail panel neither overlaps the list
// nor slides under the sticky header.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Server, launchBrowser, openPage, sleep, waitConn, waitRow } from './lib.mjs';

let server, context;

const NAMES = {
  'long-name': 'N'.repeat(250),
  'arabic': 'مزامنة قاعدة البيانات الليلية مع المستودع الرئيسي للتقارير الشهرية',
  'hebrew': 'גיבוי מסד הנתונים הראשי לשרת המשני בכל לילה',
  'cjk': '数据管道同步任务：订单到数据仓库的每日增量同步与校验',
  'thai': 'การซิงค์ข้อมูลคำสั่งซื้อประจำวันไปยังคลังข้อมูล',
  'devanagari': 'रात्रिकालीन डेटा बैकअप और सत्यापन प्रक्रिया',
  'emoji': '🚀 Deploy 👩‍💻 to 🇪🇺 prod 🔥🔥🔥 ' + '🎉'.repeat(20),
  'zalgo': 'Z̷̢̛̛̖̗a̸̧̛̤͉l̶̨̛̺̫g̵̢̛̱̺o̴̡̧̝͍' + ' c̷̢̛o̶̢̊m̵̨̊b̶̧̊i̷̢̊n̵̨̊i̴̢̊ņ̸̊g̶̢̊'.repeat(2),
};
const PLAIN = 30; /* ordinary workflows below them, so the page scrolls */

before(async () => {
  server = await Server.start();
  context = await launchBrowser();
  for (let i = 0; i < PLAIN; i++) {
    await server.create({ id: `plain-${i}`, name: `Plain job ${i}`, total_steps: 7, current_step: i % 8 > 7 ? 7 : i % 8, status: 'running' });
  }
  const steps = { 'long-name': [3, 10], 'arabic': [1, 4], 'hebrew': [2, 3], 'cjk': [8, 8], 'thai': [5, 9], 'devanagari': [0, 5], 'emoji': [7, 11], 'zalgo': [1, 2] };
  for (const [id, name] of Object.entries(NAMES)) {
    const [cur, total] = steps[id];
    assert.ok(Buffer.byteLength(name) <= 256, `${id}: the server takes names of up to 256 bytes`);
    await server.create({ id, name, total_steps: total, current_step: cur, status: 'running' });
  }
  await server.patch('long-name', { message: 'M'.repeat(4096) });
  await server.patch('arabic', { message: 'خطأ'.repeat(600) });
  await server.patch('cjk', { status: 'completed', message: '完成'.repeat(600) });
});

after(async () => {
  await context?.close();
  await server?.stop();
});

/* Everything the checks need, measured in the page at once. */
function measure(page) {
  return page.evaluate(() => {
    const de = document.documentElement;
    const r = (el) => el.getBoundingClientRect();
    const header = r(document.querySelector('.top'));
    const detailEl = document.querySelector('[data-testid="detail"]');
    const rows = [...document.querySelectorAll('[data-testid="workflow-row"]')].map((li) => {
      const q = (s) => li.querySelector(s);
      const row = r(li), badge = r(q('[data-testid="wf-status"]')), time = r(q('[data-testid="wf-updated"]'));
      const bar = r(q('[data-testid="wf-bar"]')), fill = r(q('.fill'));
      const main = q('.wf-main');
      return {
        id: li.dataset.id, row: { top: row.top, bottom: row.bottom, left: row.left, right: row.right },
        badge: { left: badge.left, right: badge.right, width: badge.width, cut: q('[data-testid="wf-status"]').scrollWidth > Math.ceil(badge.width) },
        time: { left: time.left, right: time.right, width: time.width, text: q('[data-testid="wf-updated"]').textContent },
        scale: bar.width ? (fill.right - bar.left) / bar.width : -1,
        want: Number(q('[data-testid="wf-bar"]').getAttribute('aria-valuenow')) / Number(q('[data-testid="wf-bar"]').getAttribute('aria-valuemax')),
        overflow: main.scrollWidth - main.clientWidth,
      };
    });
    const d = detailEl.hidden ? null : r(detailEl);
    return {
      scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, bodyScroll: document.body.scrollWidth,
      header: { bottom: header.bottom }, rows,
      detail: d && { top: d.top, bottom: d.bottom, left: d.left, right: d.right, overflow: detailEl.scrollWidth - detailEl.clientWidth },
    };
  });
}

function check(m, label) {
  assert.ok(m.scrollWidth <= m.clientWidth, `${label}: page scrollWidth ${m.scrollWidth} > clientWidth ${m.clientWidth}`);
  assert.ok(m.bodyScroll <= m.clientWidth, `${label}: body scrollWidth ${m.bodyScroll} > ${m.clientWidth}`);
  const onScreen = m.rows.filter((x) => x.row.bottom > m.header.bottom && x.row.top < 10000);
  assert.ok(onScreen.length > 0, `${label}: rows on screen`);
  for (const x of onScreen) {
    const where = `${label}, row ${x.id}`;
    assert.ok(x.overflow <= 0, `${where}: content ${x.overflow}px wider than the row`);
    for (const part of ['badge', 'time']) {
      const b = x[part];
      assert.ok(b.width > 20, `${where}: ${part} has no room (${b.width}px)`);
      assert.ok(b.left >= x.row.left && b.right <= x.row.right + 0.5, `${where}: ${part} outside its row`);
      assert.ok(b.right <= m.clientWidth, `${where}: ${part} off screen (${b.right} > ${m.clientWidth})`);
    }
    assert.ok(!x.badge.cut, `${where}: badge text cut`);
    assert.ok(Math.abs(x.scale - x.want) < 0.02, `${where}: bar at ${x.scale.toFixed(3)}, want ${x.want.toFixed(3)}`);
  }
  if (m.detail) {
    assert.ok(m.detail.overflow <= 0, `${label}: detail panel content ${m.detail.overflow}px too wide`);
    assert.ok(m.detail.right <= m.clientWidth, `${label}: detail panel off screen`);
    assert.ok(m.detail.top >= m.header.bottom - 0.5 || m.detail.bottom <= m.header.top,
      `${label}: detail panel top ${m.detail.top} under the header (bottom ${m.header.bottom})`);
    for (const x of m.rows) {
      const apart = x.row.right <= m.detail.left || x.row.left >= m.detail.right ||
        x.row.bottom <= m.detail.top || x.row.top >= m.detail.bottom;
      assert.ok(apart, `${label}: detail panel overlaps row ${x.id}`);
    }
  }
}

/* Waits out the bars' slides. */
const settle = (page) => page.evaluate(() => Promise.all(document.getAnimations().map((a) => a.finished.catch(() => {})))).then(() => sleep(100));

for (const [w, h] of [[1400, 900], [390, 844]]) {
  test(`${w}×${h}: long names, a 4 KB message without spaces and any script fit`, async () => {
    const page = await openPage(context);
    await page.setViewportSize({ width: w, height: h });
    await page.goto(server.url + '/', { waitUntil: 'load' });
    await waitConn(page, 'live', 'websocket');
    await waitRow(page, 'long-name', { steps: '3 / 10' });
    await page.waitForFunction((n) => document.querySelector('[data-testid="summary"]').textContent.startsWith(`${n} workflows`),
      PLAIN + Object.keys(NAMES).length);
    await settle(page);
    check(await measure(page), `${w}×${h} list`);

    // The detail of the longest one, then scrolled down: still below the
    // header, still beside (desktop) or above (phone) the list.
    await page.locator('[data-testid="workflow-row"][data-id="long-name"] .wf-main').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-item"]').length === 2);
    await settle(page);
    check(await measure(page), `${w}×${h} detail`);
    for (const y of [300, 1200, 100000]) {
      await page.evaluate((y) => window.scrollTo(0, y), y);
      await sleep(150);
      await settle(page);
      check(await measure(page), `${w}×${h} detail, scrolled to ${y}`);
    }
    // Every script's detail.
    for (const id of Object.keys(NAMES)) {
      await page.evaluate((id) => { location.hash = `#w=${encodeURIComponent(id)}`; }, id);
      await page.waitForFunction((id) => document.querySelector('[data-testid="detail-id"]').textContent === id, id);
      await settle(page);
      check(await measure(page), `${w}×${h} detail of ${id}`);
    }
    assert.deepEqual(page.errors, []);
    await page.close();
  });
}
