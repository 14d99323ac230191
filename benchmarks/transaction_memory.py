"""What a completed server transaction keeps alive until Timer J (sans-IO, no server, no clock).

    python -m benchmarks.transaction_memory [--count 5000]

Feeds ``count`` REGISTERs (digest credentials, as sipp's ``register_uac.xml`` sends them) to a
:class:`fastsip.transaction.TransactionLayer`, answers each with a 200 and drops every other
reference, then prints the memory (``tracemalloc``) and the objects the cyclic garbage collector
tracks, per completed transaction. A busy registrar holds rate * 32 s of these (RFC 3261 §17.2.2
Timer J on UDP); every full collection walks them. Compare two trees with ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc

import fastsip
from fastsip.message import make_response
from fastsip.parser import parse_datagram
from fastsip.transaction import TransactionLayer


def register(i: int) -> bytes:
    number = 100000 + i
    return (
        f"REGISTER sip:example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-1;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{number}@example.test>;tag={i}\r\n"
        f"To: <sip:{number}@example.test>\r\nCall-ID: {i}-cid@127.0.0.1\r\nCSeq: 2 REGISTER\r\n"
        f"Contact: <sip:{number}@127.0.0.1:5061>;expires=3600\r\n"
        f'Authorization: Digest username="{number}",realm="example.test",uri="sip:example.test",'
        f'nonce="abcdef0123456789abcdef",response="0123456789abcdef0123456789abcdef",algorithm=MD5,'
        f'qop=auth,nc=00000001,cnonce="xyz"\r\n'
        f"User-Agent: sipp\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=5000)
    args = ap.parse_args(argv)
    n = args.count
    layer = TransactionLayer()
    gc.collect()
    tracemalloc.start()
    objects0, bytes0 = len(gc.get_objects()), tracemalloc.get_traced_memory()[0]
    for i in range(n):
        request = parse_datagram(register(i))
        request.validate()
        txn, _ = layer.receive_request(request, ("127.0.0.1", 5061), reliable=False, now=0.0)
        assert txn is not None
        response = make_response(
            request,
            200,
            to_tag=f"t{i}",
            headers=[
                ("Contact", f"<sip:{100000 + i}@127.0.0.1:5061>;expires=3600"),
                ("Server", "mss"),
            ],
        )
        layer.send_response(txn, response, 0.0)
        del request, response, txn
    gc.collect()
    objects1, bytes1 = len(gc.get_objects()), tracemalloc.get_traced_memory()[0]
    assert layer.server_count == n
    print(
        f"fastsip {fastsip.__version__} (extensions: {fastsip.USING_EXTENSIONS}), {n} completed REGISTER transactions:"
    )
    print(
        f"  {(bytes1 - bytes0) / n:.0f} B and {(objects1 - objects0) / n:.1f} gc-tracked objects per transaction"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
