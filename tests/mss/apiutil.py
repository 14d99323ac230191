"""A real mss Server with its management API, running in a thread of its own (its own loop).

Tests talk to it over loopback like any client would: HTTP with ``requests`` (and schemathesis),
the ``/events`` WebSocket with the ``websockets`` client, SIP with ``serverutil.Uac``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import requests
from serverutil import make_config

from mss.app import Server

T = TypeVar("T")


class ThreadedServer:
    """``Server`` on a private event loop in a daemon thread; :meth:`call` runs coroutines there."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        ov = {"api.enabled": True, "api.listen": "127.0.0.1:0", "stun.enabled": False}
        ov.update(overrides)
        self.config = make_config(data_dir, **ov)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = Server(self.config)
        self.token = ""

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self.server.start())
        assert self.server.tokens is not None
        _, self.token = self.call(self.server.tokens.create("tests"))

    def stop(self) -> None:
        try:
            self.call(self.server.stop())
            self.call(asyncio.sleep(0.2))  # let closed transports run their callbacks
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def base(self) -> str:
        return self.server.api.url

    @property
    def ws_base(self) -> str:
        return self.base.replace("http", "ws", 1)

    @property
    def sip_port(self) -> int:
        return self.server.port("udp")

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.get(self.base + path, headers=self.headers(token), timeout=10, **kw)

    def post(self, path: str, json: Any = None, token: str | None = None) -> requests.Response:
        return requests.post(self.base + path, json=json, headers=self.headers(token), timeout=10)

    def put(self, path: str, json: Any = None, token: str | None = None) -> requests.Response:
        return requests.put(self.base + path, json=json, headers=self.headers(token), timeout=10)

    def patch(self, path: str, json: Any = None, token: str | None = None) -> requests.Response:
        return requests.patch(self.base + path, json=json, headers=self.headers(token), timeout=10)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.delete(self.base + path, headers=self.headers(token), timeout=10, **kw)


@contextmanager
def api_server(data_dir: Path, **overrides: Any) -> Iterator[ThreadedServer]:
    srv = ThreadedServer(data_dir, **overrides)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
