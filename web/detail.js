/* detail.js: the dashboard's detail panel: one workflow's state and its
 * change history, newest first. New entries are prepended without any
 * entrance animation (a fade restarted 5 times a second left the newest
 * entries half transparent), the newest one is marked by a static style,
 * and the list keeps at most HISTORY_MAX entries. */
import { ForbiddenError } from './flowcast.js';
import { paintBar, percent } from './list.js';

export const HISTORY_MAX = 200;

const $ = (sel, root = document) => root.querySelector(sel);

export class Detail {
  /* root: the <aside>; client: FlowcastClient; model: id -> workflow. */
  constructor(root, client, model) {
    this.root = root;
    this.client = client;
    this.model = model;
    this.ol = $('.history', root);
    this.d = null; /* {id, epoch, events: Map seq -> update, oldest, loading, deleted, forbidden, error} */
    this.shown = []; /* seqs in the list, newest first */
  }

  get id() { return this.d?.id ?? null; }

  /* Opens the panel on `id` and loads its recent history. */
  async open(id) {
    const w0 = this.model.get(id);
    const d = { id, epoch: w0?.epoch ?? null, events: new Map(), oldest: null, loading: true, deleted: false };
    this.d = d;
    this.clearHistory();
    this.root.hidden = false;
    document.body.classList.add('has-detail');
    try {
      const w = this.model.get(id) || (await this.client.get(id));
      const since = Math.max(0, w.seq - HISTORY_MAX);
      const h = await this.client.history(id, { since, epoch: w.epoch, limit: HISTORY_MAX });
      if (this.d !== d) return;
      d.epoch ??= h.epoch ?? w.epoch ?? null;
      /* A history of another incarnation (re-created meanwhile) is not this one's. */
      if (h.epoch == null || h.epoch === d.epoch) {
        for (const e of h.events) if (!d.events.has(e.seq)) d.events.set(e.seq, e);
        d.oldest = h.oldest_seq;
      }
    } catch (e) {
      if (this.d !== d) return;
      if (e.status === 404) d.deleted = true;
      else if (e instanceof ForbiddenError) d.forbidden = true;
      else d.error = e.message;
    }
    d.loading = false;
  }

  close() {
    this.d = null;
    this.root.hidden = true;
    document.body.classList.remove('has-detail');
  }

  clearHistory() {
    this.ol.replaceChildren();
    this.shown = [];
  }

  /* Another incarnation under the same id: its history starts afresh. */
  reincarnated(epoch) {
    Object.assign(this.d, { epoch, events: new Map(), oldest: null, deleted: false });
    this.clearHistory();
  }

  /* A live update of the open workflow (u may be of another epoch: ignored). */
  update(u, w) {
    const d = this.d;
    d.epoch ??= w?.epoch ?? null;
    d.deleted = false;
    if (u.epoch == null || u.epoch === d.epoch) d.events.set(u.seq, u);
  }

  render() {
    const d = this.d;
    const w = this.model.get(d.id);
    const root = this.root;
    const set = (tid, s) => {
      const el = $(`[data-testid="${tid}"]`, root);
      if (el.textContent !== s) el.textContent = s;
    };
    set('detail-name', w?.name ?? d.id);
    set('detail-id', d.id);
    const badge = $('[data-testid="detail-status"]', root);
    const st = d.forbidden ? 'forbidden' : d.deleted ? 'deleted' : w?.status ?? '';
    badge.textContent = d.forbidden ? 'forbidden (403)' : st;
    badge.dataset.status = st;
    root.dataset.status = st;
    if (w) {
      set('detail-steps', `step ${w.current_step} of ${w.total_steps} · ${percent(w)}%`);
      paintBar($('.bar', root), w);
      set('detail-message', w.message || '');
      set('detail-created', w.created_at ? new Date(w.created_at).toLocaleString() : '—');
      set('detail-updated', new Date(w.updated_at).toLocaleString());
      set('detail-seq', String(w.seq));
    }
    set('history-note', d.loading ? 'loading…' : d.forbidden ? '(403 forbidden: this token may not read this workflow)'
      : d.error ? `(${d.error})` : d.oldest > 1 ? `(log starts at seq ${d.oldest})` : '');
    this.renderHistory();
  }

  renderHistory() {
    const d = this.d;
    const have = new Set(this.shown);
    const fresh = [...d.events.keys()].filter((s) => !have.has(s)).sort((a, b) => b - a);
    if (!fresh.length) return;
    /* Usually all newer than what is shown: one prepend. Older ones (the
     * history answer landing after live updates) go in their place. */
    const top = this.shown.length ? this.shown[0] : -Infinity;
    const newer = fresh.filter((s) => s > top);
    if (newer.length) {
      this.ol.prepend(...newer.map((s) => this.item(d.events.get(s))));
      this.shown.unshift(...newer);
    }
    for (const seq of fresh.filter((s) => s <= top)) {
      const at = this.shown.findIndex((s) => s < seq);
      const li = this.item(d.events.get(seq));
      if (at < 0) {
        this.ol.append(li);
        this.shown.push(seq);
      } else {
        this.ol.insertBefore(li, this.ol.children[at]);
        this.shown.splice(at, 0, seq);
      }
    }
    while (this.shown.length > HISTORY_MAX) {
      d.events.delete(this.shown.pop());
      this.ol.lastElementChild.remove();
    }
    for (const li of this.ol.querySelectorAll('.newest')) li.classList.remove('newest');
    this.ol.firstElementChild?.classList.add('newest');
  }

  item(e) {
    const li = document.createElement('li');
    li.dataset.testid = 'history-item';
    li.dataset.seq = String(e.seq);
    li.dataset.status = e.status;
    li.innerHTML = `<span class="h-seq"></span><span class="badge"></span><span class="h-steps"></span><time class="h-time"></time><span class="h-msg" dir="auto"></span>`;
    $('.h-seq', li).textContent = `#${e.seq}`;
    $('.badge', li).textContent = e.status;
    $('.badge', li).dataset.status = e.status;
    $('.h-steps', li).textContent = `${e.current_step} / ${e.total_steps}`;
    const msg = (e.resync ? '(resync) ' : '') + (e.message || '');
    $('.h-msg', li).textContent = msg;
    $('.h-msg', li).title = msg;
    const t = $('.h-time', li);
    t.dateTime = e.timestamp;
    t.textContent = new Date(e.timestamp).toLocaleTimeString();
    t.title = new Date(e.timestamp).toLocaleString();
    return li;
  }
}
