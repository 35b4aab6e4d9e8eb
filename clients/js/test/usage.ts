// Compiled (never run) by types.test.mjs with tsc --strict: every public
// function, option, event and error of flowcast.js used as its README
// shows, so flowcast.d.ts cannot fall behind without this failing.
import {
  AuthError, FlowcastClient, ForbiddenError, HttpError, TERMINAL, TRANSPORTS, backoffDelay, jwtExp,
  newIdempotencyKey, serverUrls, workflowToUpdate,
  type ConnectionState, type Update, type UpdateMeta, type Workflow,
} from 'flowcast';

const states: ConnectionState[] = [];
const fc = new FlowcastClient({
  url: ['http://127.0.0.1:8001', 'http://127.0.0.1:8002'],
  transports: ['websocket', 'longpoll'],
  onUpdate(u: Update, meta: UpdateMeta) {
    if (u.deleted) {
      const gone: true = u.deleted;
      void gone;
      return;
    }
    const pct: number = u.total_steps ? u.current_step / u.total_steps : 0;
    const done: boolean = TERMINAL.has(u.status);
    const name: string | undefined = meta.workflow?.name ?? u.name;
    void [pct, done, name, u.resync === true, meta.transport];
  },
  onState(s) {
    states.push(s);
    if (s.state === 'reconnecting' && s.delay != null && s.retryAt != null) void (s.retryAt - Date.now());
    void s.url.length;
  },
  onError(e) {
    if (e instanceof ForbiddenError) void e.workflowId;
    else if (e instanceof AuthError) void e.code;
    else if (e instanceof HttpError) void e.status;
  },
  backoff: { initial: 100, max: 30000 },
  maxRetries: Infinity,
  openTimeout: 5000,
  pollInterval: 3000,
  longPollTimeout: 25,
  maxWaiters: 4,
  upgradeDelay: 10000,
  token: async ({ reason, previous }) => (reason === 'initial' ? 'tok' : previous),
  wsAuth: 'message',
  refreshMargin: 30000,
  requestRetries: 4,
  requestBackoff: { initial: 100, max: 2000 },
  autoConnect: true,
});
new FlowcastClient({ url: 'http://a:1,http://b:2', token: 'static' });
new FlowcastClient();

fc.subscribe(['a', 'b'], { a: { epoch: 7, seq: 3 }, b: 4 });
fc.subscribe('c');
fc.unsubscribe('c');
fc.subscribeAll();
const ids: Set<string> = fc.followed();
const seq: number | undefined = fc.lastSeq('a');
const pos = fc.position('a');
if (pos) void (pos.seq + (pos.epoch ?? 0));
fc.setToken('other');
fc.setToken(null);
const tok: string | null | undefined = fc.token;
void [ids, seq, tok, fc.url, fc.urls, fc.state, fc.transport, fc.attempt, fc.transports];
fc.connect();
fc.retryNow();

async function rest(): Promise<void> {
  const w: Workflow = await fc.create({ name: 'build', total_steps: 10 }, { idempotencyKey: newIdempotencyKey() });
  const w2: Workflow = await fc.update(w.id, { current_step: 2, if_seq: w.seq }, { retries: 2 });
  const got: Workflow = await fc.get(w2.id);
  const page = await fc.list({ status: 'running', limit: 50, cursor: null });
  const next: string | null = page.next_cursor;
  const all = await fc.listAll({ pageSize: 500, maxPages: 2 }, new AbortController().signal);
  const h = await fc.history(got.id, { since: 1, epoch: got.epoch, limit: 100 });
  const first: number | undefined = h.events[0]?.seq;
  const raw: unknown = await fc.request('GET', '/api/workflows', undefined, undefined, { retries: 1 });
  const none: null = await fc.remove(w.id);
  void [next, all.complete, all.workflows, first, h.oldest_seq, raw, none, workflowToUpdate(got).seq];
}
void rest;

const delay: number = backoffDelay(3, { initial: 100, max: 30000 }, Math.random);
const exp: number | null = jwtExp('a.b.c');
const urls: string[] = serverUrls('http://a:1,http://b:2');
const names: string[] = TRANSPORTS;
void [delay, exp, urls, names];
fc.close();
