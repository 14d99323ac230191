# cython: language_level=3
"""Batched UDP receive with ``recvmmsg(2)``: the fast twin of :mod:`mss.transport._rx_py`.

Same class, same contract (read that module's docstring: it is the specification). Why C:
under a flood from a banned source the server must spend at most 5 µs per dropped datagram
(issue 6), and on a virtual machine one ``recvfrom`` system call alone costs 1.5–3 µs. Here one
``recvmmsg`` fetches up to ``batch`` datagrams, and a dropped one costs a comparison of its
source with the previous datagram's and one call of the gate with a cached ``host`` string and
a shared ``now`` float: no Python object is created for it. ``bytes`` and the address tuple are
built only for datagrams the gate admits.

Linux only (``recvmmsg`` is a Linux/BSD call; setup.py builds this module on Linux). The
buffers (``batch`` × 64 KiB) are allocated once; the kernel touches only the pages a datagram
fills.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, strerror

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct timespec:
        pass
    int recvmmsg(int sockfd, mmsghdr *msgvec, unsigned int vlen, int flags, timespec *timeout)
    int MSG_DONTWAIT
    int EWOULDBLOCK
    int AF_INET
    int AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        unsigned int s_addr
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<netdb.h>" nogil:
    int getnameinfo(const sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                    char *serv, socklen_t servlen, int flags)
    int NI_NUMERICHOST
    int NI_MAXHOST

__all__ = ("BUFFER_SIZE", "Receiver")

BUFFER_SIZE = 65536
cdef enum:
    _BUFFER_SIZE = 65536
    _KEY_MAX = 16  # an IPv6 address


cdef class Receiver:
    """Reads one non-blocking UDP socket with ``recvmmsg``, ``batch`` datagrams per call."""

    cdef int fd
    cdef readonly int batch
    cdef mmsghdr *msgs
    cdef iovec *iovs
    cdef sockaddr_storage *names
    cdef char *buffers
    # the last source seen: its address (+ scope) as raw bytes, and its host string
    cdef unsigned char last_key[_KEY_MAX]
    cdef int last_key_len
    cdef object last_host
    cdef object sock  # kept alive so the descriptor stays valid while we hold it

    def __cinit__(self, sock, *, int batch=64):
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.fd = -1
        self.batch = batch
        self.msgs = <mmsghdr *>calloc(batch, sizeof(mmsghdr))
        self.iovs = <iovec *>calloc(batch, sizeof(iovec))
        self.names = <sockaddr_storage *>calloc(batch, sizeof(sockaddr_storage))
        self.buffers = <char *>malloc(<size_t>batch * _BUFFER_SIZE)
        if not self.msgs or not self.iovs or not self.names or not self.buffers:
            raise MemoryError()
        cdef int i
        for i in range(batch):
            self.iovs[i].iov_base = self.buffers + <size_t>i * _BUFFER_SIZE
            self.iovs[i].iov_len = _BUFFER_SIZE
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_name = &self.names[i]
        self.last_key_len = -1
        self.last_host = None
        self.sock = sock
        self.fd = sock.fileno()

    def __dealloc__(self):
        free(self.msgs)
        free(self.iovs)
        free(self.names)
        free(self.buffers)

    @property
    def closed(self):
        return self.fd < 0

    def close(self):
        """Read nothing more (idempotent)."""
        self.fd = -1
        self.sock = None

    cdef object _host(self, sockaddr_storage *name, socklen_t namelen):
        # The host string of a source, as socket.recvfrom spells it: inet_ntop for IPv4 (what
        # getnameinfo(NI_NUMERICHOST) gives too), getnameinfo for IPv6 (it adds %scope for
        # link-local addresses, as CPython's makeipaddr does).
        cdef char text[64]
        cdef sockaddr_in *sin
        cdef int rc
        if name.ss_family == AF_INET:
            sin = <sockaddr_in *>name
            if inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text)) == NULL:
                return None
        else:
            rc = getnameinfo(<sockaddr *>name, namelen, text, sizeof(text), NULL, 0, NI_NUMERICHOST)
            if rc != 0:
                return None
        return text.decode("ascii")

    cdef object _addr(self, sockaddr_storage *name, object host):
        cdef sockaddr_in6 *sin6
        if name.ss_family == AF_INET:
            return (host, ntohs((<sockaddr_in *>name).sin_port))
        sin6 = <sockaddr_in6 *>name
        return (host, ntohs(sin6.sin6_port), ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)

    def drain(self, int limit, allow, double now, dispatch, report):
        """Read up to ``limit`` datagrams, until the socket is empty; ``(read, dropped)``."""
        cdef int count = 0
        cdef int dropped = 0
        cdef int want, got, i, err
        cdef sockaddr_storage *name
        cdef const unsigned char *key
        cdef int key_len
        cdef object now_obj = now
        cdef object host
        cdef object addr
        cdef object data
        while count < limit and self.fd >= 0:
            want = limit - count
            if want > self.batch:
                want = self.batch
            for i in range(want):
                self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
                self.msgs[i].msg_hdr.msg_flags = 0
            got = recvmmsg(self.fd, self.msgs, <unsigned int>want, MSG_DONTWAIT, NULL)
            if got < 0:
                err = errno
                if err == EAGAIN or err == EWOULDBLOCK:
                    break
                if err == EINTR:
                    continue
                count += 1
                report(OSError(err, strerror(err).decode("utf-8", "replace")), None)
                continue
            if got == 0:
                break
            for i in range(got):
                count += 1
                if self.fd < 0:  # closed by a handler of an earlier datagram of this batch
                    break
                name = &self.names[i]
                if name.ss_family == AF_INET:
                    key = <const unsigned char *>&(<sockaddr_in *>name).sin_addr
                    key_len = 4
                elif name.ss_family == AF_INET6:
                    key = <const unsigned char *>&(<sockaddr_in6 *>name).sin6_addr
                    key_len = 16
                else:
                    continue  # not an IP datagram: nothing a UDP listener can answer
                if key_len != self.last_key_len or memcmp(key, self.last_key, key_len) != 0 or (
                    key_len == 16 and (<sockaddr_in6 *>name).sin6_scope_id != 0
                ):
                    host = self._host(name, self.msgs[i].msg_hdr.msg_namelen)
                    if host is None:
                        continue
                    self.last_host = host
                    memcpy(self.last_key, key, key_len)
                    self.last_key_len = key_len
                else:
                    host = self.last_host
                try:
                    if allow is not None and not allow(host, now_obj):
                        dropped += 1
                        continue
                    addr = self._addr(name, host)
                    data = PyBytes_FromStringAndSize(
                        <char *>self.iovs[i].iov_base, self.msgs[i].msg_len
                    )
                    dispatch(data, addr)
                except Exception as e:  # never let one datagram stop the reader
                    report(e, self._addr(name, host))
            if got < want:  # the socket is empty now
                break
        return count, dropped
