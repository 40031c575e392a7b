"""Run an ASGI app on a real socket (127.0.0.1, a free port) for the length of a test.

Tests talk to real HTTP servers, never to mocks: the simulator, or a tiny ASGI
app written for one test. uvicorn runs in a daemon thread with its own event loop,
so sync tests, async tests and a Daphne live server can all reach it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


@contextlib.contextmanager
def serve_asgi(app, port: int | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1; yields its base URL (no trailing slash)."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


class FaultInjector:
    """Wraps an ASGI app (the simulator): adds the x-sim-* fault headers a test chooses to every request."""

    def __init__(self, app):
        self.app = app
        self.headers: dict[str, str] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.headers:
            extra = [(k.encode(), v.encode()) for k, v in self.headers.items()]
            scope = dict(scope, headers=list(scope["headers"]) + extra)
        await self.app(scope, receive, send)


@dataclass
class Exchange:
    """One HTTP request through a Recorder: the bytes it sent and the bytes it got back."""

    method: str
    path: str
    request: bytes = b""
    response: bytes = b""

    @property
    def json(self):
        return json.loads(self.request)


class Recorder:
    """Wraps an ASGI app (the simulator): keeps every HTTP exchange as it went over the wire, so a
    test can check what a client sent and received (a stream's `data:` events, say)."""

    def __init__(self, app):
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], scope["path"])
        self.exchanges.append(exchange)

        async def receive_recorded():
            message = await receive()
            if message["type"] == "http.request":
                exchange.request += message.get("body", b"")
            return message

        async def send_recorded(message):
            if message["type"] == "http.response.body":
                exchange.response += message.get("body", b"")
            await send(message)

        await self.app(scope, receive_recorded, send_recorded)
