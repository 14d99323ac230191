"""External line against a real registrar: Kamailio (Debian ``kamailio``) with digest auth.

Kamailio runs on another loopback port with ``tests/mss/kamailio/registrar.cfg``: it challenges
REGISTER (auth module, plain-text password, no database), keeps bindings in memory, and routes
an OPTIONS for the account to the registered Contact (``lookup("location")``), so a probe
through Kamailio answered 200 by mss proves the binding is really there.

Issue 7: the line registers, refreshes before expiry, and re-registers after Kamailio restarts
(its location table is empty then): first the refresh to the stopped Kamailio fails visibly
(``failed``, a timeout, a next retry), then the retry registers again once it is back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kamailioutil import require_kamailio, run_kamailio
from serverutil import running

from mss.features.lines import LineState
from mss.storage import LineRecord

pytestmark = pytest.mark.slow

ACCOUNT = "line1"
PASSWORD = "s3cret-pw"
FAST = {
    # quick SIP timers so that a REGISTER to a stopped Kamailio times out in ~1.6 s
    "timers.t1": 0.025,
    "timers.t2": 0.2,
    "lines.retry_min": 0.5,
    "lines.retry_max": 2.0,
}


async def wait_state(server: Any, line_id: str, state: LineState, timeout: float = 15.0) -> Any:
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        st = server.lines.status(line_id)
        if st is not None and st.state == state:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"line {line_id} not {state.value}: {server.lines.statuses()} {server.lines.history(line_id)}"
    )


async def probe(k: Any) -> str | None:
    return await asyncio.to_thread(k.probe, ACCOUNT)


def test_line_registers_refreshes_and_survives_kamailio_restart(tmp_path: Path) -> None:
    require_kamailio()

    async def main() -> None:
        with run_kamailio(tmp_path / "kamailio", account=ACCOUNT, password=PASSWORD) as k:
            assert await probe(k) == "SIP/2.0 404 Not Registered"
            async with running(tmp_path / "mss", **FAST) as server:
                await server.storage.lines.add(
                    LineRecord("kam", ACCOUNT, f"127.0.0.1:{k.port}", password=PASSWORD, expires=6)
                )
                st = await wait_state(server, "kam", LineState.REGISTERED)
                assert st.expires == 6 and st.status == 200, k.output()
                first = st.last_success
                # the binding is in Kamailio: an OPTIONS to the account reaches mss and back
                assert await probe(k) == "SIP/2.0 200 OK", k.output()

                # refresh before expiry (6 s granted -> refreshed every second): after the
                # first registration would have expired, the binding is still there
                await asyncio.sleep(7.0)
                st = server.lines.status("kam")
                assert st.state == LineState.REGISTERED and st.last_success > first + 5
                assert await probe(k) == "SIP/2.0 200 OK", k.output()
                assert [e["state"] for e in server.lines.history("kam")] == [
                    "registering",
                    "registered",
                ]

                # Kamailio goes away: the next refresh times out, the line fails visibly
                await asyncio.to_thread(k.stop)
                st = await wait_state(server, "kam", LineState.FAILED)
                assert st.status == 408 and "timeout" in st.reason and st.next_retry is not None
                # ... and comes back empty: the retry registers again
                await asyncio.to_thread(k.start)
                await wait_state(server, "kam", LineState.REGISTERED)
                assert await probe(k) == "SIP/2.0 200 OK", k.output()

                # a restart while registered (no failure in between): Kamailio forgot the
                # binding, the next refresh puts it back
                await asyncio.to_thread(k.restart)
                assert await probe(k) == "SIP/2.0 404 Not Registered"
                for _ in range(60):
                    if await probe(k) == "SIP/2.0 200 OK":
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("no re-registration after the restart:\n" + k.output())
                states = [e["state"] for e in server.lines.history("kam")]
                assert states[:2] == ["registering", "registered"] and "failed" in states
                assert states[-1] == "registered"
            # the server unregistered on stop (Expires: 0)
            assert await probe(k) == "SIP/2.0 404 Not Registered", k.output()

    asyncio.run(asyncio.wait_for(main(), 90))


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_line_answers_kamailio_challenge(tmp_path: Path, algorithm: str) -> None:
    """Digest with the algorithm Kamailio offers; a wrong password fails visibly."""
    require_kamailio()

    async def main() -> None:
        with run_kamailio(
            tmp_path / "kamailio", account=ACCOUNT, password=PASSWORD, algorithm=algorithm
        ) as k:
            async with running(tmp_path / "mss", **FAST) as server:
                await server.storage.lines.add(
                    LineRecord(
                        "good", ACCOUNT, f"127.0.0.1:{k.port}", password=PASSWORD, expires=60
                    )
                )
                await server.storage.lines.add(
                    LineRecord(
                        "bad",
                        ACCOUNT,
                        f"127.0.0.1:{k.port}",
                        password="wrong",
                        expires=60,
                        contact_user="other",
                    )
                )
                await wait_state(server, "good", LineState.REGISTERED)
                st = await wait_state(server, "bad", LineState.FAILED)
                assert st.status == 401 and "credentials rejected" in st.reason
                assert await probe(k) == "SIP/2.0 200 OK", k.output()

    asyncio.run(asyncio.wait_for(main(), 60))
