/* flowcast.js: the JavaScript client of a flowcast server (browsers and
 * Node >= 20), an ES module with no dependencies. It follows one, several or all workflows live over the best
 * transport that opens (WebSocket, then Server-Sent Events, then long-poll),
 * reconnects with capped exponential backoff and full jitter, and resumes
 * from the last position (epoch, seq) it saw of each workflow, so the
 * application sees every change once, in order, across reconnects (or a
 * `resync` when the server's log no longer reaches back, or when the
 * workflow was deleted and created again meanwhile).
 *
 *   import { FlowcastClient } from '/flowcast.js';  // Node: from 'flowcast'
 *   const fc = new FlowcastClient({
 *     url: 'http://127.0.0.1:8001',                  // default: the page's origin
 *     onUpdate(u, meta) { console.log(u.workflow_id, u.seq, u.status); },
 *     onState(s) { console.log(s.state, s.transport, s.delay); },
 *   });
 *   fc.subscribe(['deploy-42']);   // or fc.subscribeAll()
 *   ...
 *   fc.close();
 *
 * Updates have the server's update format: {workflow_id, epoch, name,
 * status, current_step, total_steps, message, timestamp, seq} plus
 * `resync: true` when they replace a lost history, or {workflow_id, epoch,
 * deleted: true, seq, timestamp} for a deletion (no name). `name` is the
 * workflow's name whichever way the update came (a stream or a REST answer),
 * so showing a workflow first met on a stream needs no GET; it is absent
 * only from servers older than names in updates. `meta.workflow` holds the
 * full workflow object (created_at, ...) when the update came from a REST
 * answer.
 *
 * `epoch` names one incarnation of an id: a workflow deleted and created
 * again under the same id has a new epoch, and its seq starts again at 1.
 * An update whose epoch differs from the previous one of that id is a new
 * workflow (it comes after the old one's deletion when the server still
 * knows it, and with `resync: true`): replace what you showed, never
 * continue it. Ids given to subscribe() are a set: each change once.
 *
 * Several servers (a cluster behind no proxy): `url` may be an array of base
 * URLs or a comma-separated string. A connection that fails or is lost moves
 * to the next URL (round robin) and resumes there from the last (epoch, seq)
 * exactly as on one server; the backoff wait comes once per full round of
 * URLs that all failed. REST requests go to the URL in use; a change whose
 * answer was lost is resent to the next one.
 *
 * Node: fetch is built in; WebSocket is global from Node 22 (Node 20: run
 * with --experimental-websocket, or pass the `ws` package as the `WebSocket`
 * option). Without a global EventSource (or the `EventSource` option) SSE
 * runs on fetch (flowcast-eventsource.js). A transport with no constructor
 * is left out (long-poll needs fetch only).
 *
 * States: 'connecting' (trying `transport`), 'open' (`transport` is live),
 * 'reconnecting' (`attempt`, `delay` ms, `retryAt` epoch ms; `waiting:
 * 'token'` while the token function is asked for a new one), 'closed'
 * (close() was called, or `maxRetries` were used up). Every state names the
 * `url` in use.
 *
 * Credentials: `token` is a string or a function `({reason, previous}) =>
 * token` (may be async; null/'' = no credential). It goes in
 * `Authorization: Bearer` on every fetch and as `access_token` on the
 * WebSocket and EventSource URLs (browsers cannot set their headers), or,
 * with `wsAuth: 'message'`, as the first WebSocket message. When the server
 * refuses it (401), or ends a stream because it expired (close 4401,
 * `op:error` token_expired, SSE `event: error`), the function is asked for
 * a new one (reason 'expired', 'unauthorized', 'forbidden') and the streams
 * resume from the last (epoch, seq): nothing lost, nothing repeated. On the
 * WebSocket it is asked shortly before the JWT's `exp` (reason 'refresh')
 * and the new token replaces the old in place, without a reconnect. A 403
 * is a ForbiddenError (onError; `workflowId` when it ended one workflow's
 * subscription), distinct from AuthError (401). */

import { AuthError, Credential, ForbiddenError, HttpError, httpError, jwtExp } from './flowcast-auth.js';
import { FetchEventSource } from './flowcast-eventsource.js';
import { IMPLS, TERMINAL, probe } from './flowcast-transports.js';

export { AuthError, ForbiddenError, HttpError, TERMINAL, jwtExp };
export const TRANSPORTS = ['websocket', 'sse', 'longpoll'];

const GATEWAY_AWAY = new Set([502, 503, 504]);

/* Delay before retry number `attempt` (0-based): a uniformly random value in
 * [0, min(max, initial * 2^attempt)] ("full jitter"). */
export function backoffDelay(attempt, { initial = 100, max = 30000 } = {}, random = Math.random) {
  const ceiling = Math.min(max, initial * Math.pow(2, Math.min(attempt, 30)));
  return Math.round(random() * ceiling);
}

/* A new Idempotency-Key: 128 random bits in hex (getRandomValues also
 * works on pages that are not a secure context, unlike randomUUID). */
export function newIdempotencyKey() {
  const b = new Uint8Array(16);
  if (globalThis.crypto && globalThis.crypto.getRandomValues) globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/* The list of server base URLs in `url`: an array, or one string with URLs
 * separated by commas; trailing slashes dropped. */
export function serverUrls(url) {
  const list = (Array.isArray(url) ? url : String(url).split(','))
    .map((u) => String(u).trim().replace(/\/+$/, ''))
    .filter((u) => u);
  if (!list.length) throw new TypeError('flowcast: no server URL');
  return list;
}

/* The update message for a workflow object from the REST API: what the
 * streams send for the same state, name included (long-poll, and the list
 * sweeps of --all, deliver these). */
export function workflowToUpdate(w) {
  return {
    workflow_id: w.id, epoch: w.epoch, name: w.name, status: w.status, current_step: w.current_step,
    total_steps: w.total_steps, message: w.message, timestamp: w.updated_at, seq: w.seq,
  };
}

export class FlowcastClient {
  /* Options (all optional):
   *   url          server base URL (default location.origin), or several:
   *                an array or a comma-separated string, see above
   *   transports   order of transports to try (default TRANSPORTS; those
   *                with no constructor here are left out)
   *   WebSocket, EventSource  the constructors to use (default the global
   *                ones; Node 20: `ws`'s WebSocket, for one; EventSource
   *                falls back to one on fetch)
   *   onUpdate(update, meta)  every change, deduplicated by seq
   *   onState(state)          connection state changes, see above
   *   onError(err)            non-fatal problems (unknown workflow id, ...)
   *   backoff      {initial: 100, max: 30000} ms; maxRetries (default Infinity)
   *   openTimeout  ms a transport may take to open (default 5000)
   *   pollInterval ms between list polls that find new and deleted workflows
   *                on SSE/long-poll (default 3000)
   *   longPollTimeout  seconds a long-poll request waits (default 25, max 60)
   *   maxWaiters   concurrent long-poll requests (default 4: browsers allow 6
   *                connections per host); other workflows ride on the list poll
   *   upgradeDelay ms on a fallback transport before checking whether a
   *                better one works again (default 10000, doubling to 5 min)
   *   token        credential: a string or a function, see above
   *   wsAuth       'query' (default: access_token on the URL) or 'message'
   *                (the first WebSocket message; the URL carries no token)
   *   refreshMargin  ms before exp to refresh the WebSocket's token in place
   *                (default a quarter of the token's life, 1 s to 30 s)
   *   requestRetries  resends of a change whose answer was lost (default 4),
   *                after backoffDelay(n, requestBackoff) ms; requestBackoff
   *                defaults to {initial: 100, max: 2000}. See request().
   *   autoConnect  connect on the first subscribe (default true) */
  constructor(opts = {}) {
    const loc = typeof location !== 'undefined' ? location.origin : 'http://127.0.0.1:8001';
    this.urls = serverUrls(opts.url || loc);
    this._server = 0;          /* index in urls of the one in use */
    this._tried = 0;           /* urls failed since the last backoff wait or open */
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.EventSource = opts.EventSource || globalThis.EventSource || (globalThis.fetch && FetchEventSource);
    const usable = { websocket: !!this.WebSocket, sse: !!this.EventSource, longpoll: true };
    this.transports = (opts.transports || TRANSPORTS).filter((t) => usable[t]);
    this.onUpdate = opts.onUpdate || (() => {});
    this.onState = opts.onState || (() => {});
    this.onError = opts.onError || (() => {});
    this.backoff = { initial: 100, max: 30000, ...(opts.backoff || {}) };
    this.maxRetries = opts.maxRetries ?? Infinity;
    this.openTimeout = opts.openTimeout ?? 5000;
    this.pollInterval = opts.pollInterval ?? 3000;
    this.longPollTimeout = Math.min(60, opts.longPollTimeout ?? 25);
    this.maxWaiters = opts.maxWaiters ?? 4;
    this.auth = new Credential(opts.token);
    this.wsAuth = opts.wsAuth === 'message' ? 'message' : 'query';
    this.refreshMargin = opts.refreshMargin;
    this.requestRetries = opts.requestRetries ?? 4;
    this.requestBackoff = { initial: 100, max: 2000, ...(opts.requestBackoff || {}) };
    this.autoConnect = opts.autoConnect ?? true;
    this.upgradeDelay = opts.upgradeDelay ?? 10000;

    this.all = false;          /* subscribeAll() was called */
    this.ids = new Set();      /* explicitly subscribed ids */
    /* id -> {epoch, seq, retired, gone}: the last position delivered (epoch
     * null while unknown), the incarnation it replaced (its late messages
     * are old, not new), and gone: that incarnation was deleted (kept for
     * subscribed ids only, to drop repeats and resume across a re-creation). */
    this.last = new Map();
    this.state = 'idle';
    this.transport = null;     /* name of the open transport */
    this.attempt = 0;
    this._t = null;            /* the current transport object */
    this._timer = null;
    this._wait = null;         /* a token being fetched before (re)connecting */
    this._authFails = 0;       /* auth refusals since the last open */
    this._closed = false;
  }

  /* The base URL in use (the first of `url` until a connection fails). */
  get url() { return this.urls[this._server]; }

  /* The token in force (null: none; undefined: not asked for yet). */
  get token() { return this.auth.value; }

  /* Uses `token` from now on (a function option stays, and is asked again
   * when this one fails): REST at once, the WebSocket in place (op:auth),
   * SSE and long-poll from their next request. */
  setToken(token) {
    if (!this.auth.dynamic) this.auth.source = token;
    this.auth.set(token);
    if (this._t && this._t.tokenChanged) this._t.tokenChanged();
  }

  /* --- subscriptions ------------------------------------------------------ */

  /* Follows these workflows (a repeated id counts once). `since` maps id ->
   * the position to resume from (the application's own record of an
   * update's {epoch, seq}, or a bare seq when the epoch is unknown: the
   * server then resumes only when it can prove the id was never deleted),
   * else the current state comes first. */
  subscribe(ids, since = {}) {
    const added = [];
    for (const id of new Set([].concat(ids))) {
      const p = since[id];
      if (p != null && !this.last.has(id)) {
        const at = typeof p === 'number' ? { seq: p } : p;
        this.last.set(id, { epoch: at.epoch ?? null, seq: at.seq, retired: null, gone: false });
      }
      if (!this.ids.has(id)) { this.ids.add(id); added.push(id); }
    }
    if (added.length && this._t && this.state === 'open') this._t.changed({ added });
    this._autostart();
  }

  unsubscribe(ids) {
    const removed = [].concat(ids).filter((id) => this.ids.delete(id));
    if (!this.all) removed.forEach((id) => this.last.delete(id));
    if (removed.length && this._t && this.state === 'open') this._t.changed({ removed });
  }

  /* Follows every workflow, including those created later. */
  subscribeAll() {
    if (this.all) return;
    this.all = true;
    if (this._t && this.state === 'open') this._t.changed({ all: true });
    this._autostart();
  }

  /* The ids the current transport must follow. */
  followed() {
    return this.all ? new Set([...this.ids, ...this.last.keys()]) : new Set(this.ids);
  }

  /* The last seq delivered of id's current incarnation (undefined when none
   * or deleted), and the whole position {epoch, seq} to resume from. */
  lastSeq(id) { return this.position(id)?.seq; }

  position(id) {
    const p = this.last.get(id);
    return p && !p.gone ? { epoch: p.epoch, seq: p.seq } : undefined;
  }

  /* --- connection --------------------------------------------------------- */

  connect() {
    this._closed = false;
    if (this._t || this._timer || this._wait) return;
    this._cycle(0);
  }

  /* Skips the rest of a backoff wait (e.g. when the browser is back online). */
  retryNow() {
    if (this._timer && !this._t && !this._closed) {
      clearTimeout(this._timer);
      this._cycle(0);
    }
  }

  close() {
    this._closed = true;
    clearTimeout(this._timer);
    this._timer = null;
    this._wait = null;
    this._stopTransport();
    this._setState({ state: 'closed' });
  }

  _autostart() {
    if (this.autoConnect && !this._closed && this.state === 'idle') this.connect();
  }

  /* Tries transports[i], then the next ones; all failing -> backoff. */
  _cycle(i, quiet = false) {
    this._timer = null;
    if (this._closed) return;
    if (this.auth.stale()) return this._afterToken(this.auth.current(), () => this._cycle(i, quiet));
    if (i >= this.transports.length) return this._nextServer(new Error(`no transport could open at ${this.url}`));
    const name = this.transports[i];
    if (!quiet) this._setState({ state: this.attempt ? 'reconnecting' : 'connecting', transport: name, trying: true });
    const Impl = IMPLS[name];
    let opened = false;
    const t = new Impl(this, {
      open: () => {
        if (this._t !== t || opened) return;
        opened = true;
        clearTimeout(guard);
        this.attempt = 0;
        this._tried = 0;
        this._authFails = 0;
        this.transport = name;
        this._setState({ state: 'open', transport: name });
        if (i > 0) this._scheduleUpgrade(i, this.upgradeDelay);
      },
      /* used: the token the transport sent, when err is about it */
      fail: (err, used) => {
        if (this._t !== t) return;
        clearTimeout(guard);
        this._stopTransport();
        if (err instanceof AuthError || (err instanceof ForbiddenError && !err.workflowId)) this._authFailed(err, used === undefined ? this.auth.value : used);
        else if (opened) this._nextServer(err);
        else this._cycle(i + 1, quiet);
      },
    });
    this._t = t;
    /* The time the token function takes (a user pasting a token) does not count. */
    let guard = 0;
    const arm = () => {
      guard = setTimeout(() => {
        const asking = this.auth.renewing;
        if (!asking) return t.hooks.fail(new Error(`${name} did not open in time`));
        const again = () => { if (this._t === t && !opened) arm(); };
        asking.then(again, again);
      }, this.openTimeout);
    };
    arm();
    try {
      t.start();
    } catch (err) {
      t.hooks.fail(err);
    }
  }

  /* A transport could not open or was ended for its token `used`: asks for
   * a new one and reconnects at once (resuming from the last positions), or
   * after the usual backoff when it did not change (a string option, or a
   * function with no other) or when the last new one was refused too. */
  _authFailed(err, used) {
    this._authFails++;
    if (!this.auth.dynamic) {
      this._report(err);
      return this._retryLater(err);
    }
    const reason = err instanceof ForbiddenError ? 'forbidden' : err.code === 'token_expired' ? 'expired' : 'unauthorized';
    this.transport = null;
    this._setState({ state: 'reconnecting', waiting: 'token', error: err });
    this._afterToken(this.auth.renew(reason, used), (fresh) => {
      if (fresh === used) this._report(err);
      if (fresh === used || this._authFails > 1) this._retryLater(err);
      else this._cycle(0);
    });
  }

  /* Runs next(token) once promise p (a token being fetched) settles, unless
   * close() came first; a token function that throws is reported and retried
   * after a backoff. */
  _afterToken(p, next) {
    const w = (this._wait = p.then(
      (v) => {
        if (this._wait !== w) return;
        this._wait = null;
        if (!this._closed) next(v);
      },
      (err) => {
        if (this._wait !== w) return;
        this._wait = null;
        this._report(err);
        this._retryLater(err);
      },
    ));
  }

  _report(err) {
    try {
      this.onError(err);
    } catch (e) {
      setTimeout(() => { throw e; });
    }
  }

  /* The subscription of `id` ended because the token may not read it. */
  _forbidden(id, err) {
    this.ids.delete(id);
    this.last.delete(id);
    this._report(err);
  }

  /* The server in use failed (no transport opened, or the open one was
   * lost): the next URL at once, or, when every URL failed in this round,
   * the backoff wait (then the round goes on from the next URL). */
  _nextServer(err) {
    this._tried++;
    this._server = (this._server + 1) % this.urls.length;
    if (this._tried >= this.urls.length || this._closed) return this._retryLater(err);
    this.transport = null;
    this._cycle(0);
  }

  _retryLater(err) {
    if (this._closed) return;
    this._tried = 0;
    if (this.attempt >= this.maxRetries) {
      this._setState({ state: 'closed', error: err });
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.transport = null;
    this._setState({ state: 'reconnecting', attempt: this.attempt, delay, retryAt: Date.now() + delay, error: err });
    this._timer = setTimeout(() => this._cycle(0), delay);
  }

  _stopTransport() {
    clearTimeout(this._upgrade);
    const t = this._t;
    this._t = null;
    if (t) t.stop();
  }

  /* On a fallback transport, checks now and then (10 s, doubling up to
   * 5 min) whether a better one works again, e.g. after a restart that
   * happened between two attempts, and switches to it without a gap in
   * the changes (the new transport resumes from the last seqs). */
  _scheduleUpgrade(current, delay) {
    clearTimeout(this._upgrade);
    this._upgrade = setTimeout(async () => {
      const t = this._t;
      for (const name of this.transports.slice(0, current)) {
        if (await probe(this, name)) {
          if (this._t !== t || this._closed) return;
          this._stopTransport();
          return this._cycle(0, true);
        }
      }
      if (this._t === t) this._scheduleUpgrade(current, Math.min(delay * 2, 300000));
    }, delay);
  }

  _setState(s) {
    this.state = s.state;
    try {
      this.onState({ transport: null, attempt: this.attempt, url: this.url, ...s });
    } catch (e) {
      setTimeout(() => { throw e; });
    }
  }

  /* Whether message m of id is news: another incarnation than the tracked
   * one always is (its seq starts again at 1), the tracked one only past
   * the last seq (or a resync below it: a restored server), the one it
   * replaced never. An unknown epoch (older server) compares by seq alone.
   * A deleted incarnation takes only another one, never a second deletion. */
  _fresh(id, m) {
    const prev = this.last.get(id);
    const e = typeof m.epoch === 'number' ? m.epoch : null;
    if (!prev) return !(m.deleted && this.all); /* in all mode: never seen, or forgotten */
    if (e != null && e === prev.retired) return false;
    const other = e != null && prev.epoch != null && e !== prev.epoch;
    if (prev.gone) return other && !m.deleted;
    return other || m.seq > prev.seq || (m.resync === true && m.seq < prev.seq);
  }

  /* Delivers one server message unless it repeats one already delivered
   * (same epoch, seq not above). Returns true when it was new. */
  _deliver(m, meta = {}) {
    if (!m || typeof m.workflow_id !== 'string' || typeof m.seq !== 'number') return false;
    const id = m.workflow_id;
    if (!this.all && !this.ids.has(id)) return false;
    if (!this._fresh(id, m)) return false;
    const prev = this.last.get(id);
    const epoch = typeof m.epoch === 'number' ? m.epoch : prev?.epoch ?? null;
    const retired = prev && prev.epoch != null && prev.epoch !== epoch ? prev.epoch : prev?.retired ?? null;
    if (m.deleted && !this.ids.has(id)) this.last.delete(id);
    else this.last.set(id, { epoch, seq: m.seq, retired, gone: !!m.deleted });
    try {
      this.onUpdate(m, { transport: this.transport, ...meta });
    } catch (e) {
      setTimeout(() => { throw e; });
    }
    return true;
  }

  /* A workflow we knew is gone (found out without a deletion message). */
  _gone(id) {
    const prev = this.last.get(id);
    if (prev == null || prev.gone) return;
    const m = { workflow_id: id, deleted: true, seq: prev.seq + 1, timestamp: new Date().toISOString() };
    if (prev.epoch != null) m.epoch = prev.epoch;
    this._deliver(m);
  }

  /* Brings `id` from its last position up to workflow object `w`: through
   * /history, so a jump in seq does not lose the changes in between; or,
   * when `w` is another incarnation, the old one's deletion and the new
   * one's state with resync (never a continuation). */
  async _catchUp(w, signal) {
    const prev = this.last.get(w.id);
    const other = prev && (prev.gone || (w.epoch != null && prev.epoch != null && w.epoch !== prev.epoch));
    if (other) {
      this._gone(w.id);
      this._deliver({ ...workflowToUpdate(w), resync: true }, { workflow: w });
      return;
    }
    if (prev != null && w.seq > prev.seq + 1) {
      try {
        const h = await this.history(w.id, { since: prev.seq, epoch: prev.epoch, limit: 1000 }, signal);
        if (h.resync || (h.epoch != null && prev.epoch != null && h.epoch !== prev.epoch)) {
          return this._gone(w.id); /* re-created since w was read: the next poll has the new one */
        }
        if (h.oldest_seq > prev.seq + 1) {
          this._deliver({ ...workflowToUpdate(w), resync: true }, { workflow: w });
          return;
        }
        for (const e of h.events) if (e.seq < w.seq) this._deliver(e);
      } catch (err) {
        if (err.name === 'AbortError') throw err;
        if (err.status === 404) return this._gone(w.id);
        throw err;
      }
    }
    this._deliver(workflowToUpdate(w), { workflow: w });
  }

  /* Every workflow in the list (newest first), following cursors. */
  async listAll({ status, pageSize = 1000, maxPages = 10 } = {}, signal) {
    const out = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page++) {
      const r = await this.list({ status, limit: pageSize, cursor }, signal);
      out.push(...r.workflows);
      cursor = r.next_cursor;
      if (!cursor) return { workflows: out, complete: true };
    }
    return { workflows: out, complete: false };
  }

  /* Finds new workflows and ones deleted while we were away (all mode), and
   * catches up every followed workflow whose seq moved. `catchUpAll` is
   * false on WebSocket/SSE, whose streams replay changes themselves. */
  async _sweep(signal, catchUpAll) {
    const before = new Set(this.last.keys());
    const { workflows, complete } = await this.listAll({}, signal);
    const seen = new Set();
    for (const w of workflows.slice().reverse()) { /* oldest first */
      seen.add(w.id);
      if (!this.all && !this.ids.has(w.id)) continue;
      const prev = this.last.get(w.id);
      if (prev == null) this._deliver(workflowToUpdate(w), { workflow: w });
      else if (catchUpAll && (w.seq > prev.seq || prev.gone || (w.epoch != null && w.epoch !== prev.epoch))) await this._catchUp(w, signal);
    }
    if (complete) for (const id of before) if (!seen.has(id)) await this._missing(id, signal);
    return workflows;
  }

  /* A workflow we knew is not in the list: deleted, or, with a token, maybe
   * no longer readable (a new token with a narrower scope); a GET tells. */
  async _missing(id, signal) {
    if (!this.auth.value) return this._gone(id);
    try {
      await this.get(id, signal);
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      if (err instanceof ForbiddenError) {
        err.workflowId = id;
        this._forbidden(id, err);
      } else if (err.status === 404) {
        this._gone(id);
      }
    }
  }

  /* --- REST helpers (return parsed JSON; throw HttpError, AuthError on 401,
   * ForbiddenError on 403) ------------------------------------------------ */

  /* A change (any method but GET) carries an Idempotency-Key: opts.idempotencyKey,
   * else a new random one. When its answer is lost (fetch rejects: the
   * connection failed or broke), the same request with the same key is sent
   * again, up to opts.retries (default requestRetries) times: the server
   * answers a change it already applied with its first answer, so it is
   * applied once; with several server URLs each resend goes to the next
   * one, and so does a request a gateway answers 502, 503 or 504.
   * GETs are not resent unless opts.retries says so (the transports detect
   * a lost server through them). An abort is never resent. */
  async request(method, path, body, signal, opts = {}) {
    const change = method !== 'GET';
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (change) headers['Idempotency-Key'] = opts.idempotencyKey || newIdempotencyKey();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const retries = opts.retries ?? (change ? this.requestRetries : 0);
    let renewed = false;
    let server = this._server;
    for (let attempt = 0; ; attempt++) {
      const token = await this.auth.current();
      if (token) headers.Authorization = `Bearer ${token}`;
      else delete headers.Authorization;
      let r, text;
      try {
        r = await fetch(this.urls[server] + path, { method, headers, signal, cache: 'no-store', body: payload });
        text = await r.text();
      } catch (err) {
        if ((signal && signal.aborted) || attempt >= retries) throw err;
        server = (server + 1) % this.urls.length;
        await new Promise((res) => setTimeout(res, backoffDelay(attempt, this.requestBackoff)));
        if (signal && signal.aborted) throw err;
        continue;
      }
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        if (r.ok) throw new HttpError(r.status, { error: { code: 'bad_response', message: 'the answer is not JSON' } });
      }
      if (r.ok) return data;
      /* With several servers, a gateway's 502/503/504 says that one is
       * away: the next one gets the same request (same Idempotency-Key). */
      if (this.urls.length > 1 && GATEWAY_AWAY.has(r.status) && attempt < retries && !(signal && signal.aborted)) {
        server = (server + 1) % this.urls.length;
        await new Promise((res) => setTimeout(res, backoffDelay(attempt, this.requestBackoff)));
        continue;
      }
      const err = httpError(r.status, data);
      /* A refused or expired token: once, the same request with a new one
       * (a change keeps its Idempotency-Key, so it is applied once). */
      if (err instanceof AuthError && !renewed && this.auth.dynamic) {
        renewed = true;
        const fresh = await this.auth.renew(err.code === 'token_expired' ? 'expired' : 'unauthorized', token);
        if (fresh !== token) {
          attempt--;
          continue;
        }
      }
      throw err;
    }
  }

  list({ status, limit, cursor } = {}, signal) {
    const q = new URLSearchParams();
    if (status) q.set('status', status);
    if (limit) q.set('limit', limit);
    if (cursor) q.set('cursor', cursor);
    const qs = q.toString();
    return this.request('GET', '/api/workflows' + (qs ? '?' + qs : ''), undefined, signal);
  }

  get(id, signal) { return this.request('GET', `/api/workflows/${encodeURIComponent(id)}`, undefined, signal); }

  /* With `epoch`, a history of another incarnation answers "resync": true
   * and the current one's log from its start. */
  history(id, { since = 0, epoch = null, limit = 100 } = {}, signal) {
    const e = epoch != null ? `&epoch=${epoch}` : '';
    return this.request('GET', `/api/workflows/${encodeURIComponent(id)}/history?since=${since}${e}&limit=${limit}`, undefined, signal);
  }

  /* opts: {idempotencyKey, retries}, see request(). */
  create(fields, opts) { return this.request('POST', '/api/workflows', fields, undefined, opts); }
  update(id, fields, opts) { return this.request('PATCH', `/api/workflows/${encodeURIComponent(id)}`, fields, undefined, opts); }
  remove(id, opts) { return this.request('DELETE', `/api/workflows/${encodeURIComponent(id)}`, undefined, undefined, opts); }
}
