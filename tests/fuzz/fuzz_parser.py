"""Coverage-guided fuzz target for the SIP parser twins (atheris / libFuzzer).

Each input goes through both twins (datagram, stream split in two, and the value parsers on the
input as text); the run fails on any exception other than ParseError, and on any difference
between the pure and the Cython twin.

Run 1,000,000 inputs (seeded with the RFC 4475 / RFC 5118 corpus; ``pip install '.[fuzz]'``
installs atheris):

    python tests/fuzz/fuzz_parser.py -runs=1000000 -max_len=2048 tests/fuzz/corpus-work

``tests/fuzz/corpus-work`` is created and seeded on first use; crashes are written by libFuzzer
as ``crash-*`` files in the current directory. Without atheris installed, the same target runs on
random mutations from Python's ``random`` (``--no-atheris N``), which is slower to find bugs.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "fastsip")]

from twin_outcome import datagram_outcome, stream_outcome, value_outcome  # noqa: E402

import fastsip._parser_py as py_twin  # noqa: E402

try:
    import fastsip._parser_c as c_twin
except ImportError:  # pure-only build: still fuzz the reference for non-ParseError exceptions
    c_twin = None


def _check(a: object, b: object | None, what: str, data: bytes) -> None:
    if "'BUG'" in repr(a):
        raise AssertionError(f"{what}: exception other than ParseError: {a!r}\ninput={data!r}")
    if b is not None and a != b:
        raise AssertionError(f"{what}: twins differ\npy={a!r}\nc={b!r}\ninput={data!r}")


def test_one_input(data: bytes) -> None:
    a = datagram_outcome(py_twin, data)
    _check(a, datagram_outcome(c_twin, data) if c_twin else None, "datagram", data)
    cut = data[0] % (len(data) + 1) if data else 0
    chunks = [data[:cut], data[cut:]]
    a = stream_outcome(py_twin, chunks)
    _check(a, stream_outcome(c_twin, chunks) if c_twin else None, "stream", data)
    if len(data) < 256:
        text = data.decode("utf-8", "surrogateescape")
        a = value_outcome(py_twin, text)
        _check(a, value_outcome(c_twin, text) if c_twin else None, "values", data)


def _seed_dir(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        return
    roots = [HERE.parent.parent.parent / "shared" / "corpus", HERE.parent / "data"]
    for root in roots:
        for path in root.glob("*/*.sip"):
            shutil.copy(path, work / path.name)


def _fallback(n: int) -> None:
    seeds = [
        p.read_bytes() for p in (HERE.parent.parent.parent / "shared" / "corpus").glob("*/*.sip")
    ]
    rnd = random.Random(int(os.environ.get("FUZZ_SEED", "1")))
    for i in range(n):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 8)):
            pos = rnd.randrange(len(data) or 1)
            op = rnd.randrange(4)
            if op == 0 and data:
                data[pos] = rnd.randrange(256)
            elif op == 1:
                data[pos:pos] = rnd.choice(
                    [b"\r\n", b" ", b";", b",", b"<", b'"', b"%", b"\x00", b":"]
                )
            elif op == 2:
                del data[pos : pos + rnd.randint(1, 16)]
            else:
                del data[pos:]
        test_one_input(bytes(data))
        if i and i % 100000 == 0:
            print(f"{i} inputs", flush=True)
    print(f"done: {n} inputs, no failure")


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--no-atheris":
        _fallback(int(sys.argv[2]))
        return
    import atheris

    args = list(sys.argv)
    dirs = [a for a in args[1:] if not a.startswith("-")]
    if dirs:
        _seed_dir(Path(dirs[0]))
    atheris.instrument_all()
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
