"""Batched UDP receive: the twin of this process (``recvmmsg`` in Cython, or pure Python).

:class:`Receiver` is :class:`mss.transport._rx_c.Receiver` (Linux, ``recvmmsg(2)``) when that
extension is built and importable, else :class:`mss.transport._rx_py.Receiver`
(``recvfrom_into``, one datagram per system call), which is its specification. Chosen once, at
import, by fastsip's switch (``FASTSIP_NO_EXTENSIONS`` forces the pure twin;
``FASTSIP_REQUIRE_EXTENSIONS`` makes a missing extension an ImportError on Linux, the only
platform it is built for). ``USING_EXTENSION`` says which one is live.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from fastsip._compat import NO_EXTENSIONS, REQUIRE_EXTENSIONS

__all__ = ("BUFFER_SIZE", "USING_EXTENSION", "Receiver")

USING_EXTENSION = False

if TYPE_CHECKING or NO_EXTENSIONS:
    from ._rx_py import BUFFER_SIZE, Receiver
else:
    try:
        from ._rx_c import BUFFER_SIZE, Receiver

        USING_EXTENSION = True
    except ImportError:
        if REQUIRE_EXTENSIONS and sys.platform.startswith("linux"):
            raise
        from ._rx_py import BUFFER_SIZE, Receiver
