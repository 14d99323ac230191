"""pytest-benchmark micro-benchmarks of the parser twins and their PyPI peers.

    pytest benchmarks/bench_parser.py --benchmark-autosave     # save a run
    pytest-benchmark compare                                 # compare saved runs

Not part of the test run (``benchmarks/`` is outside ``testpaths``).
"""

from __future__ import annotations

import pytest

from benchmarks.messages import HTTP, MESSAGES
from benchmarks.parsers import httptools_fn, implementations

IMPLS = implementations()


@pytest.mark.parametrize("message", list(MESSAGES))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_parse(benchmark, impl: str, message: str) -> None:
    benchmark.group = f"parse {message}"
    parse, _ = IMPLS[impl]
    benchmark(parse, MESSAGES[message])


@pytest.mark.parametrize("message", list(MESSAGES))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_parse_read(benchmark, impl: str, message: str) -> None:
    benchmark.group = f"parse+read {message}"
    _, read = IMPLS[impl]
    benchmark(read, MESSAGES[message])


def test_httptools_reference(benchmark) -> None:
    benchmark.group = "parse REGISTER"
    benchmark(httptools_fn(), HTTP)
