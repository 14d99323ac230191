"""The ``mss`` command line (``python -m mss`` too).

Sub-commands grow with the server; for now ``mss parse FILE`` shows what the SIP parser makes of
a message and ``mss version`` tells the version and whether the Cython extensions are in use.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ("main",)


def _cmd_version(args: argparse.Namespace) -> int:
    import fastsip

    print(f"mss (fastsip {fastsip.__version__}); Cython extensions in use: {fastsip.USING_EXTENSIONS}")
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    from fastsip.__main__ import main as parse_main

    return parse_main(list(args.files))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mss", description="mss: a SIP server and PBX on fastsip.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("version", help="print the version and whether the Cython extensions are used")
    p.set_defaults(func=_cmd_version)
    p = sub.add_parser("parse", help="parse SIP message files and print what the parser saw")
    p.add_argument("files", nargs="+", help="files holding one SIP message each ('-' = stdin)")
    p.set_defaults(func=_cmd_parse)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
