"""mss: a SIP server and PBX on asyncio, built on the fastsip core."""

from __future__ import annotations

__all__ = ()
