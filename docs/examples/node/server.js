#!/usr/bin/node
// A corral worker in plain Node (18.2 or later, no npm packages).
//
// Under corral it serves on the socket systemd passes as fd 3; run by hand
// (`node server.js`) it listens on $PORT, or 8080. On SIGTERM it drains:
// it stops accepting, answers every request on the connections it has
// accepted, with "Connection: close", closes idle keep-alive connections and
// exits before CORRAL_STOP_TIMEOUT, after which systemd would SIGKILL it.
//
// Readiness: Node cannot send a datagram to a unix socket (dgram is UDP
// only), and only the main process may notify (NotifyAccess=main), so a
// `systemd-notify` child would not count. Run this worker with readiness =
// "simple" (the default): the socket belongs to systemd and is listening
// before the worker starts, so connections that arrive while Node loads wait
// in the kernel's queue; nothing is refused. See docs/workers.md.
//
//   GET /           hello from node instance N, pid P
//   GET /slow?ms=N  the same after N milliseconds (at most 60000)
//   GET /cpu?ms=N   the same after N ms of CPU time (at most 10000), spent in
//                   pbkdf2Sync with the event loop blocked: a CPU-bound handler
'use strict';

const http = require('http');
const net = require('net');

const instance = process.env.CORRAL_INSTANCE || '-';
const log = (msg) => console.log(msg); // stdout goes to the journal, tagged POOL@N

// ---- the application --------------------------------------------------------

function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const hello = `hello from node instance ${instance}, pid ${process.pid}\n`;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(res, 405, 'method not allowed\n');
  }
  switch (url.pathname) {
    case '/':
      return send(res, 200, hello);
    case '/slow': {
      const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), 60000);
      const timer = setTimeout(() => send(res, 200, hello), ms);
      res.on('close', () => clearTimeout(timer)); // the client went away
      return;
    }
    case '/cpu': {
      // Small pbkdf2 steps (~0.1 ms each) until this process has used N ms
      // of CPU time (process.cpuUsage: user + system), not wall time: a
      // preempted worker still does N ms of work per request.
      const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), 10000);
      const crypto = require('crypto');
      const start = process.cpuUsage();
      for (let used = 0; used < ms * 1000; ) {
        crypto.pbkdf2Sync('corral', 'salt', 100, 32, 'sha256');
        const d = process.cpuUsage(start);
        used = d.user + d.system;
      }
      return send(res, 200, hello);
    }
    default:
      return send(res, 404, 'not found\n');
  }
}

function send(res, status, body) {
  if (res.destroyed) return;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

// ---- corral: socket, drain ----------------------------------------------------

// Go duration ("30s", "1m30s", "500ms") to milliseconds; NaN if malformed.
function parseDuration(s) {
  const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let ms = 0;
  let m;
  let end = 0;
  while ((m = re.exec(s)) !== null) {
    ms += Number(m[1]) * unit[m[2]];
    end = re.lastIndex;
  }
  return s && end === s.length ? ms : s === '0' ? 0 : NaN;
}

const stopTimeout = parseDuration(process.env.CORRAL_STOP_TIMEOUT || '30s') || 30000;
// Drain until the stop timeout less 10% of it or 1s, whichever is smaller,
// so the process exits on its own before systemd's SIGKILL.
const drainBudget = stopTimeout - Math.min(stopTimeout / 10, 1000);
// How long a connection accepted before the stop has to send its first
// request: it is answered, not dropped.
const newConnGrace = Math.min(1000, drainBudget / 2);

// The socket from systemd (sd_listen_fds(3)): fd 3, if LISTEN_PID is us.
function inheritedFd() {
  const fds = Number(process.env.LISTEN_FDS);
  const pid = process.env.LISTEN_PID;
  if (!(fds >= 1) || (pid && Number(pid) !== process.pid)) return null;
  // Children started later must not take the socket for theirs.
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDNAMES;
  return 3;
}

let draining = false;
const conns = new Map(); // socket -> { requests: count, active: Set of responses }

const server = http.createServer((req, res) => {
  const c = conns.get(req.socket);
  if (c) {
    c.requests++;
    c.active.add(res);
    res.on('close', () => {
      c.active.delete(res);
      // A response begun before the drain went out with keep-alive: the
      // connection is idle now, close it (FIN, not RST: the client reads
      // the response first).
      if (draining && c.active.size === 0 && !req.socket.destroyed) req.socket.end();
    });
  }
  if (draining) res.setHeader('Connection', 'close');
  handle(req, res);
});

server.on('connection', (sock) => {
  conns.set(sock, { requests: 0, active: new Set() });
  sock.on('close', () => conns.delete(sock));
});

server.on('error', (err) => {
  console.error(`server error: ${err.message}`);
  process.exit(1);
});

const fd = inheritedFd();
const where = fd !== null ? { fd } : { port: Number(process.env.PORT) || 8080 };
server.listen(where, () => {
  log(`node instance ${instance} (pid ${process.pid}) serving on ${fd !== null ? 'fd 3 from systemd' : 'port ' + where.port}`);
});

function drain(signal) {
  if (draining) return;
  draining = true;
  const started = Date.now();
  log(`${signal}: draining ${conns.size} connection(s), up to ${drainBudget} ms`);

  // Past the budget: close what is left and exit before the SIGKILL.
  setTimeout(() => {
    log(`drain timed out after ${drainBudget} ms: closing ${conns.size} connection(s)`);
    server.closeAllConnections();
    process.exit(1);
  }, drainBudget).unref();

  // Stop accepting: close our fd of the listening socket. systemd keeps its
  // copy: other instances go on accepting, and connections for this instance's
  // socket wait in the kernel's queue for the next instance. The callback runs
  // once every connection is closed.
  //
  // net.Server's close, not http.Server's: since Node 19 that one also calls
  // closeIdleConnections(), and what it counts as idle depends on the Node
  // release. Newer ones (nodejs/node#63470) include connections accepted
  // whose request has not arrived yet: a client that connected just before
  // the stop would get its connection closed without an answer. So this
  // server closes connections itself, below, from what it has seen on each.
  net.Server.prototype.close.call(server, () => {
    log(`drained in ${Date.now() - started} ms, exiting`);
    process.exit(0);
  });

  for (const [sock, c] of conns) {
    if (c.active.size > 0) {
      // In flight: answered, then closed (Connection: close if the head is
      // not written yet, else by the 'close' handler above).
      for (const res of c.active) {
        if (!res.headersSent) res.setHeader('Connection', 'close');
      }
    } else if (c.requests > 0) {
      sock.destroy(); // idle keep-alive: the client retries on a new connection
    }
  }
  // Connections accepted that have not sent a request yet get a moment to
  // send it; the answer carries Connection: close.
  setTimeout(() => {
    for (const [sock, c] of conns) {
      if (c.requests === 0) sock.destroy();
    }
  }, newConnGrace).unref();
}

process.on('SIGTERM', () => drain('SIGTERM'));
process.on('SIGINT', () => drain('SIGINT'));

// ---- corral: messages ---------------------------------------------------------

// `corral send POOL@N TEXT` and `corral broadcast POOL TEXT` reach the worker
// over the unix socket named by CORRAL_MESSAGES, as JSON lines
// (docs/messages.md): {"id":…,"message":…} in, one {"id":…,"reply":…} (or
// "error") out per message, in order; texts up to 64 KiB. corrald keeps the
// connection across its own restarts; if it closes, connect again.

function onMessage(text) {
  return `node instance ${instance} got ${JSON.stringify(text)}`;
}

function serveMessages(path, delay = 100) {
  const sock = net.createConnection(path);
  let buf = '';
  let since = 0; // when connected
  let refused = false;
  sock.setEncoding('utf8');
  sock.on('connect', () => { since = Date.now(); log('messages: connected to corrald'); });
  sock.on('data', (chunk) => {
    const lines = (buf + chunk).split('\n');
    buf = lines.pop(); // unfinished: the rest comes next, or never (then dropped)
    for (const line of lines) {
      let m;
      try { m = JSON.parse(line); } catch { continue; } // not JSON: ignored
      if (m === null || typeof m !== 'object') continue;
      if (!m.id) { // corrald refuses the connection, then closes it
        if (m.error) { refused = true; log(`messages: refused by corrald: ${m.error}`); }
        continue;
      }
      if (m.reply || m.error) continue; // an answer, not a message
      const answer = { id: m.id };
      // (an empty message comes without "message")
      try { answer.reply = onMessage(m.message ?? ''); } catch (err) { answer.error = String(err); }
      sock.write(JSON.stringify(answer) + '\n');
    }
  });
  sock.on('error', () => {}); // corrald is down or went away: 'close' follows
  sock.on('close', () => {
    if (since) log('messages: connection lost, reconnecting');
    // Wait 100 ms doubling up to 5 s; 100 ms again after a connection that
    // lived; 5 s after a refusal.
    const lived = since ? Date.now() - since : 0;
    const wait = refused ? 5000 : lived > 10000 ? 100 : delay;
    setTimeout(serveMessages, wait, path, Math.min(wait * 2, 5000));
  });
}

if (process.env.CORRAL_MESSAGES) serveMessages(process.env.CORRAL_MESSAGES);
