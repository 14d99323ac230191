"""Digest authentication micro-benchmarks (issue "micro suite: digest verification").

Run: ``.venv/bin/pytest benchmarks/bench_digest.py --benchmark-group-by=group``.

Digest has no Cython twin, so instead of py/c rows each group has a *floor*: the same hashes
done inline with hashlib and no checks, which is what any implementation must pay. The gap
between ``verify`` and ``floor`` is fastsip's parameter handling and constant-time compare.
Not part of the test run (``benchmarks/`` is outside ``testpaths``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from fastsip.digest import (
    NonceCounter,
    NonceFactory,
    client_authorization,
    ha1,
    verify_response,
)
from fastsip.parser import parse_auth

NOW = 1_700_000_000.0
FACTORY = NonceFactory(secret=bytes(range(32)))
NONCE = FACTORY.make(NOW)
URI = "sip:example.com"
HASHLIB = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _params(algorithm: str, qop: str | None) -> dict[str, str]:
    value = client_authorization(
        username="alice",
        realm="example.com",
        password="secret",
        method="REGISTER",
        uri=URI,
        nonce=NONCE,
        algorithm=algorithm,
        qop=qop,
        cnonce="0a4f113b",
    )
    return dict(parse_auth(value).params)


@pytest.mark.parametrize("qop", ["auth", None])
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_response(benchmark: Callable[..., Any], algorithm: str, qop: str | None) -> None:
    benchmark.group = f"verify {algorithm} qop={qop}"  # type: ignore[attr-defined]
    params = _params(algorithm, qop)
    key = ha1("alice", "example.com", "secret", algorithm)
    assert benchmark(verify_response, params, method="REGISTER", ha1_hex=key) is True


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_floor(benchmark: Callable[..., Any], algorithm: str) -> None:
    """The bare hashlib work of a qop=auth verification, for comparison."""
    benchmark.group = f"verify {algorithm} qop=auth"  # type: ignore[attr-defined]
    params = _params(algorithm, "auth")
    key = ha1("alice", "example.com", "secret", algorithm)
    hasher = HASHLIB[algorithm]
    nonce, nc, cnonce, response = (
        params["nonce"],
        params["nc"],
        params["cnonce"],
        params["response"],
    )

    def floor() -> bool:
        ha2 = hasher(f"REGISTER:{URI}".encode()).hexdigest()
        data = f"{key}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()
        return hasher(data).hexdigest() == response

    assert benchmark(floor) is True


def test_nonce_make(benchmark: Callable[..., Any]) -> None:
    benchmark.group = "nonce"  # type: ignore[attr-defined]
    assert len(benchmark(FACTORY.make, NOW)) == 43


def test_nonce_check(benchmark: Callable[..., Any]) -> None:
    benchmark.group = "nonce"  # type: ignore[attr-defined]
    assert benchmark(FACTORY.check, NONCE, NOW + 1.0).name == "VALID"


def test_nonce_check_forged(benchmark: Callable[..., Any]) -> None:
    benchmark.group = "nonce"  # type: ignore[attr-defined]
    forged = NONCE[:-2] + ("AA" if NONCE[-2:] != "AA" else "BA")
    assert benchmark(FACTORY.check, forged, NOW + 1.0).name == "INVALID"


def test_nonce_counter_accept(benchmark: Callable[..., Any]) -> None:
    """Steady state of a full counter: every call inserts a new nonce and evicts the oldest."""
    benchmark.group = "nonce"  # type: ignore[attr-defined]
    counter = NonceCounter(max_entries=10_000)
    nonces = [f"nonce-{i}" for i in range(20_000)]
    for nonce in nonces[:10_000]:
        counter.accept(nonce, 1)
    state = {"i": 0}

    def accept() -> bool:
        state["i"] += 1
        return counter.accept(nonces[state["i"] % 20_000], state["i"])

    assert benchmark(accept) is True
