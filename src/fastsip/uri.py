"""SIP, SIPS and tel URIs as values (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118).

A :class:`URI` is produced by a parser twin (``parse_uri``) and is treated as immutable: change
one with :meth:`URI.replace`, which returns a new URI that serializes from its fields. A URI that
came from the wire serializes to exactly the text it was parsed from.

Field conventions (shared by both parser twins, which must produce equal values):

* ``scheme`` lower case (``sip``, ``sips``, ``tel`` or any other scheme, RFC 3261 §19.1.1 allows
  unknown schemes; RFC 4475 §3.3.2 requires parsing them).
* ``user`` and ``password`` with %HH escapes decoded exactly once (RFC 4475 §3.1.1.3); for tel
  URIs ``user`` is the telephone-subscriber number; None when absent.
* ``host`` as written (an IPv6 reference keeps its brackets); :attr:`URI.host_address` strips them.
* ``port`` an int or None (no default applied: RFC 5118 §4.3).
* ``params``: uri-parameters in order, names lower-cased and decoded, values decoded, a valueless
  parameter maps to None (``lr``). ``headers``: URI headers (after ``?``), decoded.
* ``opaque``: for schemes other than sip/sips/tel, everything after ``scheme:`` verbatim.
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
