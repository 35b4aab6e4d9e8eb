/* list.js: the dashboard's workflow list, windowed: only the rows on screen
 * (plus a few either side) exist in the DOM, each absolutely placed at its
 * index times the row pitch inside a list as tall as all of them, so 1,000
 * workflows cost what 20 do. Rows are keyed by workflow id; a row that
 * leaves the window is removed, one that enters is built fresh (its bar
 * then starts at its value instead of sliding from another workflow's).
 * Writes only: the one layout read (the list's position) happens once per
 * frame, and only after a scroll, a resize or a change of the rows' order. */

const OVERSCAN = 6; /* rows kept beyond each edge of the viewport */

export function percent(w) {
  if (!w.total_steps) return w.status === 'completed' ? 100 : 0;
  return Math.min(100, Math.floor((100 * w.current_step) / w.total_steps));
}

export function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/* Sets a text only when it changed: an unchanged write still dirties layout. */
function text(el, s) {
  if (el.textContent !== s) el.textContent = s;
}

export function paintBar(bar, w) {
  const p = percent(w);
  bar.setAttribute('aria-valuemax', String(w.total_steps));
  bar.setAttribute('aria-valuenow', String(w.current_step));
  bar.setAttribute('aria-label', `${p}%`);
  const slide = `translateX(${p - 100}%)`;
  if (bar.firstElementChild.style.transform !== slide) bar.firstElementChild.style.transform = slide;
}

export class WindowedList {
  /* ul: the list element; onOpen(id): a row was clicked. */
  constructor(ul, onOpen) {
    this.ul = ul;
    this.onOpen = onOpen;
    this.items = [];          /* the workflows shown, in order */
    this.index = new Map();   /* id -> position in items */
    this.rows = new Map();    /* id -> <li> in the DOM */
    this.pitch = 0;           /* px from one row's top to the next's */
    this.measure = true;      /* the window must be computed again */
    this.first = 0;
    this.last = 0;
  }

  /* A new order or membership (filter, search, a workflow created, deleted). */
  setItems(items) {
    this.items = items;
    this.index = new Map(items.map((w, i) => [w.id, i]));
    this.ul.style.height = `${items.length * this.rowPitch()}px`;
    this.ul.setAttribute('aria-rowcount', String(items.length));
    this.measure = true;
  }

  rowPitch() {
    if (!this.pitch) {
      const cs = getComputedStyle(this.ul);
      this.pitch = parseFloat(cs.getPropertyValue('--row-h')) + parseFloat(cs.getPropertyValue('--row-gap'));
    }
    return this.pitch;
  }

  /* After a resize: the pitch may follow a media query. */
  resized() {
    this.pitch = 0;
    this.setItems(this.items);
  }

  /* Builds, places and drops rows for the current scroll position, then
   * repaints the rows of `dirty` ids that are on screen. `stale` marks the
   * rows while the connection is down. */
  render(dirty) {
    if (this.measure) {
      this.measure = false;
      const pitch = this.rowPitch();
      const top = this.ul.getBoundingClientRect().top;
      const first = Math.max(0, Math.floor(-top / pitch) - OVERSCAN);
      const last = Math.min(this.items.length, Math.ceil((innerHeight - top) / pitch) + OVERSCAN);
      this.first = first;
      this.last = Math.max(first, last);
      const keep = new Set();
      for (let i = this.first; i < this.last; i++) keep.add(this.items[i].id);
      for (const [id, li] of this.rows) {
        if (!keep.has(id)) {
          li.remove();
          this.rows.delete(id);
        }
      }
      for (let i = this.first; i < this.last; i++) {
        const w = this.items[i];
        let li = this.rows.get(w.id);
        if (!li) {
          li = this.makeRow(w.id);
          this.paintRow(li, w);
          this.rows.set(w.id, li);
          this.ul.append(li);
        }
        const y = `translateY(${i * pitch}px)`;
        if (li.style.transform !== y) li.style.transform = y;
        li.setAttribute('aria-posinset', String(i + 1));
      }
    }
    for (const id of dirty) {
      const li = this.rows.get(id);
      const i = this.index.get(id);
      if (li && i != null) this.paintRow(li, this.items[i]);
    }
  }

  /* Relative times of the rows on screen (once a second). */
  tick() {
    for (const li of this.rows.values()) text(li.els.updated, ago(li.els.updated.dateTime));
  }

  makeRow(id) {
    const li = document.createElement('li');
    li.className = 'wf';
    li.dataset.testid = 'workflow-row';
    li.dataset.id = id;
    li.innerHTML = `
      <button class="wf-main" type="button">
        <span class="wf-title"><span class="wf-name" data-testid="wf-name" dir="auto"></span><code class="wf-id"></code></span>
        <span class="badge" data-testid="wf-status"></span>
        <time class="wf-updated" data-testid="wf-updated"></time>
        <span class="bar" data-testid="wf-bar" role="progressbar" aria-valuemin="0"><span class="fill"></span></span>
        <span class="wf-steps" data-testid="wf-steps"></span>
        <span class="wf-percent" data-testid="wf-percent"></span>
        <span class="wf-message" data-testid="wf-message" dir="auto"></span>
      </button>`;
    const q = (s) => li.querySelector(s);
    li.els = {
      name: q('.wf-name'), badge: q('.badge'), updated: q('.wf-updated'), bar: q('.bar'),
      steps: q('.wf-steps'), percent: q('.wf-percent'), message: q('.wf-message'),
    };
    q('.wf-id').textContent = id;
    q('.wf-main').addEventListener('click', () => this.onOpen(id));
    return li;
  }

  paintRow(li, w) {
    const e = li.els;
    /* A row that changes more than once a second (a busy producer) jumps
     * instead of sliding: its slides would never end, and each running one
     * costs a style pass per frame. */
    const now = performance.now();
    li.classList.toggle('hot', now - (li.painted ?? -Infinity) < 1000);
    li.painted = now;
    if (li.dataset.status !== w.status) li.dataset.status = w.status;
    li.dataset.seq = String(w.seq);
    const name = w.name ?? w.id;
    text(e.name, name);
    if (e.name.title !== name) e.name.title = name;
    text(e.badge, w.forbidden ? 'forbidden (403)' : w.status);
    e.badge.dataset.status = w.forbidden ? 'forbidden' : w.status;
    e.badge.title = w.forbidden ? 'The token may not read this workflow any more: no live updates' : '';
    li.toggleAttribute('data-forbidden', !!w.forbidden);
    paintBar(e.bar, w);
    text(e.steps, `${w.current_step} / ${w.total_steps}`);
    text(e.percent, `${percent(w)}%`);
    const msg = w.message || '';
    text(e.message, msg);
    if (e.message.title !== msg) e.message.title = msg;
    if (e.updated.dateTime !== w.updated_at) {
      e.updated.dateTime = w.updated_at;
      e.updated.title = new Date(w.updated_at).toLocaleString();
    }
    text(e.updated, ago(w.updated_at));
  }
}
