"""Per-IP ban table, pure-Python reference twin (the specification of ``_bantable_c.pyx``).

Theory of operation
-------------------
The table is the first thing a server consults for every datagram and every new connection,
before classification or parsing: :meth:`BanTable.check` answers *allow* / *drop* for a source
address given as packed bytes (4 bytes IPv4, 16 bytes IPv6; see :func:`fastsip.bantable.pack_ip`).
It is sans-IO: every time-dependent call takes ``now`` (seconds, any epoch, from the caller's one
clock) and nothing expires except by comparing stored times with ``now``. It holds mechanism only;
thresholds, ban durations, white lists and persistence are policy (``mss.features.security``).

An *entry* per IP holds:

* **failures**: the timestamps of the most recent failures, at most ``max_failures`` of them, in
  call order. :meth:`BanTable.record_failure` first drops, from the oldest end, every timestamp
  ``t`` with ``t <= now - window``, then appends ``now`` (dropping the oldest when more than
  ``max_failures`` are kept) and returns how many are kept. With a non-decreasing clock this is
  exactly ``min(max_failures, #{failures t : now - window < t <= now})``: a failure at ``t``
  counts while ``now < t + window`` (half-open window; at ``now == t + window`` it has expired).
* **ban**: ``until`` (the ban is *active* while ``now < until``) and the ban *count*, how many
  times :meth:`BanTable.ban` was called for this IP (repeat offences, for doubling policies).
  :meth:`BanTable.ban` clears the failures (the offence is consumed).
* **success**: the time of the last :meth:`BanTable.record_success` (last call wins).

Layout and invariants
---------------------
* Entries that were banned and whose ban has not been seen to expire live in ``_bans``; all other
  entries live in ``_rest``. An IP is in at most one of them. ``check`` looks only at ``_bans``, so
  a lookup of an unknown source touches one (usually small) dict: one hash probe (``bytes`` caches
  its hash) and one float compare.
* ``_rest`` is ordered by last write: ``record_failure`` / ``record_success`` on an entry of
  ``_rest`` move it to the newest end; new entries are appended there. Reads (``check``,
  ``failures``, ``last_success``, ``ban_count``, ``banned_until``, ``bans``, ``in``) never reorder.
  Writes to an entry of ``_bans`` do not reorder anything.
* ``_heap`` holds ``(until, seq, ip)`` for every ban set since it was last rebuilt (``seq``
  increases with each ``ban`` call); an item is current when ``_bans[ip].seq == seq``, stale items
  are skipped and the heap is rebuilt from ``_bans`` when it grows past twice its size.
* ``len(table) == len(_bans) + len(_rest) <= max_entries`` at all times.

Eviction (bounded memory)
-------------------------
Only inserting a *new* IP into a full table (``len == max_entries``) evicts. Then, in order:

1. **Purge**: every ban of ``_bans`` that has expired (``not now < until``) moves, with its
   count, to the newest end of ``_rest``, in ``(until, seq)`` order.
2. If ``_rest`` is not empty, evict up to ``batch = max(1, max_entries // 16)`` entries of
   ``_rest``: first the *stale* ones (no failure or the newest failure ``<= now - window``),
   oldest first, then, if fewer than ``batch`` are stale, the oldest *live* ones (recent
   failures) to make up ``batch``. Evicting a batch keeps the occasional scan amortised O(1).
3. Otherwise every entry is an active ban. A new **ban** evicts the active ban that expires first
   (ties: the earlier ``ban`` call) -- a ban always wins over anything else. A new **non-ban**
   entry is *refused*: :meth:`BanTable.record_failure` returns ``0`` and
   :meth:`BanTable.record_success` stores nothing. Active bans are never evicted otherwise.

Cost: ``check`` is one dict probe. Writes are O(1) (a ring append; moving an entry to the newest
end is a dict delete + insert) plus O(log n) heap work per ``ban``. A full-table insert scans
``_rest`` from its oldest end, stopping after ``batch`` stale entries; it visits at most
``len(_rest)`` entries and frees ``min(batch, len(_rest))``, so scans cost amortised at most
``max_entries / batch`` = 16 entry visits per insert; each purged ban costs one heap pop.
The price of batching: under a flood of fresh sources a scan may evict up to ``batch`` live
entries at once (their failure counts are lost, as they would be one by one).

An evicted IP loses everything (failures, success time, ban count); persistent ban history is
the policy's storage, which reloads bans at start-up with ``ban(ip, until, now, count=n)``.

Clock
-----
``now`` is expected to be non-decreasing across calls (the transport's single clock). With a clock
that steps back the table stays consistent and both twins behave identically, but a ban already
purged as expired stays expired and failure pruning only looks at the oldest end.
"""

from __future__ import annotations

import heapq
import math

__all__ = ("BanTable",)

_NO_BAN = -math.inf


class _Entry:
    """State kept for one source IP (see the module docstring)."""

    __slots__ = ("count", "fails", "seq", "success", "until")

    def __init__(self) -> None:
        self.fails: list[float] = []
        self.until: float = _NO_BAN
        self.count: int = 0
        self.success: float | None = None
        self.seq: int = 0


def _check_ip(ip: bytes) -> None:
    if type(ip) is not bytes:
        raise TypeError(f"ip must be packed bytes, not {type(ip).__name__}")
    if len(ip) != 4 and len(ip) != 16:
        raise ValueError(f"ip must be 4 (IPv4) or 16 (IPv6) bytes, got {len(ip)}")


class BanTable:
    """Failure counts, success memory and bans per source IP, bounded in size.

    Args:
        max_entries: the most IPs the table holds (>= 1); see "Eviction" in the module docstring.
        window: the sliding window of failure counting, in seconds (> 0, finite).
        max_failures: the most failure timestamps kept per IP (1..65536); failure counts
            saturate there.

    Raises:
        TypeError: an option has the wrong type.
        ValueError: an option is out of range.
    """

    __slots__ = (
        "_bans",
        "_batch",
        "_heap",
        "_max_entries",
        "_max_failures",
        "_rest",
        "_seq",
        "_window",
    )

    def __init__(
        self, *, max_entries: int = 100_000, window: float = 60.0, max_failures: int = 64
    ) -> None:
        if type(max_entries) is not int or type(max_failures) is not int:
            raise TypeError("max_entries and max_failures must be int")
        if not isinstance(window, (int, float)) or isinstance(window, bool):
            raise TypeError("window must be a number")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if not 1 <= max_failures <= 65536:
            raise ValueError("max_failures must be in 1..65536")
        if not (0.0 < window < math.inf):
            raise ValueError("window must be > 0 and finite")
        self._max_entries = max_entries
        self._window = float(window)
        self._max_failures = max_failures
        self._batch = max(1, max_entries // 16)
        self._bans: dict[bytes, _Entry] = {}
        self._rest: dict[bytes, _Entry] = {}
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0

    @property
    def max_entries(self) -> int:
        """The most IPs the table holds."""
        return self._max_entries

    @property
    def window(self) -> float:
        """The failure-counting window in seconds."""
        return self._window

    @property
    def max_failures(self) -> int:
        """The most failure timestamps kept per IP (where counts saturate)."""
        return self._max_failures

    # -- the hot path ------------------------------------------------------------------------

    def check(self, ip: bytes, now: float) -> bool:
        """Decide whether traffic from ``ip`` is let in.

        Args:
            ip: the packed source address (4 or 16 bytes).
            now: the current time.

        Returns:
            True (allow) unless ``ip`` has a ban with ``now < until`` (drop).

        Raises:
            TypeError: ``ip`` is not ``bytes``.
            ValueError: ``ip`` is not 4 or 16 bytes long.
        """
        if type(ip) is not bytes or (len(ip) != 4 and len(ip) != 16):
            _check_ip(ip)  # raises; inlined test above keeps the allow path call-free
        e = self._bans.get(ip)
        return e is None or not now < e.until

    def __contains__(self, ip: object) -> bool:
        _check_ip(ip)  # type: ignore[arg-type]
        return ip in self._bans or ip in self._rest

    def __len__(self) -> int:
        return len(self._bans) + len(self._rest)

    # -- writes ------------------------------------------------------------------------------

    def record_failure(self, ip: bytes, now: float) -> int:
        """Record a failure (bad auth, malformed request...) from ``ip`` at ``now``.

        Args:
            ip: the packed source address (4 or 16 bytes).
            now: the current time.

        Returns:
            The failures in the window ending at ``now``, this one included (see the module
            docstring for the exact rule; saturates at ``max_failures``), or 0 when the table is
            full of active bans and the IP could not be recorded.

        Raises:
            TypeError: ``ip`` is not ``bytes``.
            ValueError: ``ip`` is not 4 or 16 bytes long.
        """
        _check_ip(ip)
        e = self._touch(ip, now)
        if e is None:
            return 0
        fails = e.fails
        cutoff = now - self._window
        i = 0
        n = len(fails)
        while i < n and fails[i] <= cutoff:
            i += 1
        if i:
            del fails[:i]
        fails.append(now)
        if len(fails) > self._max_failures:
            del fails[0]
        return len(fails)

    def record_success(self, ip: bytes, now: float) -> None:
        """Remember that ``ip`` authenticated successfully at ``now`` (nothing if refused).

        Raises:
            TypeError: ``ip`` is not ``bytes``.
            ValueError: ``ip`` is not 4 or 16 bytes long.
        """
        _check_ip(ip)
        e = self._touch(ip, now)
        if e is not None:
            e.success = float(now)

    def ban(self, ip: bytes, until: float, now: float, *, count: int | None = None) -> int:
        """Ban ``ip`` until ``until`` (replacing any ban it has) and clear its failures.

        A ban always finds room: when the table is full of active bans, the one expiring first
        is evicted.

        Args:
            ip: the packed source address (4 or 16 bytes).
            until: the ban is active while ``now < until`` (``math.inf`` for ever).
            now: the current time (for eviction).
            count: set the ban count to this (>= 1, e.g. when reloading stored bans) instead of
                adding one to it.

        Returns:
            The IP's ban count after this ban.

        Raises:
            TypeError: ``ip`` is not ``bytes`` or ``count`` is not an int.
            ValueError: ``ip`` is not 4 or 16 bytes long, ``until`` is NaN or ``count < 1``.
        """
        _check_ip(ip)
        if until != until:
            raise ValueError("until must not be NaN")
        if count is not None:
            if type(count) is not int:
                raise TypeError("count must be int")
            if count < 1:
                raise ValueError("count must be >= 1")
        e = self._bans.get(ip)
        if e is None:
            e = self._rest.pop(ip, None)
            if e is None:
                self._make_room(now, True)
                e = _Entry()
            self._bans[ip] = e
        e.until = float(until)
        e.count = e.count + 1 if count is None else count
        e.fails.clear()
        self._seq += 1
        e.seq = self._seq
        heapq.heappush(self._heap, (e.until, self._seq, ip))
        if len(self._heap) > 2 * len(self._bans) + 64:
            self._heap = [(b.until, b.seq, k) for k, b in self._bans.items()]
            heapq.heapify(self._heap)
        return e.count

    def unban(self, ip: bytes) -> bool:
        """Forget ``ip`` entirely: its ban, ban count, failures and success time.

        Returns:
            True when ``ip`` had a ban record (ban count > 0, active or expired), else False.

        Raises:
            TypeError: ``ip`` is not ``bytes``.
            ValueError: ``ip`` is not 4 or 16 bytes long.
        """
        _check_ip(ip)
        e = self._bans.pop(ip, None)
        if e is None:
            e = self._rest.pop(ip, None)
            if e is None:
                return False
        return e.count > 0

    # -- reads -------------------------------------------------------------------------------

    def failures(self, ip: bytes, now: float) -> int:
        """The kept failures of ``ip`` with ``t > now - window`` (no side effect)."""
        _check_ip(ip)
        e = self._find(ip)
        if e is None:
            return 0
        cutoff = now - self._window
        return sum(1 for t in e.fails if t > cutoff)

    def last_success(self, ip: bytes) -> float | None:
        """The ``now`` of the last :meth:`record_success` for ``ip``, or None."""
        _check_ip(ip)
        e = self._find(ip)
        return None if e is None else e.success

    def ban_count(self, ip: bytes) -> int:
        """How many times ``ip`` was banned (0 when unknown or forgotten)."""
        _check_ip(ip)
        e = self._find(ip)
        return 0 if e is None else e.count

    def banned_until(self, ip: bytes, now: float) -> float | None:
        """The end of the active ban of ``ip`` (the one :meth:`check` sees), or None."""
        _check_ip(ip)
        e = self._bans.get(ip)
        if e is None or not now < e.until:
            return None
        return e.until

    def bans(self, now: float) -> list[tuple[bytes, float, int]]:
        """The active bans as ``(ip, until, count)``, sorted by ``until`` then ``ip``."""
        out = [(ip, e.until, e.count) for ip, e in self._bans.items() if now < e.until]
        out.sort(key=lambda r: (r[1], r[0]))
        return out

    # -- internals ---------------------------------------------------------------------------

    def _find(self, ip: bytes) -> _Entry | None:
        e = self._bans.get(ip)
        if e is None:
            e = self._rest.get(ip)
        return e

    def _touch(self, ip: bytes, now: float) -> _Entry | None:
        """The entry of ``ip`` for a write, moved to (or created at) the newest end of
        ``_rest``; None when the table is full of active bans."""
        e = self._bans.get(ip)
        if e is not None:
            return e
        e = self._rest.pop(ip, None)
        if e is None:
            if not self._make_room(now, False):
                return None
            e = _Entry()
        self._rest[ip] = e
        return e

    def _make_room(self, now: float, for_ban: bool) -> bool:
        """Free at least one slot if the table is full (rules in the module docstring)."""
        if len(self._bans) + len(self._rest) < self._max_entries:
            return True
        heap = self._heap
        bans = self._bans
        rest = self._rest
        # 1. purge expired bans into _rest, in (until, seq) order.
        while heap and not now < heap[0][0]:
            _, seq, ip = heapq.heappop(heap)
            e = bans.get(ip)
            if e is not None and e.seq == seq:
                del bans[ip]
                rest[ip] = e
        # 2. evict a batch of _rest, stale first.
        if rest:
            batch = self._batch
            cutoff = now - self._window
            stale: list[bytes] = []
            live: list[bytes] = []
            for ip, e in rest.items():
                if not e.fails or e.fails[-1] <= cutoff:
                    stale.append(ip)
                    if len(stale) >= batch:
                        break
                elif len(live) < batch:
                    live.append(ip)
            for ip in stale:
                del rest[ip]
            for ip in live[: batch - len(stale)]:
                del rest[ip]
            return True
        # 3. all active bans: only a ban gets in, replacing the one that expires first.
        if not for_ban:
            return False
        while True:
            _, seq, ip = heapq.heappop(heap)
            e = bans.get(ip)
            if e is not None and e.seq == seq:
                del bans[ip]
                return True
