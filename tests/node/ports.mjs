// Free loopback ports for the servers the Node-run tests start. Not
// listen(0): that hands out an ephemeral port, and a test holds its port
// unbound for a while (a server killed and restarted on it, a failover
// target started later, a URL where nothing listens), during which any
// connect() on the machine may take it as its local port (the client's own
// reconnect included: a TCP self-connect) or another test's listen(0) may
// take it. So the ports come from below the ephemeral range: from
// FLOWCAST_TEST_PORTS ("lo-hi", end excluded; the e2e suite passes its
// xdist worker's range, see tests/e2e/fc_helpers.py), else from 10000 up to
// the ephemeral range; handed out in turn from a place given by the pid.
import fs from 'node:fs';
import net from 'node:net';

function range() {
  const m = /^(\d+)-(\d+)$/.exec(process.env.FLOWCAST_TEST_PORTS || '');
  if (m && Number(m[2]) > Number(m[1])) return [Number(m[1]), Number(m[2])];
  let ephemeral = 32768;
  try {
    ephemeral = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]) || ephemeral;
  } catch {
    /* not Linux: the usual start of the range */
  }
  return [10000, Math.max(ephemeral, 12000)];
}

const [LO, HI] = range();
let next = LO + (process.pid % (HI - LO));

function canListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export async function freePort() {
  for (let i = 0; i < HI - LO; i++) {
    const port = next;
    next = LO + ((next + 1 - LO) % (HI - LO));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${LO}-${HI}`);
}
