"""OPTIONS pings to the SIP trunks (RFC 3261 §11): each trunk's up/down state.

Theory of operation
-------------------
:class:`TrunkPinger` sends, every ``[trunks] ping_interval`` seconds, one out-of-dialog OPTIONS
to each enabled trunk whose ``ping`` is on (Request-URI ``sip:host:port``, with
``;transport=`` for TCP/TLS), through a client transaction of the SIP core. The first final
response received from the network — whatever its status: a peer answering 404 or 405 is alive
— marks the ping a success; the core's local 408 (timeout) or 503 (transport failure), or no
final response within ``ping_timeout`` seconds, marks it failed. The outcome goes to
:meth:`TrunkService.ping_result`, which owns the up/down policy. A trunk configured by name is
resolved (A/AAAA) before each ping, and the addresses are given to the service so that
``trunk_for_source`` recognises requests from them.

A trunk that is added, edited or re-enabled is pinged at once; a deleted or disabled one is no
longer pinged. Each ping has a sequence number: a late answer to an older ping is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any

from fastsip.message import Request, Response

from ..features.trunks import TrunkService
from ..storage.base import TrunkRecord
from .addressing import Target
from .core import SipCore

__all__ = ("TrunkPinger",)

log = logging.getLogger("mss.trunks")

LocalAddress = Callable[[str, str], tuple[str, int]]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Ping:
    __slots__ = ("deadline", "done", "sent_at", "seq")

    def __init__(self, seq: int, sent_at: float) -> None:
        self.seq = seq
        self.sent_at = sent_at
        self.deadline: Any = None
        self.done = False


class TrunkPinger:
    """Pings every trunk and reports to the :class:`TrunkService`.

    Args:
        core: the SIP core.
        clock: the server clock.
        service: the trunks and their state.
        local_address: ``(transport, remote host) -> (our host, our port)``.
        server_name: the User-Agent.
        interval: seconds between two pings of a trunk.
        timeout: seconds without a final answer before a ping fails.
        resolve: ``async (host, port, transport) -> [ip, ...]``; default: getaddrinfo.
    """

    def __init__(
        self,
        *,
        core: SipCore,
        clock: Any,
        service: TrunkService,
        local_address: LocalAddress,
        server_name: str = "mss",
        interval: float = 30.0,
        timeout: float = 5.0,
        resolve: Callable[[str, int, str], Any] | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self.service = service
        self.local_address = local_address
        self.server_name = server_name
        self.interval = interval
        self.timeout = timeout
        self._resolve = resolve
        self._timers: dict[str, Any] = {}
        self._pings: dict[str, _Ping] = {}
        self._seq = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self.stopped = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Ping every pingable trunk now, then every ``interval``."""
        for trunk in self.service.trunks():
            self._arm(trunk.id, 0.0)

    def apply(self, changes: Iterable[tuple[TrunkRecord | None, TrunkRecord | None]]) -> None:
        """Follow trunk edits: ping new or changed trunks at once, stop pinging removed ones."""
        for old, new in changes:
            trunk_id = (new or old).id  # type: ignore[union-attr]
            self._cancel(trunk_id)
            if new is not None and new.enabled and new.ping:
                self._arm(trunk_id, 0.0)

    async def stop(self) -> None:
        self.stopped = True
        for trunk_id in list(self._timers):
            self._cancel(trunk_id)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _cancel(self, trunk_id: str) -> None:
        handle = self._timers.pop(trunk_id, None)
        if handle is not None:
            self.clock.cancel(handle)
        ping = self._pings.pop(trunk_id, None)
        if ping is not None:
            ping.done = True
            if ping.deadline is not None:
                self.clock.cancel(ping.deadline)

    def _arm(self, trunk_id: str, delay: float) -> None:
        if self.stopped:
            return
        trunk = self.service.get(trunk_id)
        if trunk is None or not (trunk.enabled and trunk.ping):
            return
        old = self._timers.pop(trunk_id, None)
        if old is not None:
            self.clock.cancel(old)
        self._timers[trunk_id] = self.clock.call_later(delay, self._due, trunk_id)

    def _due(self, trunk_id: str) -> None:
        self._timers.pop(trunk_id, None)
        trunk = self.service.get(trunk_id)
        if trunk is None or not (trunk.enabled and trunk.ping) or self.stopped:
            return
        self._arm(trunk_id, self.interval)  # the next ping, whatever this one does
        task = asyncio.ensure_future(self.ping(trunk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one ping -----------------------------------------------------------------------------
    async def _addresses(self, trunk: TrunkRecord) -> list[str]:
        host = trunk.host.strip("[]")
        if _is_ip(host):
            return [host]
        if self._resolve is not None:
            return list(await self._resolve(host, trunk.port, trunk.transport))
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if trunk.transport == "udp" else socket.SOCK_STREAM
        infos = await loop.getaddrinfo(host, trunk.port, type=kind)
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        return list(dict.fromkeys(str(i[4][0]) for i in infos))

    async def ping(self, trunk: TrunkRecord) -> None:
        """Send one OPTIONS to ``trunk`` and report the outcome."""
        previous = self._pings.pop(trunk.id, None)
        if previous is not None and not previous.done:
            self._finish(
                trunk.id,
                previous,
                ok=False,
                status=None,
                reason=f"no answer within {self.interval:g} s",
            )
        self._seq += 1
        ping = _Ping(self._seq, self.clock.now())
        self._pings[trunk.id] = ping
        try:
            addresses = await self._addresses(trunk)
        except OSError as exc:
            self._finish(
                trunk.id, ping, ok=False, status=None, reason=f"cannot resolve {trunk.host}: {exc}"
            )
            return
        if not addresses:
            self._finish(
                trunk.id, ping, ok=False, status=None, reason=f"no address for {trunk.host}"
            )
            return
        if ping.done or self._pings.get(trunk.id) is not ping:
            return
        self.service.set_addresses(trunk.id, addresses)
        ip = addresses[0]
        target = Target(trunk.transport, ip, trunk.port)
        request = self._options(trunk, target)
        ping.sent_at = self.clock.now()
        ping.deadline = self.clock.call_later(self.timeout, self._expired, trunk.id, ping)
        self.core.send_request(
            request, target, lambda resp, txn: self._on_response(trunk.id, ping, resp)
        )

    def _options(self, trunk: TrunkRecord, target: Target) -> Request:
        lhost, lport = self.local_address(target.transport, target.host)
        lh = f"[{lhost}]" if ":" in lhost else lhost
        rh = f"[{target.host}]" if ":" in target.host else target.host
        tparam = "" if target.transport == "udp" else f";transport={target.transport}"
        uri = f"sip:{rh}:{target.port}{tparam}"
        headers = [
            (
                "Via",
                f"SIP/2.0/{target.transport.upper()} {lh}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<sip:mss@{lh}>;tag={secrets.token_hex(4)}"),
            ("To", f"<{uri}>"),
            ("Call-ID", f"{secrets.token_hex(10)}@mss"),
            ("CSeq", "1 OPTIONS"),
            ("Contact", f"<sip:mss@{lh}:{lport}{tparam}>"),
            ("Accept", "application/sdp"),
            ("User-Agent", self.server_name),
            ("Content-Length", "0"),
        ]
        return Request("OPTIONS", uri, headers)

    def _on_response(self, trunk_id: str, ping: _Ping, resp: Response) -> None:
        if resp.status < 200 or ping.done:
            return
        local = resp.modified and resp.status in (408, 503)
        if local:
            why = "timeout" if resp.status == 408 else "transport failure"
            self._finish(trunk_id, ping, ok=False, status=None, reason=f"no answer ({why})")
            return
        rtt = max(0.0, self.clock.now() - ping.sent_at)
        self._finish(
            trunk_id,
            ping,
            ok=True,
            status=resp.status,
            reason=f"{resp.status} {resp.reason}".strip(),
            rtt=rtt,
        )

    def _expired(self, trunk_id: str, ping: _Ping) -> None:
        ping.deadline = None
        if not ping.done:
            self._finish(
                trunk_id, ping, ok=False, status=None, reason=f"no answer within {self.timeout:g} s"
            )

    def _finish(
        self,
        trunk_id: str,
        ping: _Ping,
        *,
        ok: bool,
        status: int | None,
        reason: str,
        rtt: float | None = None,
    ) -> None:
        if ping.done:
            return
        ping.done = True
        if ping.deadline is not None:
            self.clock.cancel(ping.deadline)
            ping.deadline = None
        if self._pings.get(trunk_id) is ping:
            del self._pings[trunk_id]
        self.service.ping_result(trunk_id, ok=ok, status=status, reason=reason, rtt=rtt)
