"""app.py's app, served by uvicorn 0.17 (Debian 12) with one fix to its drain.

uvicorn.toml names "drain:app" instead of "app:app". Only for uvicorn's h11
protocol (uvicorn.toml sets --http h11); the app itself is unchanged.

On SIGTERM, uvicorn closes at once every connection that has no request
parsed yet, including one it accepted a moment ago whose request is already
on its way or in its buffer: that client gets a reset, not an answer
(https://github.com/Kludex/uvicorn/issues/2757). Measured in corral's
integration test: one failed request in 2 of 10 rolling reloads. With this
module such a connection is served (with "Connection: close"), or closed if
it sends nothing within a second; idle keep-alive connections are closed at
once and requests in flight are answered, as before.
"""

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app import app  # noqa: F401 (what uvicorn serves)

_shutdown = H11Protocol.shutdown
_handle_events = H11Protocol.handle_events


def _drain_shutdown(self):
    self.server_state.draining = True
    if self.cycle is not None:  # a request in flight, or an idle keep-alive connection
        return _shutdown(self)
    # Accepted, first request not read yet: let it arrive, for up to 1s.
    self.loop.call_later(1.0, _close_if_no_request, self)


def _close_if_no_request(self):
    if self.cycle is None and not self.transport.is_closing():
        self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def _drain_handle_events(self):
    _handle_events(self)
    # A request parsed while draining is answered with "Connection: close".
    if getattr(self.server_state, "draining", False) and self.cycle is not None:
        self.cycle.keep_alive = False


H11Protocol.shutdown = _drain_shutdown
H11Protocol.handle_events = _drain_handle_events
