"""The scenario table: what each end-to-end scenario sends, to whom, and what it provisions.

Adding a scenario is adding a :class:`Scenario` to :data:`SCENARIOS`; the runner
(:mod:`benchmarks.e2e.suite`) knows four kinds:

``rate``
    sipp UAC (and optionally a sipp UAS as the callee) at stepped rates for ``--step-seconds``
    each; per step: calls ok/failed, retransmissions, response times, server CPU per call, peak
    memory. The highest *clean* rate is the figure quoted (see
    :func:`benchmarks.e2e.suite.is_clean`). The steps are searched (:class:`Ladder`): doubling
    from ``start_rate`` while clean (an unclean step is tried once more before it counts),
    halving when even the start is unclean, then ``--refine`` bisection steps between the last
    clean and the first unclean rate; ``--rates`` replaces the search with a fixed list.
``flood``
    a banned / flooding source sends a bounded flood (``benchmarks/flood.py``'s sender) while a
    legitimate REGISTER load runs; CPU per dropped packet and the legitimate success rate.
``memory-bindings`` / ``memory-calls``
    memory of the server tree before and after 100,000 registrations, and at the plateau of
    10,000 concurrent calls.

A scenario with ``pending`` set is listed in the report with that reason and not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .servers import Provision, Server, register_contact

if TYPE_CHECKING:
    from .suite import Suite

__all__ = ("CALLEE", "CALLER", "CALLER_IP", "LEGIT_IP", "SCENARIOS", "Ladder", "Scenario")

HERE = Path(__file__).resolve().parent / "scenarios"

#: sipp's address for IP-authorized REGISTERs and the flood scenario's legitimate load
LEGIT_IP = "127.0.0.2"
#: the caller sipp's address (IP-authorized caller, both servers)
CALLER_IP = "127.0.0.3"
CALLER = "900001"
CALLEE = "900002"


@dataclass(frozen=True)
class Scenario:
    """One row of the table.

    Attributes:
        key: short name (``--scenarios`` takes these).
        title: what the report calls it.
        kind: ``rate``, ``flood``, ``memory-bindings`` or ``memory-calls``.
        provision: the users and authorizations both servers get, from the suite's options.
        uac: the sipp client scenario (a name in ``tests/mss/scenarios`` or a path).
        uas: the sipp callee scenario, when there is a callee.
        local_ip: the address sipp's UAC binds.
        requests_per_call: requests the UAC sends per call (retransmission ratio denominator).
        start_rate: the first offered rate, calls/s (``rate`` kind).
        max_rate: the search never offers more.
        hold_ms: call hold time (sipp ``-d``); calls only.
        tail_ms: how long a UAC call lasts after its last request is answered (the scenario's
            final ``<timewait>``): not part of the server's work, so not of the achieved rate.
        sipp_options: extra ``run_sipp`` keyword arguments for a server (service, inf_file...).
        after_start: run once a server is up (e.g. register the callee in Kamailio).
        before_step: run before each step (calls: move the callee to a fresh port, so that
            retransmissions of the previous step's failed calls cannot reach this step's UAS).
        preflight: run 5 calls at 5/s first; a server that fails them is reported as not
            supporting the scenario (how a B2BUA still being written shows up) and not stepped.
        pending: when set, the scenario is not run and the report says why.
        ladder_seconds: the wall-time cap of this scenario's rate search when it needs more
            than ``--ladder-seconds`` (calls: each step holds its calls 1 s and waits for the
            last BYE, so the default cap stopped Kamailio's search before its limit).
    """

    key: str
    title: str
    kind: str
    provision: Callable[[Suite], Provision]
    uac: str | Path = ""
    uas: str | Path | None = None
    local_ip: str = "127.0.0.1"
    requests_per_call: int = 1
    start_rate: int = 0
    max_rate: int = 0
    hold_ms: int = 0
    tail_ms: int = 0
    sipp_options: Callable[[Suite, Server], dict[str, Any]] = field(default=lambda s, srv: {})
    after_start: Callable[[Suite, Server], None] | None = None
    before_step: Callable[[Suite, Server], None] | None = None
    preflight: bool = False
    pending: str = ""
    ladder_seconds: float = 0.0


# --------------------------------------------------------------------------- the rate search


def nice(rate: float) -> int:
    """Round to two significant digits (4837 -> 4800, 371 -> 370)."""
    if rate < 100:
        return max(1, round(rate))
    digits = len(str(int(rate))) - 2
    return int(round(rate / 10**digits) * 10**digits)


class Ladder:
    """The offered rates of one server's run, chosen from the results so far.

    ``next()`` gives the rate to run (None: done), ``record(rate, clean)`` reports it.
    """

    def __init__(
        self,
        start: int,
        max_rate: int,
        *,
        refine: int = 3,
        fixed: tuple[int, ...] = (),
        stop_after: int = 2,
        floor: int = 10,
    ) -> None:
        self.fixed = list(fixed)
        self.stop_after = stop_after
        self.refine = refine
        self.max_rate = max_rate
        self.floor = floor
        self.rate: int | None = self.fixed.pop(0) if fixed else start
        self.phase = "fixed" if fixed else "up"
        self.lo: int | None = None  # highest clean rate seen
        self.hi: int | None = None  # lowest unclean rate seen (after its retry)
        self.retried: set[int] = set()
        self.unclean_run = 0

    def next(self) -> int | None:
        return self.rate

    def record(self, rate: int, clean: bool) -> None:
        if self.phase == "fixed":
            self.unclean_run = 0 if clean else self.unclean_run + 1
            done = self.unclean_run >= self.stop_after or not self.fixed
            self.rate = None if done else self.fixed.pop(0)
            return
        if clean:
            self.lo = rate if self.lo is None else max(self.lo, rate)
        elif self.phase == "up" and rate not in self.retried:
            self.retried.add(rate)  # once more: a single bad step may be the machine's noise
            self.rate = rate
            return
        else:
            self.hi = rate if self.hi is None else min(self.hi, rate)
        if self.phase == "up":
            if clean:
                self.rate = None if rate >= self.max_rate else min(self.max_rate, rate * 2)
                return
            self.phase = "refine" if self.lo is not None else "down"
        if self.phase == "down":
            if not clean:
                lower = nice(rate / 2)
                self.rate = lower if lower >= self.floor and lower < rate else None
                return
            self.phase = "refine"
        # refine: bisect between the highest clean and the lowest unclean rate
        if self.refine <= 0 or self.lo is None or self.hi is None:
            self.rate = None
            return
        self.refine -= 1
        middle = nice((self.lo + self.hi) / 2)
        self.rate = (
            middle if self.lo < middle < self.hi and (self.hi - self.lo) > 0.08 * self.lo else None
        )


# --------------------------------------------------------------------------- provisioning


def _plain(suite: Suite) -> Provision:
    return Provision(users=suite.users)


def _ipauth(suite: Suite) -> Provision:
    return Provision(users=suite.users, grant_all=LEGIT_IP)


def _calls(suite: Suite) -> Provision:
    # mss: the caller is IP-authorized at its address; the callee's grant names the sipp UAS's
    # address and port, which is where mss sends calls for it (it counts as online there).
    # Kamailio: the same caller row; the callee registers its contact after the start.
    return Provision(
        users=suite.users,
        extra={
            CALLER: ((CALLER_IP,), CALLER_IP),
            CALLEE: ((f"127.0.0.1:{suite.uas_port}",), "127.0.0.1"),
        },
    )


def _flood(suite: Suite) -> Provision:
    from .suite import FLOOD_SOURCE

    return Provision(users=suite.users, ban=(FLOOD_SOURCE,), pike=True)


def _memory_bindings(suite: Suite) -> Provision:
    return Provision(users=suite.memory_bindings)


# --------------------------------------------------------------------------- per-server hooks


def _digest_options(suite: Suite, server: Server) -> dict[str, Any]:
    return {"inf_file": suite.inf(suite.users)}


def _call_options(suite: Suite, server: Server) -> dict[str, Any]:
    return {"service": CALLEE, "extra": ["-key", "caller", CALLER]}


def _register_callee(suite: Suite, server: Server) -> None:
    if server.kind == "kamailio":
        status = register_contact(server, CALLEE, suite.uas_port)
        if not status.startswith("SIP/2.0 200"):
            raise RuntimeError(f"registering the callee in Kamailio: {status}")


def _move_callee(suite: Suite, server: Server) -> None:
    import time

    from sipp import free_udp_port

    from .servers import MssServer

    suite.uas_port = free_udp_port()
    if isinstance(server, MssServer):
        server.set_allow_ips(CALLEE, (f"127.0.0.1:{suite.uas_port}",))
        time.sleep(1.2)  # the server follows the storage change feed every 0.5 s
    else:
        _register_callee(suite, server)


# --------------------------------------------------------------------------- the table


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="register-digest",
        title="REGISTER with digest (REGISTER, 401, REGISTER+MD5, 200)",
        kind="rate",
        provision=_plain,
        uac="register_uac.xml",
        requests_per_call=2,
        start_rate=250,
        max_rate=20000,
        sipp_options=_digest_options,
    ),
    Scenario(
        key="register-ipauth",
        title="REGISTER from an IP-authorized source (REGISTER, 200)",
        kind="rate",
        provision=_ipauth,
        uac=HERE / "register_ipauth_uac.xml",
        local_ip=LEGIT_IP,
        start_rate=500,
        max_rate=40000,
        sipp_options=_digest_options,
    ),
    Scenario(
        key="options",
        title="OPTIONS to the server (OPTIONS, 200)",
        kind="rate",
        provision=_plain,
        uac="options_uac.xml",
        start_rate=500,
        max_rate=40000,
        sipp_options=lambda suite, server: {"service": str(100000)},
    ),
    Scenario(
        key="calls",
        title="Calls: sipp UAC -> server -> sipp UAS (INVITE, 100, 180, 200, ACK, 1 s, BYE, 200)",
        kind="rate",
        provision=_calls,
        uac="b2bua_uac_call.xml",
        uas=HERE / "uas_answer_rr.xml",
        local_ip=CALLER_IP,
        requests_per_call=3,
        start_rate=50,
        max_rate=4000,
        hold_ms=1000,
        tail_ms=1000,
        sipp_options=_call_options,
        after_start=_register_callee,
        before_step=_move_callee,
        preflight=True,
        ladder_seconds=160.0,
    ),
    Scenario(
        key="flood",
        title="Flood from a banned source (mss fail-to-ban) / a pike-blocked source (Kamailio) "
        "during a legitimate REGISTER load",
        kind="flood",
        provision=_flood,
        uac="register_uac.xml",
        local_ip=LEGIT_IP,
        requests_per_call=2,
        sipp_options=_digest_options,
    ),
    Scenario(
        key="memory-bindings",
        title="Memory with 100,000 registration bindings (Kamailio: registered with sipp; mss: "
        "written to its storage and loaded at start)",
        kind="memory-bindings",
        provision=_memory_bindings,
        uac="register_uac.xml",
        requests_per_call=2,
    ),
    Scenario(
        key="memory-calls",
        title="Memory with 10,000 concurrent calls",
        kind="memory-calls",
        provision=_calls,
        uac="b2bua_uac_call.xml",
        uas=HERE / "uas_answer_rr.xml",
        local_ip=CALLER_IP,
        requests_per_call=3,
        sipp_options=_call_options,
        after_start=_register_callee,
        preflight=True,
    ),
)
