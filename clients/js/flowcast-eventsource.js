/* flowcast-eventsource.js: the part of EventSource the SSE transport of
 * flowcast.js uses, on fetch, for runtimes without one (Node before 22).
 * One stream per object and no reconnect of its own: the client's backoff
 * decides when to open the next one, as it does with a browser's. */

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

export class FetchEventSource {
  constructor(url) {
    this.url = String(url);
    this.readyState = CONNECTING;
    this.onopen = this.onmessage = this.onerror = null;
    this._ac = new AbortController();
    this._run();
  }

  close() {
    this.readyState = CLOSED;
    this._ac.abort();
  }

  _emit(handler, ev) {
    if (this.readyState !== CLOSED && typeof this[handler] === 'function') this[handler](ev);
  }

  async _run() {
    try {
      const r = await fetch(this.url, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: this._ac.signal });
      if (!r.ok || !(r.headers.get('content-type') || '').startsWith('text/event-stream')) {
        r.body?.cancel().catch(() => {});
        return this._fail();
      }
      this.readyState = OPEN;
      this._emit('onopen', { type: 'open' });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        buf = this._events(buf);
      }
    } catch {
      /* aborted by close(), or the connection broke */
    }
    this._fail();
  }

  _fail() {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    if (typeof this.onerror === 'function') this.onerror({ type: 'error' });
  }

  /* Dispatches every complete event in buf (ended by a blank line); returns the rest. */
  _events(buf) {
    let end;
    while ((end = buf.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + (buf.startsWith('\r\n\r\n', end) ? 4 : 2));
      let type = 'message';
      const data = [];
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
      }
      if (!data.length) continue;
      /* the server's `event: error` reaches onerror with its data, as in browsers */
      const ev = { type, data: data.join('\n') };
      if (type === 'message') this._emit('onmessage', ev);
      else if (type === 'error') this._emit('onerror', ev);
    }
    return buf;
  }
}
