# cython: language_level=3, binding=True, embedsignature=True
# cython: boundscheck=False, wraparound=False, cdivision=True
"""Per-IP ban table, Cython twin of :mod:`fastsip._bantable_py` (the specification).

Same layout, rules and results as the pure twin; read its docstring for the theory of operation.
What is C-level here and why:

* ``check`` is the gate in front of every datagram (budget: a few microseconds for the whole drop
  path), so it is one ``PyDict_GetItem`` on the ``_bans`` dict (``bytes`` keys cache their hash
  and compare with ``memcmp``, so the lookup cannot raise) and a C ``double`` compare on a field
  of a ``cdef`` entry -- no attribute lookup, no float boxing, no allocation.
* The failure timestamps are a C ring of doubles per entry, grown on demand up to
  ``max_failures`` (most sources never fail more than a few times), so ``record_failure`` neither
  allocates Python floats nor shifts a list.
* Eviction, purge and listing are rare paths; they keep Python containers (and ``heapq``) so
  their order is exactly the pure twin's.
"""

cimport cython
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_DelItem, PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.math cimport INFINITY
from libc.string cimport memcpy

from heapq import heapify, heappop, heappush

__all__ = ("BanTable",)


cdef inline int _bad_ip(object ip) except -1:
    if not PyBytes_CheckExact(ip):
        raise TypeError(f"ip must be packed bytes, not {type(ip).__name__}")
    raise ValueError(f"ip must be 4 (IPv4) or 16 (IPv6) bytes, got {len(ip)}")


# An inline test instead of a typed ``bytes`` argument: Cython's argument check would let None
# through and raise a different message; this is two compares.
cdef inline int _check_ip(object ip) except -1:
    cdef Py_ssize_t n
    if not PyBytes_CheckExact(ip):
        return _bad_ip(ip)
    n = PyBytes_GET_SIZE(ip)
    if n != 4 and n != 16:
        return _bad_ip(ip)
    return 0


def _until_key(tuple r):
    return (r[1], r[0])


@cython.freelist(256)
@cython.auto_pickle(False)
cdef class _Entry:
    """State kept for one source IP (see the pure twin)."""

    def __cinit__(self):
        self.ring = NULL
        self.until = -INFINITY

    def __dealloc__(self):
        PyMem_Free(self.ring)

    cdef void clear_failures(self) noexcept:
        PyMem_Free(self.ring)
        self.ring = NULL
        self.cap = 0
        self.head = 0
        self.size = 0

    cdef double newest(self) noexcept:
        cdef int i = self.head + self.size - 1
        if i >= self.cap:
            i -= self.cap
        return self.ring[i]

    cdef int push_failure(self, double now, double cutoff, int max_failures) except -1:
        # Same steps as the pure twin: prune the oldest end, append, cap at max_failures.
        cdef int i, newcap
        cdef double* ring
        while self.size and self.ring[self.head] <= cutoff:
            self.head += 1
            if self.head == self.cap:
                self.head = 0
            self.size -= 1
        if self.size >= max_failures:
            self.head += 1
            if self.head == self.cap:
                self.head = 0
            self.size -= 1
        if self.size == self.cap:
            newcap = 4 if self.cap == 0 else self.cap * 2
            if newcap > max_failures:
                newcap = max_failures
            ring = <double*>PyMem_Malloc(newcap * sizeof(double))
            if ring == NULL:
                raise MemoryError()
            # Linearise the old ring (oldest first) into the new one.
            i = self.cap - self.head
            if i > self.size:
                i = self.size
            if i > 0:
                memcpy(ring, self.ring + self.head, i * sizeof(double))
            if self.size > i:
                memcpy(ring + i, self.ring, (self.size - i) * sizeof(double))
            PyMem_Free(self.ring)
            self.ring = ring
            self.cap = newcap
            self.head = 0
        i = self.head + self.size
        if i >= self.cap:
            i -= self.cap
        self.ring[i] = now
        self.size += 1
        return self.size

    cdef int count_after(self, double cutoff) noexcept:
        cdef int k, i, n = 0
        for k in range(self.size):
            i = self.head + k
            if i >= self.cap:
                i -= self.cap
            if self.ring[i] > cutoff:
                n += 1
        return n


@cython.auto_pickle(False)
@cython.embedsignature(False)
cdef class BanTable:
    """BanTable(*, max_entries=100000, window=60.0, max_failures=64)

    Failure counts, success memory and bans per source IP, bounded in size.

    Args:
        max_entries: the most IPs the table holds (>= 1).
        window: the sliding window of failure counting, in seconds (> 0, finite).
        max_failures: the most failure timestamps kept per IP (1..65536).
    """

    def __init__(self, *, max_entries=100_000, window=60.0, max_failures=64):
        if type(max_entries) is not int or type(max_failures) is not int:
            raise TypeError("max_entries and max_failures must be int")
        if not isinstance(window, (int, float)) or isinstance(window, bool):
            raise TypeError("window must be a number")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if not 1 <= max_failures <= 65536:
            raise ValueError("max_failures must be in 1..65536")
        if not (0.0 < window < INFINITY):
            raise ValueError("window must be > 0 and finite")
        self._max_entries = max_entries
        self._window = float(window)
        self._max_failures = max_failures
        self._batch = max(1, self._max_entries // 16)
        self._bans = {}
        self._rest = {}
        self._heap = []
        self._seq = 0

    @property
    def max_entries(self):
        """The most IPs the table holds."""
        return self._max_entries

    @property
    def window(self):
        """The failure-counting window in seconds."""
        return self._window

    @property
    def max_failures(self):
        """The most failure timestamps kept per IP (where counts saturate)."""
        return self._max_failures

    # -- the hot path ------------------------------------------------------------------------

    cdef int check_c(self, object ip, double now) except -1:
        """1 = allow, 0 = drop; for Cython callers that cimport this class."""
        cdef PyObject* p
        cdef Py_ssize_t n
        if not PyBytes_CheckExact(ip):
            return _bad_ip(ip)
        n = PyBytes_GET_SIZE(ip)
        if n != 4 and n != 16:
            return _bad_ip(ip)
        # Borrowed reference; exact-bytes keys make the lookup exception-free.
        p = PyDict_GetItem(self._bans, ip)
        if p == NULL:
            return 1
        return not (now < (<_Entry>p).until)

    def check(self, ip, double now):
        """True (allow) unless ``ip`` has a ban with ``now < until`` (drop)."""
        cdef PyObject* p
        cdef Py_ssize_t n
        if not PyBytes_CheckExact(ip):
            _bad_ip(ip)
        n = PyBytes_GET_SIZE(ip)
        if n != 4 and n != 16:
            _bad_ip(ip)
        p = PyDict_GetItem(self._bans, ip)
        if p == NULL:
            return True
        return not (now < (<_Entry>p).until)

    def __contains__(self, ip):
        _check_ip(ip)
        return PyDict_GetItem(self._bans, ip) != NULL or PyDict_GetItem(self._rest, ip) != NULL

    def __len__(self):
        return len(self._bans) + len(self._rest)

    # -- writes ------------------------------------------------------------------------------

    def record_failure(self, ip, double now):
        """Record a failure from ``ip``; return the failures in the window (0: refused)."""
        cdef _Entry e
        _check_ip(ip)
        e = self._touch(ip, now)
        if e is None:
            return 0
        return e.push_failure(now, now - self._window, self._max_failures)

    def record_success(self, ip, double now):
        """Remember that ``ip`` authenticated successfully at ``now`` (nothing if refused)."""
        cdef _Entry e
        _check_ip(ip)
        e = self._touch(ip, now)
        if e is not None:
            e.success = now
            e.has_success = True

    def ban(self, ip, double until, double now, *, count=None):
        """Ban ``ip`` until ``until``, clear its failures; return its new ban count."""
        cdef _Entry e
        cdef PyObject* p
        _check_ip(ip)
        if until != until:
            raise ValueError("until must not be NaN")
        if count is not None:
            if type(count) is not int:
                raise TypeError("count must be int")
            if count < 1:
                raise ValueError("count must be >= 1")
        p = PyDict_GetItem(self._bans, ip)
        if p != NULL:
            e = <_Entry>p
        else:
            p = PyDict_GetItem(self._rest, ip)
            if p != NULL:
                e = <_Entry>p
                PyDict_DelItem(self._rest, ip)
            else:
                self._make_room(now, True)
                e = _Entry.__new__(_Entry)
            PyDict_SetItem(self._bans, ip, e)
        e.until = until
        if count is None:
            e.count += 1
        else:
            e.count = count
        e.clear_failures()
        self._seq += 1
        e.seq = self._seq
        heappush(self._heap, (until, self._seq, ip))
        if len(self._heap) > 2 * len(self._bans) + 64:
            self._rebuild_heap()
        return e.count

    def unban(self, ip):
        """Forget ``ip`` entirely; True when it had a ban record (ban count > 0)."""
        cdef PyObject* p
        cdef _Entry e
        _check_ip(ip)
        p = PyDict_GetItem(self._bans, ip)
        if p != NULL:
            e = <_Entry>p
            PyDict_DelItem(self._bans, ip)
        else:
            p = PyDict_GetItem(self._rest, ip)
            if p == NULL:
                return False
            e = <_Entry>p
            PyDict_DelItem(self._rest, ip)
        return e.count > 0

    # -- reads -------------------------------------------------------------------------------

    def failures(self, ip, double now):
        """The kept failures of ``ip`` with ``t > now - window`` (no side effect)."""
        cdef _Entry e
        _check_ip(ip)
        e = self._find(ip)
        if e is None:
            return 0
        return e.count_after(now - self._window)

    def last_success(self, ip):
        """The ``now`` of the last ``record_success`` for ``ip``, or None."""
        cdef _Entry e
        _check_ip(ip)
        e = self._find(ip)
        if e is None or not e.has_success:
            return None
        return e.success

    def ban_count(self, ip):
        """How many times ``ip`` was banned (0 when unknown or forgotten)."""
        cdef _Entry e
        _check_ip(ip)
        e = self._find(ip)
        return 0 if e is None else e.count

    def banned_until(self, ip, double now):
        """The end of the active ban of ``ip`` (the one ``check`` sees), or None."""
        cdef PyObject* p
        _check_ip(ip)
        p = PyDict_GetItem(self._bans, ip)
        if p == NULL or not (now < (<_Entry>p).until):
            return None
        return (<_Entry>p).until

    def bans(self, double now):
        """The active bans as ``(ip, until, count)``, sorted by ``until`` then ``ip``."""
        cdef list out = []
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        cdef _Entry e
        while PyDict_Next(self._bans, &pos, &k, &v):
            e = <_Entry>v
            if now < e.until:
                out.append((<object>k, e.until, e.count))
        out.sort(key=_until_key)
        return out

    # -- internals ---------------------------------------------------------------------------

    cdef _Entry _find(self, object ip):
        cdef PyObject* p = PyDict_GetItem(self._bans, ip)
        if p == NULL:
            p = PyDict_GetItem(self._rest, ip)
            if p == NULL:
                return None
        return <_Entry>p

    cdef _Entry _touch(self, object ip, double now):
        # The entry for a write, moved to (or created at) the newest end of _rest; None when
        # the table is full of active bans.
        cdef _Entry e
        cdef PyObject* p = PyDict_GetItem(self._bans, ip)
        if p != NULL:
            return <_Entry>p
        p = PyDict_GetItem(self._rest, ip)
        if p != NULL:
            e = <_Entry>p  # owned reference: survives the delete below
            PyDict_DelItem(self._rest, ip)
        else:
            if not self._make_room(now, False):
                return None
            e = _Entry.__new__(_Entry)
        PyDict_SetItem(self._rest, ip, e)
        return e

    cdef bint _make_room(self, double now, bint for_ban) except -1:
        cdef list heap = self._heap
        cdef dict bans = self._bans
        cdef dict rest = self._rest
        cdef list stale, live
        cdef Py_ssize_t pos = 0, batch, nstale
        cdef PyObject* k
        cdef PyObject* v
        cdef PyObject* p
        cdef _Entry e
        cdef double cutoff
        cdef tuple item
        if len(bans) + len(rest) < self._max_entries:
            return True
        # 1. purge expired bans into _rest, in (until, seq) order.
        while heap and not (now < <double>(<tuple>heap[0])[0]):
            item = heappop(heap)
            p = PyDict_GetItem(bans, item[2])
            if p != NULL and (<_Entry>p).seq == <long long>item[1]:
                e = <_Entry>p
                PyDict_DelItem(bans, item[2])
                PyDict_SetItem(rest, item[2], e)
        # 2. evict a batch of _rest, stale first.
        if rest:
            batch = self._batch
            cutoff = now - self._window
            stale = []
            live = []
            while PyDict_Next(rest, &pos, &k, &v):
                e = <_Entry>v
                if e.size == 0 or e.newest() <= cutoff:
                    stale.append(<object>k)
                    if len(stale) >= batch:
                        break
                elif len(live) < batch:
                    live.append(<object>k)
            nstale = len(stale)
            for key in stale:
                PyDict_DelItem(rest, key)
            for key in live[: batch - nstale]:
                PyDict_DelItem(rest, key)
            return True
        # 3. all active bans: only a ban gets in, replacing the one that expires first.
        if not for_ban:
            return False
        while True:
            item = heappop(heap)
            p = PyDict_GetItem(bans, item[2])
            if p != NULL and (<_Entry>p).seq == <long long>item[1]:
                PyDict_DelItem(bans, item[2])
                return True

    cdef _rebuild_heap(self):
        cdef list heap = []
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        while PyDict_Next(self._bans, &pos, &k, &v):
            heap.append(((<_Entry>v).until, (<_Entry>v).seq, <object>k))
        heapify(heap)
        self._heap = heap
