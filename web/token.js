/* token.js: the dashboard's credential. The token is what the user pasted
 * into the token form, kept in sessionStorage (this tab only, gone when it
 * closes; never localStorage). provideToken() is FlowcastClient's `token`
 * function: the client calls it when the server refuses the token (401),
 * when it expires or is about to, and when it may not read (403), and
 * resumes its streams with the answer; the answer here is the next token
 * the user pastes. The header shows the time left until the token's exp. */
import { jwtExp } from './flowcast.js';

const KEY = 'flowcast.token';
const $ = (sel) => document.querySelector(sel);

let client = null;
let ask = null; /* {reason, previous, resolve, promise}: the form is waiting */

function stored() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; /* storage disabled: the token lives in this page only */
  }
}

function store(token) {
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    /* see stored() */
  }
}

const expired = (t) => {
  const exp = jwtExp(t);
  return exp != null && exp * 1000 <= Date.now();
};

/* FlowcastClient's token function: the stored token first; then, when that
 * one failed, the next one the user pastes (one question at a time). */
export function provideToken({ reason, previous }) {
  const t = stored();
  if (reason === 'initial') return t;
  if (t && t !== previous && !expired(t)) return t; /* pasted meanwhile */
  if (!ask) {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    ask = { resolve, promise };
  }
  Object.assign(ask, { reason, previous });
  paintForm();
  return ask.promise;
}

function use(token) {
  store(token);
  const a = ask;
  ask = null;
  if (a) a.resolve(token);
  else client.setToken(token); /* pasted without being asked (the chip) */
  paintForm();
  setTimeout(paintExpiry); /* after the client took it (promise callbacks run first) */
}

/* "4 min 10 s", "2 h 5 min", "45 s" (whole seconds, rounded down). */
function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function paintExpiry() {
  const chip = $('[data-testid="token-expiry"]');
  const t = client.token;
  chip.hidden = !t;
  if (!t) return;
  const exp = jwtExp(t);
  if (exp == null) {
    chip.dataset.state = 'ok';
    chip.textContent = 'Token · no expiry';
    chip.title = 'This token does not expire. Click to paste another.';
    return;
  }
  const left = exp * 1000 - Date.now();
  chip.dataset.state = left <= 0 ? 'expired' : left <= 60000 ? 'soon' : 'ok';
  chip.textContent = left <= 0 ? `Token expired ${span(-left)} ago` : `Token expires in ${span(left)}`;
  chip.title = `Expiry: ${new Date(exp * 1000).toLocaleString()}. Click to paste a new token.`;
}

const TEXT = {
  initial: ['Access token needed', 'This server requires a token to show workflows (401).'],
  unauthorized: ['Token refused', 'The server did not accept this token (401): paste another.'],
  expired: ['Token expired', 'Paste a new token: the live view resumes where it stopped, nothing is missed.'],
  refresh: ['Token expires soon', 'Paste a new token to stay connected without a gap.'],
  forbidden: ['Forbidden (403)', 'This token may not read workflows: paste one with the read scope.'],
  manual: ['New token', 'Paste a token to use from now on.'],
};

function paintForm() {
  const form = $('[data-testid="token-form"]');
  const reason = ask ? (ask.reason === 'unauthorized' && !ask.previous ? 'initial' : ask.reason) : form.dataset.manual ? 'manual' : '';
  /* 'refresh' turns into 'expired' once exp has passed without a new token */
  const shown = reason === 'refresh' && ask && expired(ask.previous) ? 'expired' : reason;
  form.hidden = !shown;
  form.dataset.reason = shown;
  /* no "create one" hint while the list is unknown for want of a token */
  document.body.classList.toggle('needs-token', ['initial', 'unauthorized', 'forbidden'].includes(shown));
  if (!shown) return;
  const [title, detail] = TEXT[shown] || TEXT.unauthorized;
  $('[data-testid="auth-title"]').textContent = title;
  $('[data-testid="auth-detail"]').textContent = detail;
}

/* Wires the form and the expiry chip; call once with the page's client. */
export function startTokenUi(c) {
  client = c;
  const form = $('[data-testid="token-form"]');
  const input = $('[data-testid="token-input"]');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    input.value = '';
    delete form.dataset.manual;
    use(t);
  });
  $('[data-testid="token-expiry"]').addEventListener('click', () => {
    form.dataset.manual = '1';
    paintForm();
    input.focus();
  });
  paintExpiry();
  setInterval(() => {
    paintExpiry();
    if (ask) paintForm();
  }, 1000);
}
