"""A plain WSGI app (standard library only) for gunicorn under corral.

It knows nothing of corral or systemd: gunicorn takes the socket systemd
passes (LISTEN_FDS, LISTEN_PID), and drains on SIGTERM. See gunicorn.toml.

    GET /           hello from gunicorn, pid P
    GET /slow?ms=N  the same after N milliseconds (at most 60000)
"""

import os
import time
import urllib.parse


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path not in ("/", "/slow"):
        return reply(start_response, "404 Not Found", b"not found\n")
    if path == "/slow":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            ms = int(query.get("ms", ["0"])[0])
        except ValueError:
            ms = 0
        time.sleep(min(max(ms, 0), 60000) / 1000)
    return reply(start_response, "200 OK", b"hello from gunicorn, pid %d\n" % os.getpid())


def reply(start_response, status, body):
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
