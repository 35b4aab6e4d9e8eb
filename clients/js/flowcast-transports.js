/* flowcast-transports.js: the three transports of flowcast.js (imported by
 * it): WebSocket (/api/updates), Server-Sent Events (/api/events) and
 * long-poll, and the probe that checks whether a better one works again. */
import { AuthError, ForbiddenError, httpError, opError } from './flowcast-auth.js';

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

const SSE_MAX_IDS = 100; /* the server's limit per /api/events stream */
const WS_CONNECTING = 0; /* WebSocket readyState values (same in browsers, Node and ws) */
const WS_OPEN = 1;

/* One item of a /api/events cursor: "id:epoch:seq" ("id:seq" while the epoch is unknown). */
function sseItem(id, p) {
  return p.epoch != null ? `${id}:${p.epoch}:${p.seq}` : `${id}:${p.seq}`;
}

/* --- transports -------------------------------------------------------------
 * Each has start(), stop() and changed({added, removed, all}); it calls
 * hooks.open() once it works and hooks.fail(err, usedToken) once when it
 * cannot open or is lost (an AuthError or ForbiddenError when the token it
 * sent is the reason). The client ignores calls from a transport it has
 * stopped. */

/* The stream URL for path: ws(s) from the base URL's scheme, the token as
 * access_token when given. */
function streamUrl(client, path, params, token, ws = false) {
  const q = new URLSearchParams(params);
  if (token) q.set('access_token', token);
  const qs = q.toString();
  return (ws ? client.url.replace(/^http/, 'ws') : client.url) + path + (qs ? '?' + qs : '');
}

/* Why a stream that failed before it opened failed, as far as credentials
 * go: GET url (with the token `used` in the header when given) shows the
 * status that a WebSocket or EventSource hides. Resolves to an AuthError
 * (401) or a ForbiddenError (403), else null. The token function is not
 * asked here: the client does that, outside the transport's open timeout. */
async function credentialProblem(url, used, signal) {
  const ac = new AbortController();
  const stop = () => ac.abort();
  signal.addEventListener('abort', stop);
  try {
    const r = await fetch(url, { headers: used ? { Authorization: `Bearer ${used}` } : {}, signal: ac.signal, cache: 'no-store' });
    if (r.status !== 401 && r.status !== 403) return null;
    return httpError(r.status, await r.json().catch(() => null));
  } catch {
    return null;
  } finally {
    signal.removeEventListener('abort', stop);
    ac.abort(); /* an event stream that did open: not read further */
  }
}

/* WebSocket: one /api/updates connection. Each id is subscribed in its own
 * message (with `since` when known), so one deleted id cannot fail the
 * others; answers come back in order and are matched to what was sent.
 * Shortly before the token's exp the client's token function is asked for
 * a new one, sent as {"op":"auth"}: the stream goes on without a gap. */
class WebSocketTransport {
  constructor(client, hooks) {
    this.c = client;
    this.hooks = hooks;
    this.pending = [];
    this.ctl = new AbortController();
    this.refresh = null;
  }

  start() {
    this.token = this.c.auth.value ?? null;
    const inMessage = this.c.wsAuth === 'message' && this.token;
    const ws = (this.ws = new this.c.WebSocket(streamUrl(this.c, '/api/updates', {}, inMessage ? null : this.token, true)));
    ws.onopen = () => {
      this.up = true;
      if (inMessage) this._send({ op: 'auth', token: this.token }, { op: 'auth', first: true });
      const ids = [...this.c.followed()];
      ids.forEach((id) => this._sub(id));
      if (this.c.all) this._send({ op: 'subscribe_all' }, { op: 'all' });
      if (!this.pending.length) this._opened();
    };
    ws.onmessage = (ev) => this._message(ev.data);
    /* onclose follows an error, except in Node 20's WebSocket when the
     * connection is refused: there the error is the end */
    ws.onerror = () => {
      if (!this.up) this._onClose({ code: 1006, reason: '' });
    };
    ws.onclose = (ev) => this._onClose(ev);
  }

  async _onClose(ev) {
    if (this.ended) return;
    this.ended = true;
    const used = this.token;
    if (ev.code === 4401) {
      const code = /expired/.test(ev.reason) || this.expired ? 'token_expired' : 'unauthorized';
      return this.hooks.fail(new AuthError(401, { error: { code, message: ev.reason } }), used);
    }
    const err = new Error(`WebSocket closed (${ev.code})`);
    if (this.up) return this.hooks.fail(err);
    /* A refused upgrade (401/403) looks like any failed connection here. */
    const why = await credentialProblem(this.c.url + '/api/workflows?limit=1', used, this.ctl.signal);
    this.hooks.fail(why || err, used);
  }

  stop() {
    this.ctl.abort();
    clearTimeout(this.refresh);
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WS_CONNECTING) ws.onopen = () => ws.close(1000);
    else if (ws.readyState === WS_OPEN) ws.close(1000);
  }

  changed({ added = [], removed = [], all = false }) {
    added.forEach((id) => this._sub(id));
    if (removed.length) this._send({ op: 'unsubscribe', workflow_ids: removed }, { op: 'unsub' });
    if (all) {
      this._send({ op: 'subscribe_all' }, { op: 'all' });
      this._discoverAll();
    }
  }

  _send(msg, rec) {
    this.pending.push(rec);
    this.ws.send(JSON.stringify(msg));
  }

  _sub(id) {
    const msg = { op: 'subscribe', workflow_ids: [id] };
    const p = this.c.last.get(id);
    if (p != null) msg.since = { [id]: p.epoch != null ? { epoch: p.epoch, seq: p.seq } : p.seq };
    this._send(msg, { op: 'sub', id });
  }

  /* Workflows created while we were away are not in the subscribe_all stream. */
  _discoverAll() {
    this.c._sweep(this.ctl.signal, false).catch((err) => {
      if (err.name !== 'AbortError') this.c._report(err);
    });
  }

  _opened() {
    if (this.opened) return;
    this.opened = true;
    this.hooks.open();
    this._scheduleRefresh();
    if (this.c.all) this._discoverAll();
  }

  tokenChanged() {
    if (this.opened) this._scheduleRefresh();
  }

  /* Asks for the next token refreshMargin before this one's exp (timers
   * cannot wait longer than 2^31 ms: a longer wait is taken in steps). */
  _scheduleRefresh() {
    clearTimeout(this.refresh);
    /* at least 1 s apart: a function handing out tokens that live shorter
     * than the margin must not be called in a loop */
    const due = this.c.auth.refreshIn(this.c.refreshMargin);
    const ms = this.c.auth.value !== this.token ? 0 : due == null ? null : Math.max(1000, due);
    if (ms == null) return;
    this.refresh = setTimeout(() => (ms > 0x7fffffff ? this._scheduleRefresh() : this._refreshToken()), Math.min(ms, 0x7fffffff));
  }

  async _refreshToken() {
    let fresh;
    try {
      fresh = await this.c.auth.renew('refresh', this.token);
    } catch (err) {
      this.c._report(err);
      return; /* the old token holds until its exp; the close then asks again */
    }
    if (this.ctl.signal.aborted || this.ws.readyState !== WS_OPEN || !fresh || fresh === this.token) return;
    this.token = fresh;
    this._send({ op: 'auth', token: fresh }, { op: 'auth' });
  }

  /* Whether op message m answers the oldest message sent: token_expired
   * never does; a forbidden naming an id answers a subscribe of that id
   * only (a refresh that narrowed the scope ends other subscriptions so),
   * one naming none answers an auth (the new token may not read at all). */
  _answers(m) {
    const rec = this.pending[0];
    if (!rec || (m.op === 'error' && m.code === 'token_expired')) return false;
    if (m.op === 'error' && m.code === 'forbidden') {
      return m.workflow_id == null ? rec.op === 'auth' : rec.op === 'sub' && rec.id === m.workflow_id;
    }
    return true;
  }

  _message(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (!m.op) return this.c._deliver(m);
    const rec = this._answers(m) ? this.pending.shift() : {};
    const authErr = m.op === 'error' ? opError(m) : null;
    if (m.op === 'authenticated') {
      if (typeof m.exp === 'number' && this.c.auth.value === this.token) this.c.auth.exp = m.exp;
      this._scheduleRefresh();
      /* subscribe_all goes on within the new scope without a word about
       * workflows it left: the list tells which ones */
      if (this.c.all && !rec.first && this.opened) this._discoverAll();
    } else if (authErr instanceof ForbiddenError && m.workflow_id) {
      this.c._forbidden(m.workflow_id, authErr);
    } else if (authErr && m.code === 'token_expired') {
      this.expired = true; /* the close (4401) follows */
    } else if (authErr && rec.op === 'auth' && !rec.first) {
      this.c._report(authErr); /* a refused refresh: the old token holds until its exp */
    } else if (authErr) {
      return this.hooks.fail(authErr, this.token);
    } else if (m.op === 'error') {
      if (rec.op === 'sub' && m.code === 'not_found') {
        const p = this.c.last.get(rec.id);
        if (p && !p.gone) this.c._gone(rec.id);
        else if (!p) this.c._report(new Error(m.message));
        if (!this.c.all) {
          this.c.ids.delete(rec.id);
          this.c.last.delete(rec.id);
        }
      } else {
        this.c._report(new Error(m.message || 'server error'));
      }
    }
    if (!this.pending.length) this._opened();
  }
}

/* Server-Sent Events: /api/events?workflow_ids=...&since=<cursor built from
 * our own last seqs>, up to 100 ids per stream. The browser's own
 * EventSource retry is not used: a lost stream goes through the client's
 * backoff. In all mode a periodic list poll finds new and deleted workflows
 * and reopens the streams with the new set. */
class SseTransport {
  constructor(client, hooks) {
    this.c = client;
    this.hooks = hooks;
    this.sources = [];
    this.ctl = new AbortController();
    this.poll = null;
    this.key = '';
  }

  async start() {
    try {
      if (this.c.all) await this.c._sweep(this.ctl.signal, false);
    } catch (err) {
      if (err.name !== 'AbortError') this.hooks.fail(err);
      return;
    }
    if (this.ctl.signal.aborted) return;
    this._open(() => this.hooks.open());
    if (this.c.all) this._schedulePoll();
  }

  stop() {
    this.ctl.abort();
    clearTimeout(this.poll);
    this._closeSources();
  }

  changed() {
    this._open(() => {});
  }

  _schedulePoll() {
    this.poll = setTimeout(async () => {
      try {
        await this.c._sweep(this.ctl.signal, false);
        if (this._ids().join(',') !== this.key) this._open(() => {});
        this._schedulePoll();
      } catch (err) {
        if (err.name !== 'AbortError') this.hooks.fail(err);
      }
    }, this.c.pollInterval);
  }

  _closeSources() {
    for (const es of this.sources) {
      es.onopen = es.onmessage = es.onerror = null;
      es.close();
    }
    this.sources = [];
  }

  /* (Re)opens the streams for the followed ids; calls done() once all are open. */
  /* The ids to stream: the followed ones but those whose deletion was
   * delivered (a stream naming a workflow that does not exist is refused
   * whole, 404; a deletion seen live is the end of that subscription). */
  _ids() {
    return [...this.c.followed()].filter((id) => !this.c.last.get(id)?.gone).sort();
  }

  _open(done) {
    this._closeSources();
    const ids = this._ids();
    this.key = ids.join(',');
    this.token = this.c.auth.value ?? null;
    if (!ids.length) return done(); /* nothing to stream yet: the list poll waits */
    let waiting = 0;
    for (let i = 0; i < ids.length; i += SSE_MAX_IDS) {
      const chunk = ids.slice(i, i + SSE_MAX_IDS);
      const cursor = chunk.filter((id) => this.c.last.has(id)).map((id) => sseItem(id, this.c.last.get(id))).join(',');
      const q = { workflow_ids: chunk.join(',') };
      if (cursor) q.since = cursor;
      const es = new this.c.EventSource(streamUrl(this.c, '/api/events', q, this.token));
      waiting++;
      es.onopen = () => {
        if (es.isOpen) return;
        es.isOpen = true;
        if (--waiting === 0) done();
      };
      es.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch {
          return;
        }
        this.c._deliver(m);
      };
      es.onerror = (ev) => this._error(es, ev, chunk, done);
      this.sources.push(es);
    }
  }

  /* A stream failed, or the server ended it with `event: error`. */
  async _error(es, ev, chunk, done) {
    const used = this.token;
    this._closeSources();
    if (typeof ev.data === 'string') {
      let body = null;
      try {
        body = JSON.parse(ev.data);
      } catch {
        /* no detail */
      }
      const code = body && body.code;
      const err = { error: { code, message: body && body.message } };
      if (code === 'token_expired') return this._renew(new AuthError(401, err), done);
      if (code === 'unauthorized') return this.hooks.fail(new AuthError(401, err), used);
      if (code === 'forbidden') return this.hooks.fail(new ForbiddenError(403, err), used);
      return this.hooks.fail(new Error(`event stream ended (${code || 'error'})`));
    }
    if (es.isOpen) return this.hooks.fail(new Error('event stream failed'));
    /* Refused before it opened: a 403 names no id, so each is asked about. */
    const why = await credentialProblem(es.url, null, this.ctl.signal);
    if (!(why instanceof ForbiddenError) || this.ctl.signal.aborted) return this.hooks.fail(why || new Error('event stream failed'), used);
    let dropped = 0;
    for (const id of chunk) {
      const e = await credentialProblem(`${this.c.url}/api/workflows/${encodeURIComponent(id)}`, used, this.ctl.signal);
      if (this.ctl.signal.aborted) return;
      if (e instanceof ForbiddenError) {
        e.workflowId = id;
        this.c._forbidden(id, e);
        dropped++;
      }
    }
    if (dropped) this._open(done);
    else this.hooks.fail(why, used);
  }

  /* The token ran out (the server ended the streams at its exp): the same
   * streams again with a new one, from the last positions delivered. */
  async _renew(err, done) {
    const used = this.token;
    let fresh;
    try {
      fresh = await this.c.auth.renew('expired', used);
    } catch (e) {
      if (!this.ctl.signal.aborted) this.hooks.fail(e);
      return;
    }
    if (this.ctl.signal.aborted) return;
    if (fresh === used) return this.hooks.fail(err, used);
    this._open(done);
  }
}

/* Long-poll: GET /api/workflows/{id}?wait_since=<last seq>&timeout=S for up
 * to maxWaiters non-terminal workflows at a time; a jump in seq is filled in
 * from /history. A list poll every pollInterval catches up the others and
 * finds new and deleted workflows. */
class LongPollTransport {
  constructor(client, hooks) {
    this.c = client;
    this.hooks = hooks;
    this.ctl = new AbortController();
    this.waiters = new Map(); /* id -> AbortController */
    this.poll = null;
  }

  async start() {
    try {
      await this._sweep();
    } catch (err) {
      if (err.name !== 'AbortError') this.hooks.fail(err);
      return;
    }
    if (this.ctl.signal.aborted) return;
    this.hooks.open();
    this._schedulePoll();
  }

  stop() {
    this.ctl.abort();
    clearTimeout(this.poll);
    for (const ac of this.waiters.values()) ac.abort();
    this.waiters.clear();
  }

  changed({ removed = [] }) {
    for (const id of removed) this.waiters.get(id)?.abort();
    this._sweep().catch((err) => {
      if (err.name !== 'AbortError') this.hooks.fail(err);
    });
  }

  async _sweep() {
    const workflows = await this.c._sweep(this.ctl.signal, true);
    const byId = new Map(workflows.map((w) => [w.id, w]));
    if (!this.c.all) { /* ids missing from a truncated list: fetch them */
      for (const id of this.c.ids) {
        if (byId.has(id)) continue;
        try {
          const w = await this.c.get(id, this.ctl.signal);
          byId.set(id, w);
          await this.c._catchUp(w, this.ctl.signal);
        } catch (err) {
          if (err instanceof ForbiddenError) {
            err.workflowId = id;
            this.c._forbidden(id, err);
          } else if (err.status !== 404) throw err;
        }
      }
    }
    this._assign(byId);
  }

  _schedulePoll() {
    this.poll = setTimeout(async () => {
      try {
        await this._sweep();
        this._schedulePoll();
      } catch (err) {
        if (err.name !== 'AbortError') this.hooks.fail(err);
      }
    }, this.c.pollInterval);
  }

  /* Waits on the most recently updated live workflows. */
  _assign(byId) {
    const live = [...this.c.followed()]
      .map((id) => byId.get(id))
      .filter((w) => w && !TERMINAL.has(w.status))
      .sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1))
      .slice(0, this.c.maxWaiters)
      .map((w) => w.id);
    for (const [id, ac] of this.waiters) if (!live.includes(id)) { ac.abort(); this.waiters.delete(id); }
    for (const id of live) if (!this.waiters.has(id)) this._wait(id);
  }

  async _wait(id) {
    const ac = new AbortController();
    this.waiters.set(id, ac);
    const abortAll = () => ac.abort();
    this.ctl.signal.addEventListener('abort', abortAll);
    try {
      while (!ac.signal.aborted) {
        const p = this.c.last.get(id);
        const at = p ? `wait_since=${p.seq}` + (p.epoch != null ? `&epoch=${p.epoch}` : '') : 'wait_since=0';
        let w;
        try {
          w = await this.c.request('GET', `/api/workflows/${encodeURIComponent(id)}?${at}&timeout=${this.c.longPollTimeout}`, undefined, ac.signal);
        } catch (err) {
          if (err.status === 404) { this.c._gone(id); break; }
          if (err instanceof ForbiddenError) { err.workflowId = id; this.c._forbidden(id, err); break; }
          throw err;
        }
        await this.c._catchUp(w, ac.signal);
        if (TERMINAL.has(w.status)) break;
      }
    } catch (err) {
      if (err.name !== 'AbortError') this.hooks.fail(err);
    } finally {
      this.ctl.signal.removeEventListener('abort', abortAll);
      if (this.waiters.get(id) === ac) this.waiters.delete(id);
    }
  }
}

/* Whether transport `name` can open now, without disturbing the current one. */
export function probe(client, name) {
  return new Promise((resolve) => {
    let timer = 0;
    const done = (ok) => {
      clearTimeout(timer);
      resolve(ok);
    };
    timer = setTimeout(() => done(false), client.openTimeout);
    if (name === 'websocket') {
      const ws = new client.WebSocket(streamUrl(client, '/api/updates', {}, client.wsAuth === 'query' ? client.auth.value : null, true));
      ws.onopen = () => {
        ws.onclose = ws.onerror = null;
        ws.close(1000);
        done(true);
      };
      ws.onclose = ws.onerror = () => done(false);
    } else if (name === 'sse') {
      const id = [...client.followed()][0];
      if (!id) return done(false);
      const ac = new AbortController();
      fetch(streamUrl(client, '/api/events', { workflow_ids: id }, client.auth.value), { signal: ac.signal, cache: 'no-store' })
        .then((r) => done(r.ok && (r.headers.get('content-type') || '').startsWith('text/event-stream')))
        .catch(() => done(false))
        .finally(() => ac.abort());
    } else {
      done(false);
    }
  });
}

export const IMPLS = { websocket: WebSocketTransport, sse: SseTransport, longpoll: LongPollTransport };
