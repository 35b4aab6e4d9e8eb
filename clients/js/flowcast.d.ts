// Type declarations of flowcast.js (the module and its package `flowcast`).
// Units: every duration is in milliseconds unless it says seconds; `epoch`
// and `seq` are integers (epoch below 2^53, exact as a number); times in
// messages are RFC 3339 UTC strings with milliseconds.

/** A workflow's status; the last three are terminal (no change follows). */
export type WorkflowStatus = 'pending' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

/** The workflow object of the REST API. */
export interface Workflow {
  /** `[A-Za-z0-9_-]{1,64}` */
  id: string;
  /** One incarnation of the id: another one after a delete and re-create. */
  epoch: number;
  name: string;
  status: WorkflowStatus;
  current_step: number;
  total_steps: number;
  message: string;
  /** 1 on create, +1 per change, within the epoch. */
  seq: number;
  /** RFC 3339 UTC, e.g. "2026-11-27T05:00:00.000Z" */
  created_at: string;
  /** RFC 3339 UTC: the commit time of change `seq` */
  updated_at: string;
}

/** A change of a workflow, as the streams deliver it. */
export interface ProgressUpdate {
  workflow_id: string;
  /** Absent only from servers older than epochs. */
  epoch?: number;
  status: WorkflowStatus;
  current_step: number;
  total_steps: number;
  message: string;
  /** RFC 3339 UTC */
  timestamp: string;
  seq: number;
  /** The workflow's name, whether the update came on a stream or from a REST
   * answer; absent only from servers older than names in updates. */
  name?: string;
  /** Replaces a history that could not be replayed (log retention, a
   * re-created workflow): show this state, do not continue the old one. */
  resync?: true;
  deleted?: undefined;
}

/** A workflow's deletion (or its disappearance found out by a list). */
export interface DeletionUpdate {
  workflow_id: string;
  epoch?: number;
  deleted: true;
  seq: number;
  /** RFC 3339 UTC */
  timestamp: string;
}

export type Update = ProgressUpdate | DeletionUpdate;

export type TransportName = 'websocket' | 'sse' | 'longpoll';

/** The second argument of onUpdate. */
export interface UpdateMeta {
  /** The transport in use when it arrived (null between connections). */
  transport: TransportName | null;
  /** The full workflow object, when the update came from a REST answer. */
  workflow?: Workflow;
}

/** What onState is told; every field but `state` may be absent. */
export interface ConnectionState {
  state: 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
  /** The transport being tried ('connecting') or open ('open'). */
  transport: TransportName | null;
  /** The server base URL in use (the one tried next while reconnecting). */
  url: string;
  /** Backoff waits since the last open (0 on the first try). */
  attempt: number;
  /** 'reconnecting': the wait before the next round, ms. */
  delay?: number;
  /** 'reconnecting': when the next round starts, Unix time in ms. */
  retryAt?: number;
  /** 'reconnecting' while the token function is asked for a new token. */
  waiting?: 'token';
  /** A transport is being tried (not open yet). */
  trying?: boolean;
  /** Why the connection was lost or could not open. */
  error?: Error;
}

/** Why the token function is asked. */
export type TokenReason = 'initial' | 'refresh' | 'expired' | 'unauthorized' | 'forbidden';

/** A token function: returns the token to use (null or '' = none). */
export type TokenFunction = (ctx: { reason: TokenReason; previous: string | null }) =>
  string | null | undefined | Promise<string | null | undefined>;

/** Backoff bounds: retry n waits a random time in [0, min(max, initial * 2^n)] ms. */
export interface Backoff {
  /** ms, default 100 */
  initial?: number;
  /** ms, default 30000 */
  max?: number;
}

/** A WebSocket constructor (the browser's, Node's, or the `ws` package's). */
export type WebSocketConstructor = new (url: string) => any;
/** An EventSource constructor. */
export type EventSourceConstructor = new (url: string) => any;

export interface FlowcastOptions {
  /** Server base URL, default the page's origin. Several: an array or a
   * comma-separated string; a failed or lost connection moves to the next
   * (round robin), resuming by (epoch, seq); backoff once per full round. */
  url?: string | string[];
  /** Order of transports to try, default TRANSPORTS; ones with no
   * constructor here are left out. */
  transports?: TransportName[];
  /** Default globalThis.WebSocket (Node 20: pass `ws`'s WebSocket). */
  WebSocket?: WebSocketConstructor;
  /** Default globalThis.EventSource, else one on fetch (Node). */
  EventSource?: EventSourceConstructor;
  /** Every change once, in order per workflow (deduplicated by epoch and seq). */
  onUpdate?: (update: Update, meta: UpdateMeta) => void;
  /** Connection state changes. */
  onState?: (state: ConnectionState) => void;
  /** Non-fatal problems: an unknown workflow id, a ForbiddenError naming a
   * workflow whose subscription ended, a refused token refresh. */
  onError?: (err: Error) => void;
  /** Reconnect backoff, ms (default {initial: 100, max: 30000}). */
  backoff?: Backoff;
  /** Backoff waits before giving up ('closed'), default Infinity. */
  maxRetries?: number;
  /** ms a transport may take to open, default 5000. */
  openTimeout?: number;
  /** ms between list polls on SSE and long-poll (new and deleted workflows), default 3000. */
  pollInterval?: number;
  /** SECONDS one long-poll request waits, default 25, at most 60. */
  longPollTimeout?: number;
  /** Concurrent long-poll requests, default 4. */
  maxWaiters?: number;
  /** ms on a fallback transport before checking whether a better one works
   * again, default 10000 (doubling up to 300000). */
  upgradeDelay?: number;
  /** A token string, or a function asked for one (sync or async). */
  token?: string | null | TokenFunction;
  /** Where the WebSocket carries the token: 'query' (access_token on the
   * URL, default) or 'message' (the first message, {"op":"auth"}). */
  wsAuth?: 'query' | 'message';
  /** ms before the JWT's exp to refresh it in place on the WebSocket,
   * default a quarter of its life, between 1000 and 30000. */
  refreshMargin?: number;
  /** Resends of a change whose answer was lost (or, with several URLs,
   * that a gateway answered 502/503/504: to the next URL), default 4. */
  requestRetries?: number;
  /** Waits between those resends, ms (default {initial: 100, max: 2000}). */
  requestBackoff?: Backoff;
  /** Connect on the first subscribe, default true. */
  autoConnect?: boolean;
}

/** A position to resume from: {epoch, seq}, or a bare seq (epoch unknown). */
export type Position = { epoch?: number | null; seq: number } | number;

/** Options of one request. */
export interface RequestOptions {
  /** The Idempotency-Key of a change, default a new random one. */
  idempotencyKey?: string;
  /** Resends when the answer is lost (default requestRetries for changes, 0 for GET). */
  retries?: number;
}

/** Fields of POST /api/workflows. */
export interface CreateFields {
  id?: string;
  name: string;
  total_steps: number;
  status?: WorkflowStatus;
  current_step?: number;
  message?: string;
}

/** Fields of PATCH /api/workflows/{id}: at least one of the first four. */
export interface UpdateFields {
  status?: WorkflowStatus;
  current_step?: number;
  total_steps?: number;
  message?: string;
  /** Applied only when the workflow's seq is this (else 409). */
  if_seq?: number;
}

export interface WorkflowList {
  workflows: Workflow[];
  next_cursor: string | null;
}

export interface History {
  workflow_id: string;
  epoch: number;
  events: ProgressUpdate[];
  /** The oldest seq still logged (0: empty log). */
  oldest_seq: number;
  /** The position was not of this incarnation: events start at its beginning. */
  resync?: true;
}

export class FlowcastClient {
  constructor(opts?: FlowcastOptions);
  /** Every server base URL, in order. */
  readonly urls: string[];
  /** The base URL in use. */
  readonly url: string;
  readonly transports: TransportName[];
  readonly state: ConnectionState['state'];
  /** The open transport, or null. */
  readonly transport: TransportName | null;
  /** Backoff waits since the last open. */
  readonly attempt: number;
  /** The token in force (null: none; undefined: not asked for yet). */
  readonly token: string | null | undefined;
  onUpdate: NonNullable<FlowcastOptions['onUpdate']>;
  onState: NonNullable<FlowcastOptions['onState']>;
  onError: NonNullable<FlowcastOptions['onError']>;

  /** Uses `token` from now on (REST at once, the WebSocket in place). */
  setToken(token: string | null): void;
  /** Follows these workflows; `since` maps id to where to resume. */
  subscribe(ids: string | string[], since?: Record<string, Position>): void;
  unsubscribe(ids: string | string[]): void;
  /** Follows every workflow, including those created later. */
  subscribeAll(): void;
  /** The ids the current transport follows. */
  followed(): Set<string>;
  /** The last seq delivered of id's current incarnation. */
  lastSeq(id: string): number | undefined;
  /** The last position delivered of id (undefined when none or deleted). */
  position(id: string): { epoch: number | null; seq: number } | undefined;
  connect(): void;
  /** Ends a backoff wait now. */
  retryNow(): void;
  /** Ends every stream and timer; state 'closed'. */
  close(): void;

  /** Every page of the list, newest first (at most maxPages of pageSize). */
  listAll(opts?: { status?: WorkflowStatus; pageSize?: number; maxPages?: number }, signal?: AbortSignal):
    Promise<{ workflows: Workflow[]; complete: boolean }>;
  /** One REST request; parsed JSON answer (null for 204). Throws HttpError,
   * AuthError (401), ForbiddenError (403), or fetch's error. */
  request(method: string, path: string, body?: unknown, signal?: AbortSignal, opts?: RequestOptions): Promise<any>;
  list(opts?: { status?: WorkflowStatus; limit?: number; cursor?: string | null }, signal?: AbortSignal): Promise<WorkflowList>;
  get(id: string, signal?: AbortSignal): Promise<Workflow>;
  history(id: string, opts?: { since?: number; epoch?: number | null; limit?: number }, signal?: AbortSignal): Promise<History>;
  create(fields: CreateFields, opts?: RequestOptions): Promise<Workflow>;
  update(id: string, fields: UpdateFields, opts?: RequestOptions): Promise<Workflow>;
  remove(id: string, opts?: RequestOptions): Promise<null>;
}

/** A non-2xx answer; `code` is the error body's code ("not_found", ...). */
export class HttpError extends Error {
  constructor(status: number, body?: unknown);
  status: number;
  code: string | undefined;
}

/** 401 or a stream ended for its token; code 'token_expired' or 'unauthorized'. */
export class AuthError extends HttpError {
  constructor(status?: number, body?: unknown);
}

/** 403: the token may not do this; `workflowId` names the workflow whose
 * subscription ended, null when the token may not read at all. */
export class ForbiddenError extends HttpError {
  constructor(status?: number, body?: unknown, workflowId?: string | null);
  code: 'forbidden';
  workflowId: string | null;
}

/** The terminal statuses. */
export const TERMINAL: Set<WorkflowStatus>;
/** Every transport, best first. */
export const TRANSPORTS: TransportName[];

/** A JWT's `exp` claim (Unix SECONDS), unverified; null for other tokens. */
export function jwtExp(token: string | null | undefined): number | null;
/** The wait before retry `attempt` (0-based), ms: random in [0, min(max, initial * 2^attempt)]. */
export function backoffDelay(attempt: number, backoff?: Backoff, random?: () => number): number;
/** A new Idempotency-Key: 32 hex digits (128 random bits). */
export function newIdempotencyKey(): string;
/** The server base URLs in `url` (array or comma-separated string). Throws TypeError when none. */
export function serverUrls(url: string | string[]): string[];
/** The update message for a REST workflow object. */
export function workflowToUpdate(w: Workflow): ProgressUpdate;
