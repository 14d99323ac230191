"""Public timer wheel: the Cython twin when it is built, else the pure-Python reference.

See :mod:`fastsip._timerwheel_py` for the theory of operation, the firing rule and the
invariants; both twins implement exactly that contract (``tests/fastsip/test_timerwheel.py``
checks them against each other and against a reference model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import twin

__all__ = ("TimerHandle", "TimerWheel")

if TYPE_CHECKING:
    from ._timerwheel_py import TimerHandle, TimerWheel
else:
    _impl = twin("timerwheel")
    TimerHandle = _impl.TimerHandle
    TimerWheel = _impl.TimerWheel
    del _impl
