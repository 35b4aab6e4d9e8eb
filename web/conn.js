/* conn.js: the dashboard's retries while the server cannot be reached.
 * FlowcastClient tries every transport on every attempt (WebSocket, then
 * SSE, then long-poll: four failed requests, each a console error in the
 * browser, per attempt). Once two full rounds have failed the server is
 * most likely down, not picky about transports, so the gate stops the client
 * and waits with the same backoff, asking only GET /healthz each time (one
 * request per attempt); when that answers, the client connects again and
 * resumes every workflow from its last (epoch, seq) as after any reconnect.
 * Token questions and auth refusals never go through the gate. */
import { AuthError, ForbiddenError, backoffDelay } from './flowcast.js';

const ROUNDS_BEFORE_PROBING = 2;

export class ConnectionGate {
  /* onState: the page's state painter; it sees the client's states, and the
   * gate's own while probing (same shape: reconnecting, attempt, delay,
   * retryAt, trying). */
  constructor(client, onState) {
    this.client = client;
    this.out = onState;
    this.probing = false;
    this.stopping = false; /* the 'closed' the gate's own close() emits */
    this.attempt = 0;
    this.timer = 0;
  }

  /* The client's onState. */
  onState(s) {
    if (this.stopping) return;
    const down = s.state === 'reconnecting' && !s.trying && !s.waiting && s.attempt >= ROUNDS_BEFORE_PROBING &&
      !(s.error instanceof AuthError) && !(s.error instanceof ForbiddenError);
    if (!down) return this.out(s);
    this.stopping = true;
    this.client.close();
    this.stopping = false;
    this.probing = true;
    this.wait(s.attempt, s.error);
  }

  wait(attempt, error) {
    const delay = backoffDelay(attempt, this.client.backoff);
    this.attempt = attempt + 1;
    this.timer = setTimeout(() => this.probe(), delay);
    this.out({ state: 'reconnecting', transport: null, attempt: this.attempt, delay, retryAt: Date.now() + delay, error });
  }

  async probe() {
    this.timer = 0;
    this.out({ state: 'reconnecting', transport: null, attempt: this.attempt, trying: true });
    let error = null;
    try {
      await fetch(`${this.client.url}/healthz`, { cache: 'no-store', signal: AbortSignal.timeout(this.client.openTimeout) });
    } catch (e) {
      error = e;
    }
    if (!this.probing) return;
    if (error) return this.wait(this.attempt, error);
    /* Any answer: the server is back; the client takes over, its backoff
     * going on from here should the transports still fail. */
    this.probing = false;
    this.client.attempt = this.attempt;
    this.client.connect();
  }

  /* "Retry now": skips the wait, whoever is waiting. */
  retryNow() {
    if (!this.probing) return this.client.retryNow();
    if (!this.timer) return; /* a probe is running */
    clearTimeout(this.timer);
    this.probe();
  }
}
