"""schemathesis against the running server's OpenAPI document (issue 8).

The server (SIP + API on loopback, the API served by uvicorn on the server's loop) runs in a
thread; schemathesis loads ``/openapi.json`` from it over HTTP and calls every operation with
generated input, valid (positive) and invalid (negative), a bounded number of examples each,
with an admin token. ``call_and_validate`` runs schemathesis' default checks: no 5xx; status
codes, content types, headers and bodies as documented; invalid input rejected; and the token
requirement enforced (``ignored_auth`` repeats requests without the token and expects 401).

(``schemathesis.pytest.from_fixture`` does not work with pytest 9, so one test walks the
operations itself and reports every failing one.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from apiutil import ThreadedServer, api_server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

pytestmark = pytest.mark.timeout(900)

#: examples per operation and generation mode (bounded run time: ~30 operations x 2 modes)
EXAMPLES = 25
#: The miniSIPServer shim takes its parameters as one JSON object in the query string, which
#: OpenAPI cannot describe: any string is "schema-valid" for ``data``, so the check that
#: schema-valid input is accepted (ST202) does not apply there. Every other check does.
SHIM_PREFIX = "/openapi/"


@pytest.fixture(scope="module")
def st_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with api_server(tmp_path_factory.mktemp("schemathesis")) as s:
        yield s


def _run(
    operation: Any, mode: GenerationMode, server: ThreadedServer, http: requests.Session
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples every run: a failure always reproduces
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        excluded = []
        if operation.path.startswith(SHIM_PREFIX):
            excluded.append(positive_data_acceptance)
        if mode is GenerationMode.NEGATIVE and any(
            isinstance(v, list) and len(v) <= 1 for v in (case.query or {}).values()
        ):
            # a scalar "mutated" into a list of at most one item serializes exactly like a
            # valid value (?user=x): no server can tell, so "invalid input accepted" is moot
            excluded.append(negative_data_rejection)
        # a generated (negative) Authorization header is sent as generated; otherwise ours
        headers = {} if "Authorization" in (case.headers or {}) else server.headers()
        case.call_and_validate(headers=headers, session=http, excluded_checks=excluded)

    check()


def _describe(e: BaseException) -> str:
    parts = [str(e)]
    for sub in getattr(e, "exceptions", ()):
        parts.append(_describe(sub))
    return "\n".join(parts)


def test_api_conforms_to_its_openapi_document(st_server: ThreadedServer) -> None:
    schema = schemathesis.openapi.from_url(st_server.base + "/openapi.json")
    failures: list[str] = []
    tested = 0
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                tested += 1
                try:
                    _run(operation, mode, st_server, http)
                except Unsatisfiable:
                    # no invalid input exists for an operation without parameters (/health)
                    assert mode is GenerationMode.NEGATIVE and operation.path == "/health"
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as e:  # FailureGroup too: collect all, then fail once
                    failures.append(f"{operation.label} [{mode.value}]: {_describe(e)}")
    assert tested >= 50
    assert not failures, "\n\n".join(failures)
