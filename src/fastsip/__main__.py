"""``python -m fastsip FILE...``: parse SIP message files and print what the parser saw."""

from __future__ import annotations

import argparse
import json
import sys

from . import USING_EXTENSIONS, ParseError, __version__
from .message import Request
from .parser import parse_datagram


def describe(data: bytes) -> dict[str, object]:
    """Parse one message and return a JSON-friendly summary (raises ParseError)."""
    msg = parse_datagram(data)
    out: dict[str, object] = {}
    if isinstance(msg, Request):
        out["request"] = {"method": msg.method, "uri": msg.uri_text, "version": msg.version}
    else:
        out["response"] = {"status": msg.status, "reason": msg.reason, "version": msg.version}
    out["headers"] = [[n, v] for n, v in msg.headers]
    try:
        msg.validate()
        out["valid"] = True
        out["via"] = [str(v) for v in msg.vias]
        out["from"] = str(msg.from_)
        out["to"] = str(msg.to)
        out["call_id"] = msg.call_id
        out["cseq"] = str(msg.cseq)
        out["contacts"] = [str(c) for c in msg.contacts]
    except ParseError as e:
        out["valid"] = False
        out["error"] = {"status": e.status_hint, "reason": e.reason}
    out["body_bytes"] = len(msg.body)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastsip", description=__doc__)
    ap.add_argument("files", nargs="+", help="files holding one SIP message each ('-' = stdin)")
    ap.add_argument(
        "--version",
        action="version",
        version=f"fastsip {__version__} (extensions: {USING_EXTENSIONS})",
    )
    args = ap.parse_args(argv)
    status = 0
    for name in args.files:
        data = sys.stdin.buffer.read() if name == "-" else open(name, "rb").read()
        try:
            result: dict[str, object] = describe(data)
        except ParseError as e:
            result = {
                "parse_error": {"status": e.status_hint, "reason": e.reason, "offset": e.offset}
            }
            status = 1
        print(json.dumps({"file": name, **result}, ensure_ascii=False, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
