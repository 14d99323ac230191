"""SIP, SIPS and tel URIs as values (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118).

A :class:`URI` is produced by a parser twin (``parse_uri``) and is treated as immutable: change
one with :meth:`URI.replace`, which returns a new URI that serializes from its fields. A URI that
came from the wire serializes to exactly the text it was parsed from.

The class is the value twin in use (``_values_c`` or ``_values_py``); its field conventions,
shared by both parser twins, are in :mod:`fastsip._values_py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compat import twin
from ._values_py import escape_user

__all__ = ("URI", "escape_user")

if TYPE_CHECKING:
    from ._values_py import URI
else:
    URI = twin("values").URI
