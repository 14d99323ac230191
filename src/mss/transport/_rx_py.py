"""Batched UDP receive, pure-Python reference: read datagrams, ask the gate, copy the survivors.

The specification of :mod:`mss.transport._rx_c` (the same class, reading with ``recvmmsg(2)``).
:meth:`Receiver.drain` reads up to ``limit`` datagrams from a non-blocking UDP socket, asks
``allow(host, now)`` about each source *before* anything is copied out of the read buffer, and
hands only the admitted datagrams to ``dispatch(data, addr)``, in arrival order, one at a time
(so a ban decided while handling datagram *n* already applies to datagram *n + 1*).

Invariants both twins keep:

* ``addr`` is what ``socket.recvfrom`` returns: ``(host, port)`` for IPv4,
  ``(host, port, flowinfo, scope_id)`` for IPv6, host in numeric form (``%scope`` for
  link-local); ``host`` is what ``allow`` receives;
* a dropped datagram calls ``allow`` and nothing else (no ``bytes``, no address tuple in C);
* nothing raised per datagram escapes: an exception from ``allow`` or ``dispatch`` goes to
  ``report(exc, addr)`` and the next datagram is read; a socket error (``EAGAIN`` aside) goes
  to ``report(exc, None)`` and counts as one datagram read, so a persistent error cannot spin
  more than ``limit`` times;
* after :meth:`Receiver.close` (e.g. by a handler while draining) no more datagrams are read.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ("BUFFER_SIZE", "Receiver")

#: Bytes per datagram buffer: more than any UDP payload (65,507 over IPv4, 65,527 over IPv6).
BUFFER_SIZE = 65536

Allow = Callable[[str, float], bool]
Dispatch = Callable[[bytes, Any], None]
Report = Callable[[BaseException, Any], None]


class Receiver:
    """Reads one non-blocking UDP socket; ``batch`` is the number of datagrams per system call.

    Args:
        sock: a bound, non-blocking ``SOCK_DGRAM`` socket (AF_INET or AF_INET6), still owned by
            the caller (closing the receiver does not close it).
        batch: datagrams fetched per ``recvmmsg`` call (the pure twin reads one per call and
            ignores it beyond validating it).
    """

    def __init__(self, sock: socket.socket, *, batch: int = 64) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.batch = batch
        self._buf = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._recvfrom_into: Callable[..., tuple[int, Any]] | None = sock.recvfrom_into

    @property
    def closed(self) -> bool:
        return self._recvfrom_into is None

    def close(self) -> None:
        """Read nothing more (idempotent)."""
        self._recvfrom_into = None

    def drain(
        self, limit: int, allow: Allow | None, now: float, dispatch: Dispatch, report: Report
    ) -> tuple[int, int]:
        """Read up to ``limit`` datagrams, until the socket is empty.

        Args:
            limit: the most datagrams to read in this call.
            allow: the gate (``Gate.allow``), or None to admit everything.
            now: the time passed to ``allow`` for the whole batch.
            dispatch: called with ``(data, addr)`` for each admitted datagram.
            report: called with ``(exception, addr or None)`` for each per-datagram failure.

        Returns:
            ``(read, dropped)``: datagrams taken off the socket (and socket errors), and how
            many of them the gate dropped.
        """
        view = self._view
        buf = self._buf
        count = dropped = 0
        while count < limit:
            recv = self._recvfrom_into
            if recv is None:
                break
            try:
                nbytes, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                count += 1
                report(e, None)
                continue
            count += 1
            try:
                if allow is not None and not allow(addr[0], now):
                    dropped += 1
                    continue
                dispatch(view[:nbytes].tobytes(), addr)
            except Exception as e:  # never let one datagram stop the reader
                report(e, addr)
        return count, dropped
