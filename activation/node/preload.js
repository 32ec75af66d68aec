// corral's Node preload: a Node app written for `node server.js` or pm2
// runs under corral unchanged.
//
// corral's generator puts `--require` of this file into NODE_OPTIONS of a
// pool whose exec is node (node_preload in corral.toml(5) turns it on or
// off). In the instance's main process (the one LISTEN_PID names) it:
//
//   - serves a listen() of one of the pool's ports (or unix socket paths) on
//     the socket systemd passes, instead of binding it: listen(port),
//     listen(port, host), listen({port}), listen('5555'), through net, http,
//     https, express, fastify, koa… A listen() of any other port, or of
//     {fd}/{handle}, is left as it is.
//   - drains on SIGTERM the servers it mapped, as docs/workers.md says: stop
//     accepting, answer the requests in flight with "Connection: close",
//     close idle keep-alive connections, and exit before CORRAL_STOP_TIMEOUT.
//   - sets NODE_APP_INSTANCE as pm2 does: CORRAL_INSTANCE less 1.
//   - carries corral broadcast/send as cluster workers get messages: once
//     the app listens with process.on('message'), messages from the socket
//     named by CORRAL_MESSAGES are emitted there, and process.send(x)
//     answers them.
//
// It needs nothing but Node's own modules (Node 18 or later), and does
// nothing in any other process: child processes inherit NODE_OPTIONS but
// not the sockets.
'use strict';

(() => {
  const env = process.env;
  if (!env.LISTEN_PID || Number(env.LISTEN_PID) !== process.pid) return;

  const net = require('net');
  const log = (msg) => process.stderr.write(`corral: ${msg}\n`);

  // pm2's instance number, from 0, for apps that run a job on one instance
  // only (if (process.env.NODE_APP_INSTANCE === '0')).
  if (env.NODE_APP_INSTANCE === undefined && Number(env.CORRAL_INSTANCE) >= 1) {
    env.NODE_APP_INSTANCE = String(Number(env.CORRAL_INSTANCE) - 1);
  }

  // ---- listen: the pool's addresses, in the order of the fds ----------------

  // CORRAL_LISTEN lists the pool's listen addresses ("127.0.0.1:5555",
  // "[::1]:5555", ":5555", "/run/app.sock") in the order systemd passes
  // their sockets, from fd 3 (sd_listen_fds(3)).
  const count = Number(env.LISTEN_FDS) || 0;
  const slots = (env.CORRAL_LISTEN || '').split(' ').filter(Boolean).slice(0, count).map((addr, i) => {
    const slot = { addr, fd: 3 + i, used: false };
    if (addr.startsWith('/')) slot.path = addr;
    else slot.port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    return slot;
  });

  // wanted returns what a listen() call asks for, {port} or {path}, or null
  // for an fd, a handle, port 0 or no port.
  function wanted(args) {
    let a = args[0];
    if (a !== null && typeof a === 'object') {
      if (a.fd !== undefined || a.handle !== undefined || a._handle !== undefined) return null;
      if (a.port !== undefined && a.port !== null) a = a.port;
      else if (typeof a.path === 'string') return { path: a.path };
      else return null;
    }
    if (typeof a === 'number' || (typeof a === 'string' && /^[0-9]+$/.test(a))) {
      const port = Number(a);
      return port > 0 ? { port } : null;
    }
    if (typeof a === 'string' && a !== '') return { path: a };
    return null;
  }

  const matches = (want) => (s) => (want.port !== undefined ? s.port === want.port : s.path === want.path);

  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function corralListen(...args) {
    const want = wanted(args);
    const slot = want && slots.find((s) => !s.used && matches(want)(s));
    if (!slot) {
      if (want && slots.some(matches(want))) {
        // A second listen() of a port whose sockets are taken (fastify
        // listens on every address "localhost" resolves to). Binding it
        // here would compete with systemd's socket: this server gets no
        // socket, and says so.
        log(`listen(${show(want)}) again: the pool's socket for it is served by an earlier listen(); this one gets no connections`);
        return quiet(this, args);
      }
      return listen.apply(this, args);
    }
    // A socket once served is closed with its server: systemd keeps its
    // own copy, but this fd number is not it any more.
    slot.used = true;
    log(`listen(${show(want)}) is served on systemd's socket ${slot.addr} (fd ${slot.fd})`);
    track(this);
    const opts = { fd: slot.fd };
    if (args[0] && typeof args[0] === 'object' && args[0].signal) opts.signal = args[0].signal;
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    return cb ? listen.call(this, opts, cb) : listen.call(this, opts);
  };

  const show = (want) => (want.port !== undefined ? String(want.port) : JSON.stringify(want.path));

  // quiet makes server look as if it listened, without a socket: its
  // callback and 'listening' run, address() says the port asked for, and
  // close() works.
  function quiet(server, args) {
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    const want = wanted(args);
    server.address = () => (want.path !== undefined ? want.path : { address: '::', family: 'IPv6', port: want.port });
    Object.defineProperty(server, 'listening', { value: true, configurable: true });
    server.close = function (closed) {
      Object.defineProperty(server, 'listening', { value: false, configurable: true });
      process.nextTick(() => {
        server.emit('close');
        if (closed) closed();
      });
      return server;
    };
    if (cb) server.once('listening', cb);
    process.nextTick(() => server.emit('listening'));
    return server;
  }

  // ---- drain on SIGTERM --------------------------------------------------------

  // Go duration ("30s", "1m30s", "500ms") to milliseconds; NaN if malformed.
  function parseDuration(s) {
    const unit = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
    const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
    let ms = 0;
    let end = 0;
    for (let m; (m = re.exec(s)) !== null; end = re.lastIndex) ms += Number(m[1]) * unit[m[2]];
    return s && end === s.length ? ms : NaN;
  }
  const stopTimeout = parseDuration(env.CORRAL_STOP_TIMEOUT || '30s') || 30000;
  // The stop timeout less 10% of it or 1s, whichever is smaller: the
  // process exits on its own before systemd's SIGKILL.
  const budget = stopTimeout - Math.min(stopTimeout / 10, 1000);
  // How long a connection accepted before the stop has to send its first
  // request: it is answered, not dropped.
  const grace = Math.min(1000, budget / 2);

  // server -> { http, conns: Map(socket -> { requests, active: Set(res) }) }
  const servers = new Map();
  let draining = false;

  function track(server) {
    // First of the SIGTERM handlers, whenever the app adds its own.
    if (servers.size === 0) process.prependListener('SIGTERM', () => drain('SIGTERM'));
    const conns = new Map();
    // http and https servers; anything else only stops accepting, and its
    // connections end as the app's protocol ends them (or at the timeout).
    const http = typeof server.closeIdleConnections === 'function';
    servers.set(server, { http, conns });
    server.once('close', () => servers.delete(server));
    if (!http) return;
    const tls = typeof server.setSecureContext === 'function';
    server.on(tls ? 'secureConnection' : 'connection', (sock) => {
      conns.set(sock, { requests: 0, active: new Set() });
      sock.once('close', () => conns.delete(sock));
    });
    // Before the app's handler, which may answer at once.
    server.prependListener('request', (req, res) => {
      const c = conns.get(req.socket);
      if (c) {
        c.requests++;
        c.active.add(res);
        res.once('close', () => {
          c.active.delete(res);
          // Begun before the drain with keep-alive: the connection is idle
          // now; FIN, not RST, so the client reads the response first.
          if (draining && c.active.size === 0 && !req.socket.destroyed) req.socket.end();
        });
      }
      if (draining) res.setHeader('Connection', 'close');
    });
  }

  const exit = process.exit.bind(process);
  let exitCode = null; // what the app's own process.exit() asked for during the drain

  function drain(signal) {
    if (draining) return;
    draining = true;
    const started = Date.now();
    // An app whose SIGTERM handler calls process.exit() at once would drop
    // the requests in flight: its exit waits for the drain.
    process.exit = (code) => {
      if (exitCode === null) {
        exitCode = code ?? process.exitCode ?? 0;
        log(`process.exit(${exitCode}) waits for the drain`);
      }
    };
    let open = 0;
    for (const { conns } of servers.values()) open += conns.size;
    log(`${signal}: draining ${open} connection(s), up to ${budget} ms`);

    setTimeout(() => {
      let left = 0;
      for (const { conns } of servers.values()) {
        for (const sock of conns.keys()) {
          sock.destroy();
          left++;
        }
      }
      log(`drain timed out after ${budget} ms: closed ${left} connection(s)`);
      exit(1);
    }, budget).unref();

    const done = () => {
      log(`drained in ${Date.now() - started} ms`);
      process.exit = exit; // from now on the app's exit is its own
      // An app that handles SIGTERM itself finishes its own way (the timer
      // above still ends it in time), unless it already asked to exit;
      // otherwise this is the end.
      if (exitCode !== null) exit(exitCode);
      else if (process.listenerCount('SIGTERM') <= 1) exit(0);
    };
    let left = servers.size;
    if (left === 0) return done();
    for (const [server, { conns }] of servers) {
      // 'close' comes once every connection is closed. net.Server's close,
      // not http.Server's: since Node 19 that one also closes what it
      // counts as idle, which on some releases includes a connection whose
      // first request has not arrived yet (docs/workers.md).
      server.once('close', () => {
        if (--left === 0) done();
      });
      if (server.listening) net.Server.prototype.close.call(server);
      for (const [sock, c] of conns) {
        if (c.active.size > 0) {
          for (const res of c.active) if (!res.headersSent) res.setHeader('Connection', 'close');
        } else if (c.requests > 0) {
          sock.destroy(); // idle keep-alive: the client retries on a new connection
        }
      }
    }
    setTimeout(() => {
      for (const { conns } of servers.values()) {
        for (const [sock, c] of conns) if (c.requests === 0) sock.destroy();
      }
    }, grace).unref();
  }

  // ---- messages, as cluster workers get them -----------------------------------

  const path = env.CORRAL_MESSAGES;
  if (!path || typeof process.send === 'function') return; // not under corral, or a real IPC channel

  const MAX_WAIT = 5 * 60 * 1000; // corrald waits for a reply at most 5 minutes
  let sock = null;
  let current = null; // the message being emitted: a process.send() now answers it
  const pending = []; // { id, at } of messages not answered yet, oldest first

  let connecting = false;
  function start() {
    if (!connecting) {
      connecting = true;
      setImmediate(connect, 100);
    }
  }
  function onListener(event) {
    if (event !== 'message') return;
    process.removeListener('newListener', onListener);
    process.send = send;
    start();
  }
  process.on('newListener', onListener);
  // With a watchdog (docs/health.md), corrald pings the worker over the
  // message socket and kills it when no answer comes for that long: the
  // answer comes from the event loop, so a blocked loop is a hung worker.
  if (env.CORRAL_WATCHDOG) start();

  // process.send answers the message being handled, or else the oldest one
  // not answered yet: a string as it is, anything else as JSON.
  function send(msg, ...rest) {
    const cb = typeof rest[rest.length - 1] === 'function' ? rest[rest.length - 1] : null;
    let id = current;
    current = null;
    while (id === null && pending.length > 0) {
      const p = pending.shift();
      if (Date.now() - p.at < MAX_WAIT) id = p.id;
    }
    if (id !== null && sock) {
      const reply = typeof msg === 'string' ? msg : JSON.stringify(msg) ?? String(msg);
      sock.write(JSON.stringify({ id, reply }) + '\n');
    }
    if (cb) process.nextTick(cb, null);
    return true;
  }

  // deliver emits one message: parsed when it is a JSON object or array (as
  // cluster code expects {cmd: …}), else the text.
  function deliver(m) {
    const text = typeof m.message === 'string' ? m.message : '';
    let value = text;
    if (/^\s*[[{]/.test(text)) {
      try {
        value = JSON.parse(text);
      } catch {
        value = text;
      }
    }
    current = m.id;
    try {
      process.emit('message', value, undefined);
    } catch (err) {
      current = null;
      log(`a 'message' handler threw: ${err && err.stack ? err.stack : err}`);
      sock.write(JSON.stringify({ id: m.id, error: String(err) }) + '\n');
    }
    if (current === m.id) {
      pending.push({ id: m.id, at: Date.now() });
      if (pending.length > 1000) pending.shift();
    }
    current = null;
  }

  // connect keeps one connection to corrald's message socket, reconnecting
  // with a backoff (docs/messages.md). It never keeps the process alive.
  function connect(delay) {
    const s = net.createConnection(path);
    s.unref();
    s.setEncoding('utf8');
    let buf = '';
    let since = 0;
    let refused = false;
    s.on('connect', () => {
      since = Date.now();
      sock = s;
    });
    s.on('data', (chunk) => {
      const lines = (buf + chunk).split('\n');
      buf = lines.pop();
      for (const line of lines) {
        let m;
        try {
          m = JSON.parse(line);
        } catch {
          continue;
        }
        if (m === null || typeof m !== 'object') continue;
        if (!m.id) {
          if (m.error) {
            refused = true;
            log(`messages: refused by corrald: ${m.error}`);
          }
          continue;
        }
        if (m.reply !== undefined || m.error !== undefined) continue;
        if (m.ping === true) {
          s.write(JSON.stringify({ id: m.id, reply: 'pong' }) + '\n');
          continue;
        }
        deliver(m);
      }
    });
    s.on('error', () => {}); // corrald is down or went away: 'close' follows
    s.on('close', () => {
      if (sock === s) sock = null;
      pending.length = 0;
      const lived = since ? Date.now() - since : 0;
      const wait = refused ? 5000 : lived > 10000 ? 100 : delay;
      setTimeout(connect, wait, Math.min(wait * 2, 5000)).unref();
    });
  }
})();
