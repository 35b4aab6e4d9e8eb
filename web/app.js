/* app.js: the flowcast dashboard. Keeps a model of every workflow fed by
 * FlowcastClient (flowcast.js) and writes the DOM once per animation frame
 * for everything that changed since the last one. When the server wants a
 * token, the page asks for one (token.js) and shows its expiry and 403s.
 * URL options: ?status=S (filter), ?transports=sse,longpoll (limit the
 * transports tried, for testing fallbacks), #w=ID (open a workflow). */
import { FlowcastClient, ForbiddenError, TERMINAL } from './flowcast.js';
import { provideToken, startTokenUi } from './token.js';

const STATUSES = ['pending', 'running', 'paused', 'completed', 'failed', 'cancelled'];
const TRANSPORT_LABEL = { websocket: 'WebSocket', sse: 'SSE', longpoll: 'Long-poll' };
const HISTORY_MAX = 200;

const $ = (sel, root = document) => root.querySelector(sel);
const params = new URLSearchParams(location.search);

const model = new Map();   /* id -> {id, epoch, name, status, current_step, total_steps, message, seq, created_at, updated_at} */
const rows = new Map();    /* id -> <li> */
const dirty = new Set();   /* ids whose row must be redrawn */
let structural = true;     /* order, membership or counts changed */
let frame = 0;
let filter = STATUSES.includes(params.get('status')) ? params.get('status') : 'all';
let query = '';
let conn = { state: 'connecting' };
let detail = null;         /* {id, epoch, events: Map seq -> update, oldest, loading, deleted} */

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
  detail: $('[data-testid="detail"]'),
  toast: $('[data-testid="toast"]'),
};
$('.origin').textContent = location.origin;

const transports = params.get('transports')?.split(',').filter(Boolean);
const client = new FlowcastClient({ transports, onUpdate, onState, onError, token: provideToken });
window.flowcast = client; /* for the console and for tests */
startTokenUi(client);

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
  if (detail && detail.id === id) detail.forbidden = true;
  schedule();
}

/* --- model ----------------------------------------------------------------- */

/* Another epoch is another workflow under the same id (deleted and created
 * again): its row, name and history start afresh, never continue the old. */
function newIncarnation(id, epoch) {
  if (model.delete(id)) structural = true;
  if (detail && detail.id === id) {
    Object.assign(detail, { epoch, events: new Map(), oldest: null, deleted: false });
    $('.history', els.detail).replaceChildren();
  }
}

function onUpdate(u, meta) {
  const id = u.workflow_id;
  if (u.deleted) {
    if (model.delete(id)) structural = true;
    if (detail && detail.id === id) detail.deleted = true;
    schedule();
    return;
  }
  let w = model.get(id);
  const old = w ? w.epoch : detail?.id === id ? detail.epoch : null;
  if (u.epoch != null && old != null && u.epoch !== old) {
    newIncarnation(id, u.epoch);
    w = null;
  }
  if (!w) {
    const full = meta.workflow;
    w = { id, name: full?.name ?? null, created_at: full?.created_at ?? (u.seq === 1 ? u.timestamp : null) };
    model.set(id, w);
    structural = true;
    if (!w.name || !w.created_at) fetchDetails(id);
  }
  if (w.status !== u.status) structural = true;
  w.status = u.status;
  w.epoch = u.epoch ?? w.epoch ?? null;
  w.current_step = u.current_step;
  w.total_steps = u.total_steps;
  w.message = u.message;
  w.seq = u.seq;
  w.updated_at = u.timestamp;
  w.bumped = true;
  dirty.add(id);
  if (detail && detail.id === id) {
    detail.epoch ??= w.epoch;
    detail.deleted = false;
    if (u.epoch == null || u.epoch === detail.epoch) detail.events.set(u.seq, u);
  }
  schedule();
}

/* Updates carry no name: fetch it once for workflows first seen on a stream. */
const fetching = new Set();
async function fetchDetails(id) {
  if (fetching.has(id)) return;
  fetching.add(id);
  try {
    const full = await client.get(id);
    const w = model.get(id);
    if (w && (full.epoch == null || w.epoch == null || full.epoch === w.epoch)) {
      w.name = full.name;
      w.created_at = full.created_at;
      dirty.add(id);
      structural = true;
      schedule();
    }
  } catch (e) {
    if (e instanceof ForbiddenError) markForbidden(id);
    else if (e.status !== 404) console.warn('flowcast: cannot fetch', id, e.message);
  } finally {
    fetching.delete(id);
  }
}

function percent(w) {
  if (!w.total_steps) return w.status === 'completed' ? 100 : 0;
  return Math.floor((100 * w.current_step) / w.total_steps);
}

function matches(w) {
  if (filter !== 'all' && w.status !== filter) return false;
  if (!query) return true;
  return w.id.toLowerCase().includes(query) || (w.name || '').toLowerCase().includes(query);
}

/* Newest first (created_at, then id, which is time-sortable when generated). */
function ordered() {
  return [...model.values()].sort((a, b) => {
    const ca = a.created_at || a.updated_at || '', cb = b.created_at || b.updated_at || '';
    if (ca !== cb) return ca < cb ? 1 : -1;
    return a.id < b.id ? 1 : -1;
  });
}

/* --- rendering ------------------------------------------------------------- */

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  if (structural) {
    structural = false;
    renderList();
    renderFilters();
  }
  for (const id of dirty) {
    const li = rows.get(id);
    const w = model.get(id);
    if (li && w) renderRow(li, w);
  }
  dirty.clear();
  if (detail) renderDetail();
}

function renderList() {
  const all = ordered();
  const visible = all.filter(matches);
  for (const [id, li] of rows) {
    if (!model.has(id)) {
      li.remove();
      rows.delete(id);
    }
  }
  let prev = null;
  for (const w of visible) {
    let li = rows.get(w.id);
    if (!li) {
      li = makeRow(w.id);
      rows.set(w.id, li);
      dirty.add(w.id);
    }
    const want = prev ? prev.nextSibling : els.list.firstChild;
    if (li !== want) els.list.insertBefore(li, want);
    li.hidden = false;
    prev = li;
  }
  const shown = new Set(visible.map((w) => w.id));
  for (const [id, li] of rows) if (!shown.has(id)) li.hidden = true;
  els.empty.hidden = model.size !== 0;
  els.emptyFilter.hidden = model.size === 0 || visible.length !== 0;
  const running = all.filter((w) => w.status === 'running').length;
  els.summary.textContent = model.size
    ? `${model.size} workflow${model.size === 1 ? '' : 's'} · ${running} running`
    : '';
}

function makeRow(id) {
  const li = document.createElement('li');
  li.className = 'wf';
  li.dataset.testid = 'workflow-row';
  li.dataset.id = id;
  li.innerHTML = `
    <button class="wf-main" type="button">
      <div class="wf-head">
        <span class="wf-name" data-testid="wf-name"></span>
        <code class="wf-id"></code>
        <span class="badge" data-testid="wf-status"></span>
      </div>
      <div class="bar" data-testid="wf-bar" role="progressbar" aria-valuemin="0"><div class="fill"></div></div>
      <div class="wf-foot">
        <span class="wf-steps" data-testid="wf-steps"></span>
        <span class="wf-percent" data-testid="wf-percent"></span>
        <span class="wf-message" data-testid="wf-message"></span>
        <time class="wf-updated" data-testid="wf-updated"></time>
      </div>
    </button>`;
  $('.wf-id', li).textContent = id;
  $('.wf-main', li).addEventListener('click', () => openDetail(id));
  return li;
}

function paintBar(bar, w) {
  const p = percent(w);
  bar.setAttribute('aria-valuemax', String(w.total_steps));
  bar.setAttribute('aria-valuenow', String(w.current_step));
  bar.setAttribute('aria-label', `${p}%`);
  bar.firstElementChild.style.width = `${p}%`;
}

function renderRow(li, w) {
  li.dataset.status = w.status;
  li.dataset.seq = String(w.seq);
  $('.wf-name', li).textContent = w.name ?? w.id;
  const badge = $('.badge', li);
  badge.textContent = w.forbidden ? 'forbidden (403)' : w.status;
  badge.dataset.status = w.forbidden ? 'forbidden' : w.status;
  badge.title = w.forbidden ? 'The token may not read this workflow any more: no live updates' : '';
  li.toggleAttribute('data-forbidden', !!w.forbidden);
  paintBar($('.bar', li), w);
  $('.wf-steps', li).textContent = `${w.current_step} / ${w.total_steps}`;
  $('.wf-percent', li).textContent = `${percent(w)}%`;
  const msg = $('.wf-message', li);
  msg.textContent = w.message || '';
  msg.title = w.message || '';
  const t = $('.wf-updated', li);
  t.dateTime = w.updated_at;
  t.title = new Date(w.updated_at).toLocaleString();
  t.textContent = ago(w.updated_at);
  if (w.bumped) {
    w.bumped = false;
    li.classList.remove('bump');
    void li.offsetWidth; /* restart the highlight animation */
    li.classList.add('bump');
  }
}

function renderFilters() {
  const counts = { all: model.size };
  for (const s of STATUSES) counts[s] = 0;
  for (const w of model.values()) counts[w.status] = (counts[w.status] || 0) + 1;
  if (!els.filters.childElementCount) {
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
  for (const b of els.filters.children) {
    const s = b.dataset.status;
    $('.chip-count', b).textContent = String(counts[s]);
    b.setAttribute('aria-selected', String(s === filter));
    b.classList.toggle('active', s === filter);
  }
}

function setFilter(s) {
  filter = s;
  const u = new URL(location.href);
  if (s === 'all') u.searchParams.delete('status');
  else u.searchParams.set('status', s);
  history.replaceState(null, '', u);
  structural = true;
  schedule();
}

els.search.addEventListener('input', () => {
  query = els.search.value.trim().toLowerCase();
  structural = true;
  schedule();
});

/* --- detail view ----------------------------------------------------------- */

async function openDetail(id) {
  if (location.hash !== `#w=${encodeURIComponent(id)}`) history.replaceState(null, '', `#w=${encodeURIComponent(id)}`);
  detail = { id, epoch: model.get(id)?.epoch ?? null, events: new Map(), oldest: null, loading: true, deleted: false };
  els.detail.hidden = false;
  document.body.classList.add('has-detail');
  $('.history', els.detail).replaceChildren();
  schedule();
  const d = detail;
  try {
    const w = model.get(id) || (await client.get(id));
    const since = Math.max(0, w.seq - HISTORY_MAX);
    const h = await client.history(id, { since, epoch: w.epoch, limit: HISTORY_MAX });
    if (detail !== d) return;
    d.epoch ??= h.epoch ?? w.epoch ?? null;
    /* A history of another incarnation (re-created meanwhile) is not this one's. */
    if (h.epoch == null || h.epoch === d.epoch) {
      for (const e of h.events) d.events.set(e.seq, e);
      d.oldest = h.oldest_seq;
    }
  } catch (e) {
    if (detail !== d) return;
    if (e.status === 404) d.deleted = true;
    else if (e instanceof ForbiddenError) d.forbidden = true;
    else d.error = e.message;
  }
  d.loading = false;
  schedule();
}

function closeDetail() {
  detail = null;
  els.detail.hidden = true;
  document.body.classList.remove('has-detail');
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}

function renderDetail() {
  const d = detail;
  const w = model.get(d.id);
  const root = els.detail;
  $('[data-testid="detail-name"]', root).textContent = w?.name ?? d.id;
  $('[data-testid="detail-id"]', root).textContent = d.id;
  const badge = $('[data-testid="detail-status"]', root);
  const st = d.forbidden ? 'forbidden' : d.deleted ? 'deleted' : w?.status ?? '';
  badge.textContent = d.forbidden ? 'forbidden (403)' : st;
  badge.dataset.status = st;
  root.dataset.status = st;
  if (w) {
    $('[data-testid="detail-steps"]', root).textContent = `step ${w.current_step} of ${w.total_steps} · ${percent(w)}%`;
    paintBar($('.bar', root), w);
    $('[data-testid="detail-message"]', root).textContent = w.message || '';
    $('[data-testid="detail-created"]', root).textContent = w.created_at ? new Date(w.created_at).toLocaleString() : '—';
    $('[data-testid="detail-updated"]', root).textContent = new Date(w.updated_at).toLocaleString();
    $('[data-testid="detail-seq"]', root).textContent = String(w.seq);
  }
  const note = $('[data-testid="history-note"]', root);
  note.textContent = d.loading ? 'loading…' : d.forbidden ? '(403 forbidden: this token may not read this workflow)'
    : d.error ? `(${d.error})` : d.oldest > 1 ? `(log starts at seq ${d.oldest})` : '';
  const ol = $('.history', root);
  const have = new Set([...ol.children].map((li) => Number(li.dataset.seq)));
  const seqs = [...d.events.keys()].filter((s) => !have.has(s)).sort((a, b) => a - b);
  for (const seq of seqs) {
    const e = d.events.get(seq);
    const li = document.createElement('li');
    li.dataset.testid = 'history-item';
    li.dataset.seq = String(seq);
    li.dataset.status = e.status;
    li.innerHTML = `<span class="h-seq"></span><span class="badge"></span><span class="h-steps"></span><span class="h-msg"></span><time class="h-time"></time>`;
    $('.h-seq', li).textContent = `#${seq}`;
    $('.badge', li).textContent = e.status;
    $('.badge', li).dataset.status = e.status;
    $('.h-steps', li).textContent = `${e.current_step} / ${e.total_steps}`;
    $('.h-msg', li).textContent = (e.resync ? '(resync) ' : '') + (e.message || '');
    const t = $('.h-time', li);
    t.dateTime = e.timestamp;
    t.textContent = new Date(e.timestamp).toLocaleTimeString();
    t.title = new Date(e.timestamp).toLocaleString();
    /* newest first: insert before the first item with a lower seq */
    const after = [...ol.children].find((x) => Number(x.dataset.seq) < seq);
    ol.insertBefore(li, after || null);
  }
}

$('[data-testid="detail-close"]').addEventListener('click', closeDetail);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && detail) closeDetail();
});

function openFromHash() {
  const m = /^#w=(.+)$/.exec(location.hash);
  if (m) openDetail(decodeURIComponent(m[1]));
  else if (detail) closeDetail();
}
window.addEventListener('hashchange', openFromHash);

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
}

function secondsLeft(s) {
  return Math.max(0, Math.ceil(((s.retryAt || 0) - Date.now()) / 1000));
}

let toastTimer = 0;
function toast(text) {
  els.toast.textContent = text;
  els.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (els.toast.hidden = true), 2500);
}

window.addEventListener('online', () => client.retryNow());
window.addEventListener('offline', paintConn);

/* --- relative times ------------------------------------------------------------ */

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

setInterval(() => {
  for (const t of els.list.querySelectorAll('li:not([hidden]) time')) t.textContent = ago(t.dateTime);
  if (conn.state === 'reconnecting' && !conn.trying) paintConn();
}, 1000);

/* --- start ------------------------------------------------------------------- */

renderFilters();
schedule();
client.subscribeAll();
openFromHash();
export { client, model, TERMINAL };
