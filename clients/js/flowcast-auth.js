/* flowcast-auth.js: the credential side of flowcast.js (imported by it; an
 * application imports flowcast.js only). The errors a request can end with,
 * and the `token` option: a string, or a function (sync or async) that
 * returns one, called again whenever the server refuses or ends a stream
 * for its token. A JWT's `exp` is read from its payload without verifying
 * it: the server verifies; the client only needs to know when to ask for
 * the next one. */

/* An HTTP answer that is not 2xx. `code` is the error body's code
 * ("not_found", "token_expired", ...). */
export class HttpError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    const code = typeof e === 'string' ? e : e && e.code;
    super((e && e.message) || (code ? `HTTP ${status} (${code})` : `HTTP ${status}`));
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
  }
}

/* 401, a WebSocket closed with 4401, an `op:error` "unauthorized" or
 * "token_expired", an SSE `event: error`: no credential, or one the server
 * refuses. `code` is 'token_expired' when it ran out, else 'unauthorized'. */
export class AuthError extends HttpError {
  constructor(status = 401, body = null) {
    super(status, body || { error: { code: 'unauthorized', message: 'a valid credential is required' } });
    this.name = 'AuthError';
    this.code = this.code || 'unauthorized';
  }
}

/* 403 or `op:error` "forbidden": the credential is valid but does not allow
 * this. `workflowId` names the workflow when the refusal is about one (its
 * subscription ended); without it the token may not read at all. */
export class ForbiddenError extends HttpError {
  constructor(status = 403, body = null, workflowId = null) {
    super(status, body || { error: { code: 'forbidden', message: 'the credential does not allow this' } });
    this.name = 'ForbiddenError';
    this.code = 'forbidden';
    this.workflowId = workflowId;
  }
}

/* The error for an answer with this status and parsed body. */
export function httpError(status, body) {
  if (status === 401) return new AuthError(status, body);
  if (status === 403) return new ForbiddenError(status, body);
  return new HttpError(status, body);
}

/* The error for a WebSocket `{"op":"error"}` message about credentials, or null. */
export function opError(m) {
  const body = { error: { code: m.code, message: m.message } };
  if (m.code === 'token_expired' || m.code === 'unauthorized') return new AuthError(401, body);
  if (m.code === 'forbidden') return new ForbiddenError(403, body, m.workflow_id ?? null);
  return null;
}

/* The `exp` claim (unix seconds) of a JWT, or null for anything else (a
 * static token, a malformed one). */
export function jwtExp(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
    return typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp : null;
  } catch {
    return null;
  }
}

/* The client's current token and how to get the next one. `value` is
 * undefined until a function was first asked, null for "no credential". */
export class Credential {
  constructor(option) {
    this.source = option ?? null;
    this.value = undefined;
    if (!this.dynamic) this.set(option);
    this._renewing = null;
  }

  /* The call to the function in flight, or null. */
  get renewing() { return this._renewing; }

  /* Whether a new token can be asked for (the option is a function). */
  get dynamic() { return typeof this.source === 'function'; }

  set(v) {
    this.value = v == null || v === '' ? null : String(v);
    this.exp = jwtExp(this.value);
    this.obtained = Date.now();
  }

  /* Must be asked for before use: never asked, or past its own exp. */
  stale(now = Date.now()) {
    return this.dynamic && (this.value === undefined || (this.exp != null && this.exp * 1000 <= now));
  }

  /* The token to send now (null: none), asking the function first when stale. */
  async current() {
    if (this.stale()) await this.renew(this.value === undefined ? 'initial' : 'expired', this.value);
    return this.value ?? null;
  }

  /* Asks the function for a new token because `rejected` failed (reason:
   * 'initial', 'refresh' (exp is near), 'expired', 'unauthorized',
   * 'forbidden'). Callers that fail at the same time share one call, and a
   * caller whose token was replaced meanwhile gets the new one without a
   * call. Resolves to the token now in force (maybe unchanged: a string
   * option, or a function that had no other); a throwing function leaves
   * the old one and rejects. */
  renew(reason, rejected = this.value) {
    if (this._renewing) return this._renewing;
    if (!this.dynamic || rejected !== this.value) return Promise.resolve(this.value ?? null);
    const p = (async () => {
      try {
        this.set(await this.source({ reason, previous: rejected ?? null }));
      } finally {
        this._renewing = null;
      }
      return this.value;
    })();
    this._renewing = p;
    return p;
  }

  /* Milliseconds until an in-place refresh is due (`margin` ms before exp;
   * by default a quarter of the token's life, between 1 s and 30 s), or
   * null when there is nothing to refresh. */
  refreshIn(margin) {
    if (!this.dynamic || this.exp == null) return null;
    const end = this.exp * 1000;
    const m = margin ?? Math.min(30000, Math.max(1000, (end - this.obtained) / 4));
    return Math.max(0, end - m - Date.now());
  }
}
