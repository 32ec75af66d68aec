#!/usr/bin/python3
"""A corral worker in plain Python (3.11 standard library only).

Under corral it serves on the socket systemd passes as fd 3 and sends READY=1
to $NOTIFY_SOCKET (readiness = "notify"); run by hand (`python3 server.py`) it
listens on $PORT, or 8080. On SIGTERM it drains: it sends STOPPING=1, stops
accepting, answers every request on the connections it has accepted, with
"Connection: close", closes idle keep-alive connections and exits before
CORRAL_STOP_TIMEOUT, after which systemd would SIGKILL it.

    GET /           hello from python instance N, pid P
    GET /slow?ms=N  the same after N milliseconds (at most 60000)
"""

import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse

INSTANCE = os.environ.get("CORRAL_INSTANCE", "-")


def log(msg):
    # stderr goes to the journal, tagged POOL@N
    print(msg, file=sys.stderr, flush=True)


# ---- the application --------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "corral-example"
    timeout = 75  # an idle keep-alive connection is closed after this

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        hello = "hello from python instance %s, pid %d\n" % (INSTANCE, os.getpid())
        if url.path == "/":
            self.send(200, hello)
        elif url.path == "/slow":
            try:
                ms = int(urllib.parse.parse_qs(url.query).get("ms", ["0"])[0])
            except ValueError:
                ms = 0
            time.sleep(min(max(ms, 0), 60000) / 1000)
            self.send(200, hello)
        else:
            self.send(404, "not found\n")

    def do_HEAD(self):
        self.do_GET()

    def send(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining:
            # also sets self.close_connection: the client goes elsewhere
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ---- corral: connection states for the drain ----

    def parse_request(self):
        # The request line is read: this connection has a request in flight.
        self.server.conn_state(self.connection, ACTIVE)
        return super().parse_request()

    def handle_one_request(self):
        super().handle_one_request()
        if not self.close_connection and not self.server.idle(self.connection):
            self.close_connection = True  # answered before the drain began

    def address_string(self):
        # client_address is '' on a unix socket
        return self.client_address[0] if self.client_address else "unix"

    def log_request(self, code="-", size="-"):
        pass  # no access log; errors still go to log_message


# ---- corral: socket, readiness, drain ---------------------------------------

NEW, ACTIVE, IDLE = "new", "active", "idle"


def parse_duration(s):
    """A Go duration ("30s", "1m30s", "500ms") in seconds, or None."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    if s == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def sd_notify(state):
    """Send state to the service manager (sd_notify(3)); False without
    NOTIFY_SOCKET. Only the main process counts (NotifyAccess=main), so call
    it from this process, not a child."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(5)  # never hang on a busy service manager
        s.connect(addr)
        s.sendall(state.encode())
    return True


def inherited_socket():
    """The socket from systemd (sd_listen_fds(3)): fd 3, if LISTEN_PID is us."""
    fds, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    if not fds or int(fds) < 1 or (pid and int(pid) != os.getpid()):
        return None
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)  # children must not take the socket for theirs
    sock = socket.socket(fileno=3)  # family and type read from the fd
    sock.set_inheritable(False)
    return sock


class Server(http.server.ThreadingHTTPServer):
    # server_close() joins the handler threads: in-flight requests finish.
    daemon_threads = False
    block_on_close = True

    def __init__(self, sock, port):
        # socketserver makes a socket of its own before we can hand it ours;
        # under corral's sandbox that throwaway TCP socket is allowed and
        # reaches nothing.
        super().__init__(("", port), Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
        self.draining = False
        self.lock = threading.Lock()
        self.conns = {}  # socket -> NEW, ACTIVE or IDLE

    # Runs in the accepting thread, before the handler thread starts: every
    # accepted connection is known once serve_forever has returned.
    def process_request(self, request, client_address):
        with self.lock:
            self.conns[request] = NEW
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.lock:
            self.conns.pop(request, None)
        super().shutdown_request(request)

    def conn_state(self, conn, state):
        with self.lock:
            if conn in self.conns:
                self.conns[conn] = state

    def idle(self, conn):
        """Marks conn idle between keep-alive requests; False once the
        drain has begun: the connection is to be closed."""
        with self.lock:
            if self.draining:
                return False
            self.conns[conn] = IDLE
            return True

    def start_drain(self):
        with self.lock:
            self.draining = True  # answers carry Connection: close from now on

    def close_conns(self, *states):
        """Wake the handler threads blocked reading a request on connections
        in these states: they read EOF and close the connection."""
        with self.lock:
            conns = [c for c, st in self.conns.items() if st in states]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        return len(conns)

    def count(self, *states):
        with self.lock:
            return sum(1 for st in self.conns.values() if st in states)


# ---- corral: messages -------------------------------------------------------

# `corral send POOL@N TEXT` and `corral broadcast POOL TEXT` reach the worker
# over the unix socket named by CORRAL_MESSAGES, as JSON lines
# (docs/messages.md): {"id": ..., "message": ...} in, one {"id": ..., "reply":
# ...} (or "error") out per message, in order; texts up to 64 KiB. corrald
# keeps the connection across its own restarts; if it closes, connect again.


def on_message(text):
    return "python instance %s got %s" % (INSTANCE, json.dumps(text, ensure_ascii=False))


def serve_messages(path):
    """Answers corrald's messages one at a time, in order; reconnects for ever."""
    delay = 0.1
    while True:
        since, refused = None, False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, s.makefile("rb") as lines:
                s.connect(path)
                since = time.monotonic()
                log("messages: connected to corrald")
                for line in lines:
                    if not line.endswith(b"\n"):
                        break  # corrald stopped in the middle of it: dropped
                    try:
                        m = json.loads(line)
                    except ValueError:
                        continue  # not JSON: ignored
                    if not isinstance(m, dict):
                        continue
                    if not m.get("id"):  # corrald refuses the connection, then closes it
                        if m.get("error"):
                            refused = True
                            log("messages: refused by corrald: %s" % m["error"])
                        continue
                    if m.get("reply") or m.get("error"):
                        continue  # an answer, not a message
                    try:
                        # (an empty message comes without "message")
                        answer = {"id": m["id"], "reply": on_message(m.get("message", ""))}
                    except Exception as e:
                        answer = {"id": m["id"], "error": str(e)}
                    s.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass  # corrald is down, or went away
        if since is not None:
            log("messages: connection lost, reconnecting")
        # Wait 100 ms doubling up to 5 s; 100 ms again after a connection that
        # lived; 5 s after a refusal.
        lived = time.monotonic() - since if since is not None else 0
        wait = 5.0 if refused else 0.1 if lived > 10 else delay
        time.sleep(wait)
        delay = min(wait * 2, 5.0)


def start_messages():
    """Serves messages in a daemon thread, if corral set CORRAL_MESSAGES.
    Call it once the stop signals are blocked: the thread inherits the mask."""
    path = os.environ.get("CORRAL_MESSAGES")
    if path:
        threading.Thread(target=serve_messages, args=(path,), daemon=True, name="messages").start()


def main():
    stop_timeout = parse_duration(os.environ.get("CORRAL_STOP_TIMEOUT", "30s")) or 30.0
    # Drain until the stop timeout less 10% of it or 1s, whichever is
    # smaller, so the process exits on its own before systemd's SIGKILL.
    budget = stop_timeout - min(stop_timeout / 10, 1.0)

    sock = inherited_socket()
    port = int(os.environ.get("PORT", "8080"))
    srv = Server(sock, port)

    # Python runs signal handlers in the main thread only, but any thread that
    # does not block a signal may take it from the kernel (the accepting
    # thread does, now and then, while it starts handler threads under load).
    # Then the main thread, asleep in a lock wait, never runs the handler, and
    # systemd SIGKILLs the worker at the timeout: seen in TestWorkers. So
    # block the signals before any thread starts (threads inherit the mask)
    # and take them synchronously in the main thread, below.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    serving = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, name="accept")
    serving.start()
    start_messages()  # corral: messages, above
    where = "fd 3 from systemd" if sock is not None else "port %d" % port
    log("python instance %s (pid %d) serving on %s" % (INSTANCE, os.getpid(), where))
    sd_notify("READY=1\nSTATUS=serving on " + where)

    sig = signal.sigwait(stop_signals)
    started = time.monotonic()
    log("%s: draining %d connection(s), up to %.1fs" % (signal.Signals(sig).name, len(srv.conns), budget))
    try:
        sd_notify("STOPPING=1\nSTATUS=draining")
    except OSError as e:
        log("STOPPING=1: %s" % e)

    def hard_stop():
        log("drain timed out after %.1fs: exiting with %d connection(s) open" % (budget, len(srv.conns)))
        os._exit(1)

    timer = threading.Timer(budget, hard_stop)
    timer.daemon = True
    timer.start()

    srv.start_drain()
    # Stop accepting: serve_forever returns, then close our fd of the
    # listening socket. systemd keeps its copy: other instances go on
    # accepting, and connections for this instance's socket wait in the
    # kernel's queue for the next instance.
    srv.shutdown()
    srv.socket.close()
    # Idle keep-alive connections: closed, the client retries on a new one.
    srv.close_conns(IDLE)
    # Connections accepted that have not sent their request yet get a moment
    # to send it; it is answered, with Connection: close.
    grace = min(1.0, budget / 2)
    while srv.count(NEW) and time.monotonic() < started + grace:
        time.sleep(0.01)
    srv.close_conns(NEW)
    # Wait for in-flight requests: joins every handler thread.
    srv.server_close()
    timer.cancel()
    log("drained in %.3fs, exiting" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
