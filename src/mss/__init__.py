"""mss: a SIP server and PBX on asyncio, built on the fastsip core.

Embedding (see the README): build a configuration, create the server, register call-policy
functions, run it inside your own event loop::

    import mss

    server = mss.Server(mss.load_config(overrides={"data_dir": "./mss-data"}))

    @server.on_call
    async def policy(call: mss.CallInfo) -> mss.Decision:
        if call.callee.startswith("900"):
            return mss.reject(403, "Premium numbers are barred")
        return mss.CONTINUE

    await server.start()
    ...
    await server.stop()

The names below are imported lazily, so ``import mss`` (and the ``mss`` command) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = (
    "CONTINUE",
    "CallInfo",
    "Config",
    "Continue",
    "Decision",
    "Reject",
    "RouteTo",
    "Server",
    "load_config",
    "reject",
    "route",
    "run",
)

_WHERE = {
    "Server": "mss.app",
    "run": "mss.app",
    "Config": "mss.config",
    "load_config": "mss.config",
    "CONTINUE": "mss.features.calls",
    "CallInfo": "mss.features.calls",
    "Continue": "mss.features.calls",
    "Decision": "mss.features.calls",
    "Reject": "mss.features.calls",
    "RouteTo": "mss.features.calls",
    "reject": "mss.features.calls",
    "route": "mss.features.calls",
}

if TYPE_CHECKING:
    from .app import Server, run
    from .config import Config, load_config
    from .features.calls import (
        CONTINUE,
        CallInfo,
        Continue,
        Decision,
        Reject,
        RouteTo,
        reject,
        route,
    )


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mss' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
