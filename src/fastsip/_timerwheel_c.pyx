# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""Hierarchical hashed timer wheel: the Cython twin of :mod:`fastsip._timerwheel_py`.

The pure twin is the specification (firing rule, layout, invariants I1-I6): read its module
docstring. This twin computes the same floats and ticks in the same order, so the two agree to
the bit; what changes is the storage:

* Timers live in a slab, a C array of 32-byte entries (``prev``/``next`` indices, due tick,
  deadline, sequence number) grown by doubling, with a free list. A slot is a circular
  doubly-linked list of entry indices with a sentinel entry per slot, so schedule/cancel are a
  few integer writes: no dict, no reference counting, and nothing the cyclic GC must track.
* Payloads sit in one Python list, index for index with the slab, so the GC still sees every
  payload (a wheel dropped in a cycle with its payloads is collected) without a GC-tracked
  object per timer, which cost ~30% of schedule time through generation-0 collections.
* The handle is a small untracked object: slab index, sequence number and deadline. Sequence
  numbers are unique across all wheels of the process (a 64-bit counter), so a stale handle or
  one from another wheel can never match a reused entry.
* Bitmaps are ``uint64_t``; the next occupied slot is a count-trailing-zeros, the placement level
  a count-leading-zeros. ``advance`` splices whole lists (a level-0 slot, the ready list) in O(1),
  moves payloads into the result list without touching their reference counts, and sorts only
  when the fired timers are not already in (deadline, sequence) order.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from libc.math cimport ceil, floor
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport qsort

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #if defined(_MSC_VER)
    #include <intrin.h>
    static inline int fs_tw_msb64(uint64_t x) {
        unsigned long i; _BitScanReverse64(&i, x); return (int)i;
    }
    static inline int fs_tw_lsb64(uint64_t x) {
        unsigned long i; _BitScanForward64(&i, x); return (int)i;
    }
    #else
    static inline int fs_tw_msb64(uint64_t x) {
        return 63 - __builtin_clzll((unsigned long long)x);
    }
    static inline int fs_tw_lsb64(uint64_t x) { return __builtin_ctzll((unsigned long long)x); }
    #endif
    static inline int fs_tw_isfinite(double x) { return isfinite(x); }

    typedef struct { double deadline; uint64_t seq; uint32_t index; } fs_tw_key;

    static int fs_tw_key_cmp(const void *pa, const void *pb) {
        const fs_tw_key *a = (const fs_tw_key *)pa, *b = (const fs_tw_key *)pb;
        if (a->deadline < b->deadline) return -1;
        if (a->deadline > b->deadline) return 1;
        return (a->seq > b->seq) - (a->seq < b->seq);
    }
    """
    # Bit scans, isfinite and the sort comparator as C so the hot path calls no Python.
    # The bit scans need x != 0.
    int fs_tw_msb64(uint64_t x) nogil
    int fs_tw_lsb64(uint64_t x) nogil
    bint fs_tw_isfinite(double x) nogil

    ctypedef struct fs_tw_key:
        double deadline
        uint64_t seq
        uint32_t index

    int fs_tw_key_cmp(const void *pa, const void *pb) noexcept nogil

cdef extern from "Python.h":
    # Raw list item access to *move* a reference (the cpython.list declarations take `object`
    # and would add an incref/decref pair per payload).
    PyObject* _list_get "PyList_GET_ITEM"(object lst, Py_ssize_t i)
    void _list_set "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject* item)
    object _list_new "PyList_New"(Py_ssize_t size)

__all__ = (
    "HORIZON_BITS",
    "LEVELS",
    "LEVEL_BITS",
    "MAX_TICKS",
    "SLOTS",
    "TimerHandle",
    "TimerWheel",
)

cdef enum:
    _LEVEL_BITS = 6
    _SLOTS = 64
    _MASK = 63
    _LEVELS = 6
    _HORIZON_BITS = 36
    # Sentinel entries at the start of the slab: one per level slot, then four lists.
    _READY = _LEVELS * _SLOTS
    _OVERFLOW = _READY + 1
    _FIRED = _READY + 2
    _WORK = _READY + 3
    _NSENTINELS = _READY + 4
    _INITIAL_CAPACITY = 1024

LEVEL_BITS = _LEVEL_BITS
SLOTS = _SLOTS
LEVELS = _LEVELS
HORIZON_BITS = _HORIZON_BITS
MAX_TICKS = 2.0 ** 52

cdef double _MAX_TICKS = 4503599627370496.0  # 2**52
cdef int64_t _NO_DUE = -1
cdef int64_t _FAR = (<int64_t>1) << 62
cdef uint32_t _NIL = 0xFFFFFFFF
cdef uint32_t _MAX_ENTRIES = 0xFFFFFFF0
# Process-wide, so a sequence number names one timer of one wheel forever (0 = no timer).
cdef uint64_t _last_seq = 0


ctypedef struct _Entry:
    uint32_t prev
    uint32_t next  # also the free-list link of a free entry
    int64_t due  # due tick relative to the wheel's origin (cur at schedule for ready timers)
    double deadline
    uint64_t seq  # 0 for sentinels and free entries


cdef int64_t _due_tick(double deadline, double tick) except? -1:
    """The smallest integer k with k * tick >= deadline (as _timerwheel_py._due_tick)."""
    cdef double q = deadline / tick
    cdef int64_t k
    if not q < _MAX_TICKS:
        raise ValueError(f"deadline {deadline!r} is too far ahead for tick {tick!r}")
    k = <int64_t>ceil(q)
    # Plain product then compare: no a*b+c expression, so no FMA contraction can change it.
    while <double>k * tick < deadline:
        k += 1
    while <double>(k - 1) * tick >= deadline:
        k -= 1
    return k


cdef int64_t _tick_of(double now, double tick) except? -1:
    """The largest integer k with k * tick <= now (as _timerwheel_py._tick_of)."""
    cdef double q = now / tick
    cdef int64_t k
    if not -_MAX_TICKS < q < _MAX_TICKS:
        raise ValueError(f"time {now!r} is out of range for tick {tick!r}")
    k = <int64_t>floor(q)
    while <double>(k + 1) * tick <= now:
        k += 1
    while <double>k * tick > now:
        k -= 1
    return k


cdef inline void _link(_Entry* e, uint32_t sentinel, uint32_t i) noexcept nogil:
    """Append entry i at the tail of a list (keeps schedule order, I5)."""
    cdef uint32_t last = e[sentinel].prev
    e[i].prev = last
    e[i].next = sentinel
    e[last].next = i
    e[sentinel].prev = i


cdef inline void _unlink(_Entry* e, uint32_t i) noexcept nogil:
    e[e[i].prev].next = e[i].next
    e[e[i].next].prev = e[i].prev


cdef inline void _splice(_Entry* e, uint32_t src, uint32_t dst) noexcept nogil:
    """Move the whole list of src to the tail of dst in O(1)."""
    cdef uint32_t first = e[src].next
    cdef uint32_t last
    if first == src:
        return
    last = e[src].prev
    e[e[dst].prev].next = first
    e[first].prev = e[dst].prev
    e[last].next = dst
    e[dst].prev = last
    e[src].next = src
    e[src].prev = src


@cython.final
@cython.auto_pickle(False)
@cython.freelist(16384)  # bursts of timers recycle handles; keeps at most 768 KiB when idle
cdef class TimerHandle:
    """A scheduled timer, returned by :meth:`TimerWheel.schedule` and passed to ``cancel``.

    Only the wheel creates handles. The handle refers to its slab entry by index and sequence
    number; the wheel keeps the payload while the timer is pending and drops it once the timer
    fires or is cancelled.
    """

    # No object fields: the type is not GC-tracked, 48 bytes with the object header.
    cdef double _deadline
    cdef uint64_t _seq
    cdef uint32_t _index

    @property
    def deadline(self):
        """The deadline the timer was scheduled with, as a float."""
        return self._deadline

    def __repr__(self):
        return f"<TimerHandle deadline={self._deadline!r}>"

    def __reduce__(self):
        raise TypeError("cannot pickle or copy a TimerHandle")


@cython.final
@cython.auto_pickle(False)
cdef class TimerWheel:
    """A hierarchical hashed timer wheel driven by an explicit ``now`` (see the pure twin).

    Args:
        tick: the resolution in seconds (finite, > 0). Timers fire at most one tick late.
        now: the initial time; ``advance`` never moves it backwards.

    Raises:
        ValueError: ``tick`` is not finite and positive, or ``now`` is not finite or is out of
            range (``|now / tick| >= 2**52``).
        TypeError: an option is not a real number, or is passed positionally.
    """

    cdef double _tick
    cdef double _now
    cdef int64_t _origin
    cdef int64_t _cur
    cdef int64_t _next_due
    cdef int64_t _overflow_floor
    cdef Py_ssize_t _count
    cdef uint64_t _occupied[_LEVELS]
    cdef _Entry* _entries
    cdef uint32_t _size  # entries ever used (the slab's high-water mark)
    cdef uint32_t _capacity
    cdef uint32_t _free  # head of the free list, _NIL when empty
    cdef list _payloads  # _payloads[i] is the payload of entry i (None when unused)

    def __cinit__(self, *, double tick=0.01, double now=0.0):
        cdef int i
        cdef int level
        if not (fs_tw_isfinite(tick) and tick > 0.0):
            raise ValueError(f"tick must be finite and > 0, not {tick!r}")
        if not fs_tw_isfinite(now):
            raise ValueError(f"now must be finite, not {now!r}")
        self._tick = tick
        self._origin = _tick_of(now, tick)
        self._now = now
        self._cur = 0
        self._next_due = _NO_DUE
        self._overflow_floor = _FAR
        self._count = 0
        for level in range(_LEVELS):
            self._occupied[level] = 0
        # PyMem (not malloc) so tracemalloc accounts for the slab.
        self._entries = <_Entry*>PyMem_Malloc(_INITIAL_CAPACITY * sizeof(_Entry))
        if self._entries == NULL:
            raise MemoryError()
        self._capacity = _INITIAL_CAPACITY
        self._size = _NSENTINELS
        self._free = _NIL
        for i in range(_NSENTINELS):
            self._entries[i].prev = i
            self._entries[i].next = i
            self._entries[i].due = 0
            self._entries[i].deadline = 0.0
            self._entries[i].seq = 0
        self._payloads = [None] * _NSENTINELS

    def __dealloc__(self):
        PyMem_Free(self._entries)

    @property
    def now(self):
        """The latest ``now`` seen (constructor or ``advance``)."""
        return self._now

    @property
    def tick(self):
        """The tick resolution in seconds."""
        return self._tick

    def __len__(self):
        return self._count

    def __repr__(self):
        return f"<TimerWheel tick={self._tick!r} now={self._now!r} pending={self._count}>"

    def __reduce__(self):
        raise TypeError("cannot pickle or copy a TimerWheel")

    def schedule(self, double deadline, object payload):
        """Schedule ``payload`` to come out of ``advance`` once ``deadline`` has passed.

        Args:
            deadline: absolute time, on the same scale as ``now``. A deadline ``<= now`` fires
                on the next ``advance``.
            payload: any object; ``advance`` returns this very object.

        Returns:
            A handle for :meth:`cancel`.

        Raises:
            ValueError: ``deadline`` is not finite, or is ``2**52`` ticks or more from zero.
            TypeError: ``deadline`` is not a real number.
        """
        global _last_seq
        cdef TimerHandle handle
        cdef int64_t due
        cdef uint32_t i
        cdef bint ready
        cdef _Entry* e
        if not fs_tw_isfinite(deadline):
            raise ValueError(f"deadline must be finite, not {deadline!r}")
        ready = deadline <= self._now
        if ready:
            due = self._cur
        else:
            due = _due_tick(deadline, self._tick) - self._origin
        handle = TimerHandle.__new__(TimerHandle)
        i = self._alloc(payload)  # may grow (move) the slab: read self._entries after it
        _last_seq += 1
        e = self._entries
        e[i].due = due
        e[i].deadline = deadline
        e[i].seq = _last_seq
        handle._deadline = deadline
        handle._seq = _last_seq
        handle._index = i
        if ready:
            _link(e, _READY, i)
        else:
            self._place(i)
            if self._next_due != _NO_DUE and due < self._next_due:
                self._next_due = due
        self._count += 1
        return handle

    def cancel(self, TimerHandle handle not None):
        """Cancel a pending timer in O(1).

        Args:
            handle: a handle returned by :meth:`schedule`.

        Returns:
            True if the timer was pending in this wheel; False if it already fired, was already
            cancelled, or belongs to another wheel.

        Raises:
            TypeError: ``handle`` is not a handle of this twin.
        """
        cdef uint32_t i = handle._index
        cdef _Entry* e = self._entries
        if i >= self._size or e[i].seq != handle._seq:
            return False
        _unlink(e, i)
        e[i].seq = 0
        e[i].next = self._free
        self._free = i
        self._count -= 1
        if e[i].due == self._next_due:
            self._next_due = _NO_DUE
        self._payloads[i] = None  # last: dropping the payload may run arbitrary code
        return True

    def advance(self, double now):
        """Move the clock to ``now`` and return the payloads of the timers that fired.

        Args:
            now: the current time. A value below :attr:`now` leaves the clock where it is.

        Returns:
            The payloads, in deadline order, ties in schedule order (see the firing rule).

        Raises:
            ValueError: ``now`` is not finite, or is out of range for the tick.
            TypeError: ``now`` is not a real number.
        """
        cdef int64_t target
        if not fs_tw_isfinite(now):
            raise ValueError(f"now must be finite, not {now!r}")
        if now > self._now:
            target = _tick_of(now, self._tick) - self._origin
            self._now = now
            if target > self._cur:
                self._run(target)
                if self._next_due != _NO_DUE and self._next_due <= self._cur:
                    self._next_due = _NO_DUE
        # After the wheel's timers: among equal deadlines those were scheduled first.
        _splice(self._entries, _READY, _FIRED)
        if self._entries[_FIRED].next == _FIRED:
            return []
        return self._drain()

    def next_deadline(self):
        """When the next timer becomes due, for a driver that sleeps until then.

        Returns:
            None when nothing is pending; :attr:`now` when a timer scheduled in the past is
            waiting; otherwise ``due(d) * tick`` for the earliest pending deadline ``d``: the
            deadline rounded up to the grid, the smallest grid time at which ``advance`` fires
            it (so ``advance(next_deadline())`` returns at least one payload).
        """
        if self._entries[_READY].next != _READY:
            return self._now
        if self._count == 0:
            return None
        if self._next_due == _NO_DUE:
            self._next_due = self._earliest_due()
        return <double>(self._origin + self._next_due) * self._tick

    # -- internals (C-level: called per timer or per event, never from Python) ---------------

    cdef uint32_t _alloc(self, object payload) except? 0:
        """Take a free slab entry (growing the slab if needed) and store the payload there."""
        cdef uint32_t i = self._free
        cdef uint32_t capacity
        cdef _Entry* grown
        if i != _NIL:
            self._free = self._entries[i].next
            self._payloads[i] = payload  # replaces None: no code runs
            return i
        if self._size == self._capacity:
            if self._capacity >= _MAX_ENTRIES:
                raise OverflowError("too many pending timers")
            capacity = self._capacity * 2 if self._capacity < _MAX_ENTRIES // 2 else _MAX_ENTRIES
            grown = <_Entry*>PyMem_Realloc(self._entries, capacity * sizeof(_Entry))
            if grown == NULL:
                raise MemoryError()
            self._entries = grown
            self._capacity = capacity
        self._payloads.append(payload)
        i = self._size
        self._size += 1
        return i

    cdef inline void _place(self, uint32_t i) noexcept:
        """File entry i (due > cur) by the placement rule (I1)."""
        cdef _Entry* e = self._entries
        cdef int64_t due = e[i].due
        cdef uint64_t diff = <uint64_t>(due ^ self._cur)
        cdef int level
        cdef int index
        if diff >> _HORIZON_BITS:
            _link(e, _OVERFLOW, i)
            if due < self._overflow_floor:
                self._overflow_floor = due
        else:
            level = fs_tw_msb64(diff) // _LEVEL_BITS
            index = <int>((due >> (_LEVEL_BITS * level)) & _MASK)
            _link(e, <uint32_t>(level * _SLOTS + index), i)
            self._occupied[level] |= (<uint64_t>1) << index

    cdef int _next_event(self) noexcept:
        """level * SLOTS + index of the first occupied slot of the lowest occupied level, or -1."""
        cdef _Entry* e = self._entries
        cdef int level
        cdef int digit
        cdef int index
        cdef uint32_t s
        cdef uint64_t bits
        for level in range(_LEVELS):
            digit = <int>((self._cur >> (_LEVEL_BITS * level)) & _MASK)
            if digit == _MASK:
                continue  # no slot above it (and a shift by 64 would be undefined in C)
            bits = self._occupied[level] >> (digit + 1)
            while bits:
                index = digit + 1 + fs_tw_lsb64(bits)
                s = <uint32_t>(level * _SLOTS + index)
                if e[s].next != s:
                    return <int>s
                self._occupied[level] &= ~((<uint64_t>1) << index)  # stale bit (I2)
                bits &= bits - 1
        return -1

    cdef void _run(self, int64_t target) noexcept:
        """Process events up to tick target (> cur), moving fired entries to the fired list."""
        cdef _Entry* e = self._entries  # nothing here allocates: the slab cannot move
        cdef int event
        cdef int level
        cdef int index
        cdef int shift
        cdef int block
        cdef int64_t t
        cdef int64_t skip
        cdef uint32_t src
        cdef uint32_t i
        cdef uint32_t nxt
        while True:
            event = self._next_event()
            if event >= 0:
                level = event // _SLOTS
                index = event & _MASK
                shift = _LEVEL_BITS * level
                block = shift + _LEVEL_BITS
                t = ((self._cur >> block) << block) | ((<int64_t>index) << shift)
                if t > target:
                    break
                self._cur = t
                src = <uint32_t>event
                self._occupied[level] &= ~((<uint64_t>1) << index)
                if level == 0:
                    _splice(e, src, _FIRED)  # a level-0 slot is one tick: all due at t
                    continue
            elif e[_OVERFLOW].next != _OVERFLOW:
                t = ((self._cur >> _HORIZON_BITS) + 1) << _HORIZON_BITS
                skip = (self._overflow_floor >> _HORIZON_BITS) << _HORIZON_BITS
                if skip > t:
                    t = skip
                if t > target:
                    break
                self._cur = t
                src = _OVERFLOW
                self._overflow_floor = _FAR
            else:
                break
            # Detach first: re-examined overflow timers may be linked back onto the overflow.
            _splice(e, src, _WORK)
            i = e[_WORK].next
            while i != _WORK:
                nxt = e[i].next
                if e[i].due == t:
                    _link(e, _FIRED, i)
                else:
                    self._place(i)  # cascade to a lower level (or back to overflow)
                i = nxt
            e[_WORK].next = _WORK
            e[_WORK].prev = _WORK
        self._cur = target

    cdef Py_ssize_t _fired_count(self) noexcept:
        cdef _Entry* e = self._entries
        cdef Py_ssize_t n = 0
        cdef uint32_t i = e[_FIRED].next
        while i != _FIRED:
            n += 1
            i = e[i].next
        return n

    cdef list _drain(self):
        """Empty the fired list into a list of payloads in (deadline, sequence) order."""
        cdef _Entry* e
        cdef uint32_t i
        cdef uint32_t nxt
        cdef Py_ssize_t n
        cdef Py_ssize_t k
        cdef bint ordered = True
        cdef fs_tw_key* keys
        cdef list payloads = self._payloads
        cdef list out
        cdef PyObject* payload
        while True:
            n = self._fired_count()
            # The one GC-tracked allocation here: it may run a collection, whose finalizers may
            # re-enter this wheel and cancel (or drain) fired timers. Recount; nothing below
            # allocates Python objects, so the list stays as counted.
            out = _list_new(n)
            if self._fired_count() == n:
                break
        if n == 0:
            return out
        e = self._entries
        i = e[_FIRED].next
        while e[i].next != _FIRED:
            nxt = e[i].next
            if e[nxt].deadline < e[i].deadline or (
                e[nxt].deadline == e[i].deadline and e[nxt].seq < e[i].seq
            ):
                ordered = False
                break
            i = nxt
        if not ordered:
            # Rare: past deadlines mixed with wheel timers, or several deadlines in one tick
            # out of order. Sorting by (deadline, seq) is schedule order among ties.
            keys = <fs_tw_key*>PyMem_Malloc(n * sizeof(fs_tw_key))
            if keys == NULL:
                raise MemoryError()  # nothing moved yet: the timers stay in the fired list
            i = e[_FIRED].next
            for k in range(n):
                keys[k].deadline = e[i].deadline
                keys[k].seq = e[i].seq
                keys[k].index = i
                i = e[i].next
            qsort(keys, n, sizeof(fs_tw_key), fs_tw_key_cmp)
            e[_FIRED].next = _FIRED
            e[_FIRED].prev = _FIRED
            for k in range(n):
                _link(e, _FIRED, keys[k].index)
            PyMem_Free(keys)
        # Move each payload reference from the slab's list into the result; None takes its place.
        i = e[_FIRED].next
        for k in range(n):
            nxt = e[i].next
            payload = _list_get(payloads, i)
            _list_set(out, k, payload)
            Py_INCREF(None)
            _list_set(payloads, i, <PyObject*>None)
            e[i].seq = 0
            e[i].next = self._free
            self._free = i
            i = nxt
        e[_FIRED].next = _FIRED
        e[_FIRED].prev = _FIRED
        self._count -= n
        return out

    cdef int64_t _earliest_due(self) noexcept:
        """The minimum due tick over the levels and the overflow (count > 0, ready empty)."""
        cdef _Entry* e = self._entries
        cdef int event = self._next_event()
        cdef int64_t best = _FAR
        cdef uint32_t s
        cdef uint32_t i
        if event >= 0:
            if event < _SLOTS:
                return ((self._cur >> _LEVEL_BITS) << _LEVEL_BITS) | event
            s = <uint32_t>event
        else:
            s = _OVERFLOW
        i = e[s].next
        while i != s:
            if e[i].due < best:
                best = e[i].due
            i = e[i].next
        if event < 0:
            self._overflow_floor = best
        return best
