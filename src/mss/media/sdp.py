"""SDP (RFC 4566) offer/answer (RFC 3264) for one G.711 audio stream.

Theory of operation
-------------------
:func:`parse_sdp` reads the lines the answerer needs (``o=``, ``c=``, ``m=``, ``a=rtpmap``,
``a=fmtp``, ``a=ptime``, direction attributes) and ignores the rest; malformed input raises
:class:`SdpError` naming the line, and the SIP side answers 488 with a ``Warning`` (RFC 3261
§21.4.26, §20.43).

:func:`negotiate` picks the first audio stream with a non-zero port and an RTP/AVP(F) profile,
and in it the offerer's most preferred of PCMU / PCMA (static payload types 0 and 8, or a
dynamic type whose ``rtpmap`` names them at 8000 Hz), plus ``telephone-event/8000`` with its
payload type and ``fmtp`` (RFC 4733 §7.1.1) when offered. No usable stream or codec → 488.

:func:`answer_sdp` answers every ``m=`` line of the offer in order (RFC 3264 §6): the chosen one
with our address, port, the codec and telephone-event, a ``ptime`` of 20 ms and the mirrored
direction; the others with port 0 (rejected). :func:`offer_sdp` is our offer when the caller's
INVITE had no SDP (the answer comes in the ACK, :func:`negotiate` reads it the same way).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = (
    "Negotiated",
    "SdpError",
    "SessionDescription",
    "StreamDescription",
    "answer_sdp",
    "negotiate",
    "offer_sdp",
    "parse_sdp",
)

MAX_SDP = 65536
_PROTOS = ("RTP/AVP", "RTP/AVPF")
_CODECS = {"PCMU": 0, "PCMA": 8}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
#: our telephone-event payload type in an offer (a common choice; any 96-127 would do)
OFFER_TE_PT = 101


class SdpError(ValueError):
    """An SDP body we cannot use (malformed, or nothing in common).

    Attributes:
        field: the SDP line or field at fault (``"m"``, ``"c"``, ``"codec"``...).
        status: the SIP status to answer (488 Not Acceptable Here).
        warning: the ``Warning`` code (RFC 3261 §20.43: 304 media type, 305 media format,
            399 miscellaneous).
    """

    def __init__(self, field: str, reason: str, *, warning: int = 399) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = 488
        self.warning = warning


@dataclass(slots=True)
class StreamDescription:
    """One ``m=`` section."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str | None = None
    ptime: int | None = None
    line: str = ""


@dataclass(slots=True)
class SessionDescription:
    """A parsed SDP body."""

    connection: str | None = None
    direction: str = "sendrecv"
    streams: list[StreamDescription] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both sides agreed on.

    Attributes:
        payload_type: 0 (PCMU) or 8 (PCMA) as numbered in the offer (a dynamic number when the
            offer mapped one to PCMU/PCMA).
        codec: ``"PCMU"`` or ``"PCMA"``.
        static_type: the codec's static type (0 or 8), which selects the G.711 table.
        te_payload_type: telephone-event payload type, None when not offered.
        te_fmtp: its ``fmtp`` events (``"0-16"``).
        remote_host / remote_port: where the peer wants RTP.
        index: position of the stream among the ``m=`` lines.
        direction: the direction of our answer (from our point of view).
    """

    payload_type: int
    codec: str
    static_type: int
    te_payload_type: int | None
    te_fmtp: str
    remote_host: str
    remote_port: int
    index: int
    direction: str = "sendrecv"

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("c", f"expected 'IN IP4|IP6 <address>', got {value[:60]!r}")
    addr = parts[2].split("/", 1)[0]
    try:
        return ipaddress.ip_address(addr).compressed
    except ValueError:
        raise SdpError("c", f"not an IP address: {addr[:60]!r}") from None


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body (see the module docstring).

    Raises:
        SdpError: not UTF-8 text, too large, or a malformed ``c=``/``m=``/``a=rtpmap`` line.
    """
    if len(body) > MAX_SDP:
        raise SdpError("body", f"{len(body)} bytes, at most {MAX_SDP}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("body", "not UTF-8 text") from None
    sd = SessionDescription()
    cur: StreamDescription | None = None
    seen_v = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError("line", f"not '<type>=<value>': {line[:60]!r}")
        kind, value = line[0], line[2:]
        if kind == "v":
            if value.strip() != "0":
                raise SdpError("v", f"version {value[:10]!r}, expected 0")
            seen_v = True
        elif kind == "c":
            if cur is None:
                sd.connection = _connection(value)
            else:
                cur.connection = _connection(value)
        elif kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(
                    "m", f"expected '<media> <port> <proto> <fmt>...', got {value[:60]!r}"
                )
            port_text = parts[1].split("/", 1)[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError("m", f"bad port {parts[1][:20]!r}")
            cur = StreamDescription(parts[0], int(port_text), parts[2], parts[3:], line=line)
            sd.streams.append(cur)
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in _DIRECTIONS and not arg:
                if cur is None:
                    sd.direction = name
                else:
                    cur.direction = name
            elif cur is None:
                continue
            elif name == "rtpmap":
                pt_text, _, enc = arg.partition(" ")
                enc_parts = enc.strip().split("/")
                if not pt_text.isdigit() or len(enc_parts) < 2 or not enc_parts[1].isdigit():
                    raise SdpError("rtpmap", f"expected '<pt> <name>/<rate>', got {arg[:60]!r}")
                cur.rtpmap[int(pt_text)] = (enc_parts[0], int(enc_parts[1]))
            elif name == "fmtp":
                pt_text, _, params = arg.partition(" ")
                if pt_text.isdigit():
                    cur.fmtp[int(pt_text)] = params.strip()
            elif name == "ptime" and arg.strip().isdigit():
                cur.ptime = int(arg.strip())
    if not seen_v:
        raise SdpError("v", "missing (not an SDP body)")
    if not sd.streams:
        raise SdpError("m", "no media stream", warning=304)
    return sd


def negotiate(sd: SessionDescription) -> Negotiated:
    """Choose the stream, codec and telephone-event (offer, or the answer to our offer).

    Raises:
        SdpError: no audio stream over RTP/AVP(F) with PCMU or PCMA (warning 304/305).
    """
    audio_seen = False
    for index, st in enumerate(sd.streams):
        if st.media != "audio" or st.port == 0:
            continue
        audio_seen = True
        if st.proto not in _PROTOS:
            continue
        chosen: tuple[int, str] | None = None
        te: int | None = None
        for fmt in st.formats:
            if not fmt.isdigit() or int(fmt) > 127:
                continue
            pt = int(fmt)
            name, rate = st.rtpmap.get(pt, ("", 0))
            if not name:
                name, rate = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}.get(pt, ("", 0))
            upper = name.upper()
            if chosen is None and upper in _CODECS and rate == 8000:
                chosen = (pt, upper)
            elif te is None and upper == "TELEPHONE-EVENT" and rate == 8000:
                te = pt
        if chosen is None:
            continue
        host = st.connection or sd.connection
        if host is None:
            raise SdpError("c", "no connection address for the audio stream")
        direction = st.direction or sd.direction
        pt, codec = chosen
        return Negotiated(
            payload_type=pt,
            codec=codec,
            static_type=_CODECS[codec],
            te_payload_type=te,
            te_fmtp=(st.fmtp.get(te, "") or "0-16") if te is not None else "",
            remote_host=host,
            remote_port=st.port,
            index=index,
            direction=_MIRROR.get(direction, "sendrecv"),
        )
    if not audio_seen:
        raise SdpError("m", "no audio stream", warning=304)
    raise SdpError("codec", "no common codec (PCMU or PCMA over RTP/AVP)", warning=305)


def _origin(host: str, session_id: int, version: int) -> tuple[str, str]:
    family = "IP6" if ":" in host else "IP4"
    return family, f"o=mss {session_id} {version} IN {family} {host}"


def answer_sdp(
    sd: SessionDescription,
    neg: Negotiated,
    *,
    host: str,
    port: int,
    session_id: int,
    version: int = 1,
) -> bytes:
    """Our answer to ``sd`` (see the module docstring)."""
    family, origin = _origin(host, session_id, version)
    lines = ["v=0", origin, "s=mss", f"c=IN {family} {host}", "t=0 0"]
    for index, st in enumerate(sd.streams):
        if index != neg.index:
            fmt = " ".join(st.formats) or "0"
            lines.append(f"m={st.media} 0 {st.proto} {fmt}")
            continue
        fmts = [str(neg.payload_type)]
        if neg.te_payload_type is not None:
            fmts.append(str(neg.te_payload_type))
        lines.append(f"m=audio {port} {st.proto} {' '.join(fmts)}")
        lines.append(f"a=rtpmap:{neg.payload_type} {neg.codec}/8000")
        if neg.te_payload_type is not None:
            lines.append(f"a=rtpmap:{neg.te_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{neg.te_payload_type} {neg.te_fmtp}")
        lines.append("a=ptime:20")
        lines.append(f"a={neg.direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def offer_sdp(*, host: str, port: int, session_id: int, version: int = 1) -> bytes:
    """Our offer (PCMU, PCMA, telephone-event) for an INVITE that came without SDP."""
    family, origin = _origin(host, session_id, version)
    lines = [
        "v=0",
        origin,
        "s=mss",
        f"c=IN {family} {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 {OFFER_TE_PT}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{OFFER_TE_PT} telephone-event/8000",
        f"a=fmtp:{OFFER_TE_PT} 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
