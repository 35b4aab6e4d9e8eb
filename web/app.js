/* app.js: the flowcast dashboard. Keeps a model of every workflow fed by
 * FlowcastClient (flowcast.js) and writes the DOM once per animation frame
 * for what changed since the last one: the windowed list (list.js) and the
 * detail panel (detail.js). When the server wants a token, the page asks
 * for one (token.js) and shows its expiry and 403s; while the server cannot
 * be reached, retries are one health probe each (conn.js).
 * URL options: ?status=S (filter), ?transports=sse,longpoll (limit the
 * transports tried, for testing fallbacks), #w=ID (open a workflow). */
import { FlowcastClient, ForbiddenError, TERMINAL } from './flowcast.js';
import { provideToken, startTokenUi } from './token.js';
import { WindowedList } from './list.js';
import { Detail } from './detail.js';
import { ConnectionGate } from './conn.js';

const STATUSES = ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled'];
const TRANSPORT_LABEL = { websocket: 'WebSocket', sse: 'SSE', longpoll: 'Long-poll' };

const $ = (sel, root = document) => root.querySelector(sel);
const params = new URLSearchParams(location.search);

/* id -> {id, epoch, name, hay, status, current_step, total_steps, message, seq, created_at, updated_at} */
const model = new Map();
let order = [];            /* every workflow, newest first */
const dirty = new Set();   /* ids whose row must be redrawn */
let membership = true;     /* a workflow came or went: sort again */
let view = true;           /* the filtered list must be computed again */
let counts = true;         /* the filter chips' counts changed */
let frame = 0;
let filter = STATUSES.includes(params.get('status')) ? params.get('status') : 'all';
let query = '';
let conn = { state: 'connecting' };

const els = {
  list: $('[data-testid="workflow-list"]'),
  empty: $('[data-testid="empty"]'),
  emptyFilter: $('[data-testid="empty-filter"]'),
  filters: $('[data-testid="filters"]'),
  search: $('[data-testid="search"]'),
  summary: $('[data-testid="summary"]'),
  conn: $('[data-testid="conn"]'),
  connText: $('[data-testid="conn-text"]'),
  transport: $('[data-testid="transport"]'),
  retry: $('[data-testid="retry-now"]'),
  detail: $('[data-testid="detail"]'),
  toast: $('[data-testid="toast"]'),
  top: $('.top'),
};
$('.origin').textContent = location.origin;

const transports = params.get('transports')?.split(',').filter(Boolean);
const client = new FlowcastClient({ transports, onUpdate, onState: (s) => gate.onState(s), onError, token: provideToken });
const gate = new ConnectionGate(client, onState);
window.flowcast = client; /* for the console and for tests */
startTokenUi(client);
const list = new WindowedList(els.list, (id) => openDetail(id));
const detail = new Detail(els.detail, client, model);

/* A 403 about one workflow (the token's scope no longer covers it) marks its
 * row; other problems go to the console. */
function onError(e) {
  if (e instanceof ForbiddenError && e.workflowId) return markForbidden(e.workflowId);
  console.warn('flowcast:', e.message);
}

function markForbidden(id) {
  const w = model.get(id);
  if (w && !w.forbidden) {
    w.forbidden = true;
    dirty.add(id);
  }
  if (detail.id === id) detail.d.forbidden = true;
  schedule();
}

/* --- model ----------------------------------------------------------------- */

function remove(id) {
  const w = model.get(id);
  if (!w) return;
  model.delete(id);
  membership = view = counts = true;
}

function setName(w, name) {
  w.name = name;
  w.hay = `${w.id}\n${name ?? ''}`.toLowerCase();
}

function onUpdate(u, meta) {
  const id = u.workflow_id;
  if (u.deleted) {
    remove(id);
    if (detail.id === id) detail.d.deleted = true;
    schedule();
    return;
  }
  let w = model.get(id);
  const old = w ? w.epoch : detail.id === id ? detail.d.epoch : null;
  /* Another epoch is another workflow under the same id (deleted and created
   * again): its row, name and history start afresh, never continue the old. */
  if (u.epoch != null && old != null && u.epoch !== old) {
    remove(id);
    if (detail.id === id) detail.reincarnated(u.epoch);
    w = null;
  }
  if (!w) {
    const full = meta.workflow;
    w = { id, created_at: full?.created_at ?? (u.seq === 1 ? u.timestamp : null) };
    setName(w, u.name ?? full?.name ?? null);
    model.set(id, w);
    membership = view = counts = true;
    if (!w.name || !w.created_at) missing.add(id);
  } else if (u.name != null && u.name !== w.name) {
    setName(w, u.name);
    if (query) view = true;
  }
  if (w.status !== u.status) {
    counts = true;
    if (filter !== 'all') view = true;
  }
  w.status = u.status;
  w.epoch = u.epoch ?? w.epoch ?? null;
  w.current_step = u.current_step;
  w.total_steps = u.total_steps;
  w.message = u.message;
  w.seq = u.seq;
  w.updated_at = u.timestamp;
  dirty.add(id);
  if (detail.id === id) detail.update(u, w);
  schedule();
}

/* Workflows first seen on a stream in the middle of their life (the stream
 * beat the list read at connect) have no created_at, and updates from a
 * server older than the `name` field no name: one list read fills in all of
 * them, instead of a GET per workflow. */
const missing = new Set();
let filling = null;
let fillTimer = 0;
async function fillMissing() {
  if (filling || !missing.size) return;
  const ids = new Set(missing);
  missing.clear();
  filling = client.listAll().then(({ workflows }) => {
    for (const full of workflows) {
      const w = model.get(full.id);
      if (!ids.has(full.id) || !w || (full.epoch != null && w.epoch != null && full.epoch !== w.epoch)) continue;
      if (!w.name) setName(w, full.name);
      w.created_at ??= full.created_at;
      dirty.add(full.id);
    }
    membership = view = true;
    schedule();
  }, (e) => {
    if (e instanceof ForbiddenError) return;
    for (const id of ids) missing.add(id); /* read again after the next update */
    if (e.status != null) console.warn('flowcast: cannot list workflows:', e.message);
  }).finally(() => (filling = null));
}

function matches(w) {
  if (filter !== 'all' && w.status !== filter) return false;
  return !query || w.hay.includes(query);
}

/* Newest first (created_at, then id, which is time-sortable when generated). */
function sortKey(w) {
  return w.created_at || w.updated_at || '';
}
function byNewest(a, b) {
  const ca = sortKey(a), cb = sortKey(b);
  if (ca !== cb) return ca < cb ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/* --- rendering ------------------------------------------------------------- */

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  if (membership) {
    membership = false;
    order = [...model.values()].sort(byNewest);
  }
  if (view) {
    view = false;
    const visible = order.filter(matches);
    list.setItems(visible);
    els.empty.hidden = model.size !== 0;
    els.emptyFilter.hidden = model.size === 0 || visible.length !== 0;
  }
  if (counts) {
    counts = false;
    renderCounts();
  }
  list.render(dirty);
  dirty.clear();
  if (detail.id) detail.render();
  if (missing.size && !fillTimer) {
    fillTimer = setTimeout(() => {
      fillTimer = 0;
      fillMissing();
    }, 300);
  }
}

function renderCounts() {
  const n = { all: model.size };
  for (const s of STATUSES) n[s] = 0;
  for (const w of model.values()) n[w.status] = (n[w.status] || 0) + 1;
  for (const b of els.filters.children) {
    const s = b.dataset.status;
    const c = $('.chip-count', b);
    if (c.textContent !== String(n[s])) c.textContent = String(n[s]);
    b.setAttribute('aria-selected', String(s === filter));
    b.classList.toggle('active', s === filter);
  }
  const summary = model.size ? `${model.size} workflow${model.size === 1 ? '' : 's'} · ${n.running} running` : '';
  if (els.summary.textContent !== summary) els.summary.textContent = summary;
}

function makeFilters() {
  for (const s of ['all', ...STATUSES]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'chip';
    b.dataset.testid = `filter-${s}`;
    b.dataset.status = s;
    b.setAttribute('role', 'tab');
    b.innerHTML = `<span class="chip-dot"></span><span class="chip-label"></span><span class="chip-count"></span>`;
    $('.chip-label', b).textContent = s === 'all' ? 'All' : s[0].toUpperCase() + s.slice(1);
    b.addEventListener('click', () => setFilter(s));
    els.filters.append(b);
  }
}

function setFilter(s) {
  filter = s;
  const u = new URL(location.href);
  if (s === 'all') u.searchParams.delete('status');
  else u.searchParams.set('status', s);
  history.replaceState(null, '', u);
  view = counts = true;
  schedule();
}

els.search.addEventListener('input', () => {
  query = els.search.value.trim().toLowerCase();
  view = true;
  schedule();
});

/* The window follows the scroll position and the viewport's size. */
addEventListener('scroll', () => {
  list.measure = true;
  schedule();
}, { passive: true });
addEventListener('resize', () => {
  list.resized();
  schedule();
});
/* The header's height (it wraps on a phone, grows with the token chip)
 * keeps the detail panel below it. */
new ResizeObserver(([e]) => {
  document.documentElement.style.setProperty('--header-h', `${Math.ceil(e.borderBoxSize[0].blockSize)}px`);
  list.measure = true;
  schedule();
}).observe(els.top);

/* --- detail view ----------------------------------------------------------- */

function openDetail(id) {
  if (location.hash !== `#w=${encodeURIComponent(id)}`) history.replaceState(null, '', `#w=${encodeURIComponent(id)}`);
  detail.open(id).then(schedule);
  list.measure = true; /* on a phone the panel sits above the list and moves it */
  schedule();
  /* On a phone the panel is above the list: bring it into view. */
  if (matchMedia('(max-width: 860px)').matches) requestAnimationFrame(() => els.detail.scrollIntoView({ block: 'start' }));
}

function closeDetail() {
  detail.close();
  list.measure = true;
  schedule();
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}

$('[data-testid="detail-close"]').addEventListener('click', closeDetail);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && detail.id) closeDetail();
});

function openFromHash() {
  const m = /^#w=(.+)$/.exec(location.hash);
  if (m) openDetail(decodeURIComponent(m[1]));
  else if (detail.id) closeDetail();
}
addEventListener('hashchange', openFromHash);

/* --- connection indicator ---------------------------------------------------- */

function onState(s) {
  const was = conn.state;
  conn = s;
  paintConn();
  if (s.state === 'open' && was === 'reconnecting') toast(`Reconnected · ${TRANSPORT_LABEL[s.transport]}`);
}

function paintConn() {
  const s = conn;
  let state, text;
  if (s.state === 'open') {
    state = 'live';
    text = 'Live';
  } else if (s.waiting === 'token') {
    state = 'auth';
    text = s.error?.code === 'forbidden' ? 'Forbidden (403)' : s.error?.code === 'token_expired' ? 'Token expired' : 'Token needed';
  } else if (s.state === 'closed' || (s.state === 'reconnecting' && navigator.onLine === false)) {
    state = 'offline';
    text = s.state === 'closed' ? 'Offline' : `Offline · retrying in ${secondsLeft(s)} s`;
  } else if (s.state === 'reconnecting') {
    state = 'reconnecting';
    text = s.trying ? 'Reconnecting…' : `Reconnecting in ${secondsLeft(s)} s`;
  } else {
    state = 'connecting';
    text = 'Connecting…';
  }
  els.conn.dataset.state = state;
  els.connText.textContent = text;
  const t = s.state === 'open' ? s.transport : '';
  els.transport.dataset.transport = t;
  els.transport.textContent = TRANSPORT_LABEL[t] || '—';
  els.transport.title = t ? `Connected over ${TRANSPORT_LABEL[t]}` : 'Not connected';
  /* "Retry now" while a wait runs (not while an attempt or a token question does). */
  els.retry.hidden = !(s.state === 'reconnecting' && !s.trying && !s.waiting);
  /* What the rows show may be out of date: say so, and stop their motion. */
  document.body.classList.toggle('stale', state !== 'live' && state !== 'connecting');
}

function secondsLeft(s) {
  return Math.max(0, Math.ceil(((s.retryAt || 0) - Date.now()) / 1000));
}

els.retry.addEventListener('click', () => gate.retryNow());

let toastTimer = 0;
function toast(text) {
  els.toast.textContent = text;
  els.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (els.toast.hidden = true), 2500);
}

addEventListener('online', () => gate.retryNow());
addEventListener('offline', paintConn);

setInterval(() => {
  list.tick();
  if (conn.state === 'reconnecting' && !conn.trying) paintConn();
}, 1000);

/* --- start ------------------------------------------------------------------- */

makeFilters();
renderCounts();
schedule();
client.subscribeAll();
openFromHash();
export { client, model, TERMINAL };
