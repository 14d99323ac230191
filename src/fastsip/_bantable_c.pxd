# Declarations of the Cython ban table, so a Cython transport can ``cimport`` it and gate
# datagrams with ``table.check_c(ip, now)`` without a Python-level call.

cimport cython


@cython.final
cdef class _Entry:
    cdef double* ring          # failure timestamps: a ring of ``cap`` slots, oldest at ``head``
    cdef int cap
    cdef int head
    cdef int size
    cdef double until          # the ban is active while now < until (-inf: never banned)
    cdef double success        # last successful authentication (valid when has_success)
    cdef bint has_success
    cdef long long count       # ban count (repeat offences)
    cdef long long seq         # ``seq`` of this entry's current heap item

    cdef void clear_failures(self) noexcept
    cdef double newest(self) noexcept
    cdef int push_failure(self, double now, double cutoff, int max_failures) except -1
    cdef int count_after(self, double cutoff) noexcept


cdef class BanTable:
    cdef dict _bans            # ip -> _Entry with a ban not yet seen to expire
    cdef dict _rest            # ip -> _Entry, ordered by last write (oldest first)
    cdef list _heap            # (until, seq, ip), lazily deleted
    cdef Py_ssize_t _max_entries
    cdef Py_ssize_t _batch
    cdef double _window
    cdef int _max_failures
    cdef long long _seq

    cdef int check_c(self, object ip, double now) except -1
    cdef _Entry _find(self, object ip)
    cdef _Entry _touch(self, object ip, double now)
    cdef bint _make_room(self, double now, bint for_ban) except -1
    cdef _rebuild_heap(self)
