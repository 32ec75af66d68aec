"""A plain ASGI app (no framework, standard library only) for uvicorn under
corral.

It knows nothing of corral or systemd: uvicorn serves the socket systemd
passes as fd 3 (--fd 3), and drains on SIGTERM. See uvicorn.toml.

    GET /           hello from uvicorn, pid P
    GET /slow?ms=N  the same after N milliseconds (at most 60000)
"""

import asyncio
import os
import urllib.parse


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path not in ("/", "/slow"):
        return await reply(send, 404, b"not found\n")
    if path == "/slow":
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            ms = int(query.get("ms", ["0"])[0])
        except ValueError:
            ms = 0
        await asyncio.sleep(min(max(ms, 0), 60000) / 1000)
    await reply(send, 200, b"hello from uvicorn, pid %d\n" % os.getpid())


async def reply(send, status, body):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
