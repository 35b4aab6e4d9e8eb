// Node.js `ws` broadcast peer for flowcast-bench (bench/compare.sh).
// Subscribers: WebSocket on GET /sub/<channel>. Publishers: POST /pub/<channel>
// with a body that is broadcast as one text message to that channel's
// subscribers, using the ws README's broadcast pattern (iterate the clients,
// send to those whose readyState is OPEN). The channel set is the only
// addition, so that several workflows can be served; with one channel it is
// exactly the documented `wss.clients.forEach` loop.
// Usage: node server.js PORT [HOST]
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 8002);
const host = process.argv[3] || '127.0.0.1';
const channels = new Map(); // channel -> Set of WebSocket

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || !req.url.startsWith('/pub/')) {
    res.writeHead(404, { 'Content-Length': '0' });
    res.end();
    return;
  }
  const channel = req.url.slice(5);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const data = Buffer.concat(chunks).toString('utf8');
    const clients = channels.get(channel);
    let n = 0;
    if (clients) {
      clients.forEach((client) => {
        if (client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: false });
          n++;
        }
      });
    }
    const body = JSON.stringify({ delivered: n });
    res.writeHead(202, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });

server.on('upgrade', (req, socket, head) => {
  if (!req.url.startsWith('/sub/')) {
    socket.destroy();
    return;
  }
  const channel = req.url.slice(5);
  wss.handleUpgrade(req, socket, head, (ws) => {
    let set = channels.get(channel);
    if (!set) {
      set = new Set();
      channels.set(channel, set);
    }
    set.add(ws);
    ws.on('error', () => {});
    ws.on('close', () => {
      set.delete(ws);
      if (set.size === 0) channels.delete(channel);
    });
  });
});

server.keepAliveTimeout = 600000;
server.maxConnections = 100000;
server.listen({ port, host, backlog: 1024 }, () => {
  process.stdout.write(`ws peer listening on ${host}:${port} (pid ${process.pid})\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
