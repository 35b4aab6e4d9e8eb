// Expiring tokens in Node (issue 9's contract): the server ends each stream
// at its token's exp (WebSocket close 4401 after a refresh in place, SSE
// `event: error` token_expired on the fetch-based EventSource, long-poll 401);
// flowcast.js asks its token function again and resumes by (epoch, seq):
// every change once, in order.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { WebSocket as WsWebSocket } from 'ws';
import { FlowcastClient } from '../flowcast.js';
import { Server, WORK, sleep, until } from '../../../tests/node/server.mjs';

const ADMIN = 'node-expiry-admin-token';
const TTL = 2; /* seconds: each test outlives two or three tokens */
let server, keyFile;

function mintJwt(ttl) {
  const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ scope: 'read', iat: now, exp: now + ttl })}`;
  return `${head}.${crypto.createHmac('sha256', fs.readFileSync(keyFile)).update(head).digest('base64url')}`;
}

async function patch(id, fields) {
  const r = await fetch(`${server.url}/api/workflows/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN}` },
    body: JSON.stringify(fields),
  });
  assert.equal(r.status, 200);
  return r.json();
}

before(async () => {
  keyFile = path.join(WORK, 'jwt.key');
  fs.writeFileSync(keyFile, crypto.randomBytes(24).toString('hex'), { mode: 0o600 });
  server = await Server.start({ args: ['--jwt-key', keyFile, '--api-token', ADMIN] });
});
after(async () => { await server.stop(); });

for (const transport of ['websocket', 'sse', 'longpoll']) {
  test(`${transport}: tokens expiring mid-stream are renewed through the function, every change once`, async () => {
    const id = `node-exp-${transport}`;
    const r = await fetch(`${server.url}/api/workflows`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ id, name: id, total_steps: 1000 }),
    });
    assert.equal(r.status, 201);
    const seen = [];
    const reasons = [];
    const c = new FlowcastClient({
      url: server.url, transports: [transport], WebSocket: WsWebSocket, pollInterval: 300,
      backoff: { initial: 50, max: 500 },
      token: ({ reason }) => { reasons.push(reason); return mintJwt(TTL); },
      onUpdate: (u) => seen.push(u.seq),
    });
    c.subscribe([id]);
    try {
      await until(() => c.state === 'open' && seen.length === 1);
      let last = 1;
      for (const end = Date.now() + 3 * TTL * 1000; Date.now() < end; await sleep(200)) {
        last = (await patch(id, { current_step: last })).seq;
      }
      await until(() => seen.at(-1) === last, () => JSON.stringify({ seen, reasons }));
      await sleep(300);
      assert.deepEqual(seen, Array.from({ length: last }, (_, i) => i + 1));
      assert.equal(reasons[0], 'initial');
      assert.ok(reasons.length >= 3, `asked again as tokens ran out: ${reasons}`);
    } finally {
      c.close();
    }
  });
}
