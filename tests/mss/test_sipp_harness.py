"""The sipp harness (tests/mss/sipp.py) proven with sipp against sipp, no mss server involved.

Each of our XML scenarios runs against a sipp peer (built-in ``uas``/``uac`` or our own UAS
stubs), so a later end-to-end test that fails against mss fails because of mss, not because of
a scenario or of the harness. Also checked: loss and retransmissions, TCP, the failure paths
(nobody listening: calls fail on the receive timeout; the global timeout: exit 255 in time), the
stop escalation of a background UAS, and the parsers on captured sipp screens.

Everything is on 127.0.0.1 with bounded call counts and timeouts; sipp's own ``-timeout`` and
the harness's deadline bound every process.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from sipp import (
    EXIT_FAILED,
    EXIT_FATAL,
    EXIT_OK,
    SippResult,
    _parse_stats,
    _parse_steps,
    arun_sipp,
    free_udp_port,
    require_sipp,
    run_sipp,
    start_sipp_uas,
    write_inf_file,
)

slow = pytest.mark.slow


@pytest.fixture(autouse=True)
def _sipp(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow"):
        require_sipp()


def _ok(result: SippResult, calls: int) -> None:
    assert result.returncode == EXIT_OK, result.describe()
    assert (result.successful, result.failed) == (calls, 0), result.describe()


# --------------------------------------------------------------------------- sipp against sipp


@slow
def test_builtin_uac_against_builtin_uas() -> None:
    with start_sipp_uas(scenario="uas") as uas:
        result = run_sipp(uas.target, scenario="uac", calls=5, rate=50, timeout=20)
        server = uas.stop()
    _ok(result, 5)
    assert result.step("INVITE", "send").messages == 5
    assert result.step("180", "recv").messages == 5
    assert result.step("BYE", "send").messages == 5
    assert result.retransmissions == 0 and result.unexpected == 0
    assert result.counter("OutgoingCall") == 5
    # The UAS saw the same five calls, each through its 4 s timewait.
    _ok(server, 5)
    assert server.step("INVITE", "recv").messages == 5
    assert server.step("ACK", "recv").messages == 5


@slow
def test_lost_packets_are_retransmitted_and_calls_complete() -> None:
    # Our loss-tolerant pair, not sipp's built-in uac/uas: those fail calls or hang under -lost
    # because of sipp's own matching bugs (see the module docstring of sipp.py).
    calls = 20
    with start_sipp_uas(scenario="uas_answer_lossy.xml", stop_grace=0.5) as uas:
        result = run_sipp(
            uas.target, scenario="invite_uac_call.xml", calls=calls, rate=40, lost=10, timeout=40
        )
        server = uas.stop()  # its calls wait 32 s in timewait: stopped by SIGTERM
    _ok(result, calls)
    lost = sum(step.lost for step in result.steps)
    # 10 % of ~100 messages were dropped (sent or received) and retransmissions made every
    # call complete regardless: P(no loss) ~ 0.9^100, P(no retransmission by the UAC) ~ 0.9^80.
    assert lost > 0, result.describe()
    assert result.retransmissions > 0, result.describe()
    sent = sum(step.retrans for step in result.steps if step.direction == "send")
    assert result.retransmissions == sent, result.describe()
    assert server.step("INVITE", "recv").messages == calls, server.describe()
    assert server.step("BYE", "recv").messages == calls, server.describe()
    print(
        f"\nlost={lost} uac_retransmissions={result.retransmissions} "
        f"uas_retransmissions={server.retransmissions}\n{result.describe()}"
    )


@slow
def test_options_scenarios_sync_and_async() -> None:
    with start_sipp_uas(scenario="options_uas.xml") as uas:
        result = run_sipp(uas.target, scenario="options_uac.xml", calls=5, rate=50, service="ping")
        async_result = asyncio.run(
            arun_sipp(uas.target, scenario="options_uac.xml", calls=3, rate=50, timeout=10)
        )
        server = uas.stop()
    _ok(result, 5)
    _ok(async_result, 3)
    assert result.step("200", "recv").messages == 5
    assert result.step("100", "recv").messages == 0
    _ok(server, 8)
    assert server.step("OPTIONS", "recv").messages == 8


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@slow
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_options_over_ipv6_loopback() -> None:
    with start_sipp_uas(scenario="options_uas.xml", local_ip="::1") as uas:
        assert uas.target.startswith("[::1]:")
        result = run_sipp(
            uas.target, scenario="options_uac.xml", calls=2, local_ip="::1", trace_msg=True
        )
        server = uas.stop()
    _ok(result, 2)
    _ok(server, 2)
    assert "Via: SIP/2.0/UDP [::1]:" in result.message_log


@slow
def test_invite_rejected_is_acked_in_the_invite_transaction() -> None:
    with start_sipp_uas(scenario="uas_reject.xml") as uas:
        result = run_sipp(
            uas.target, scenario="invite_uac_final.xml", calls=3, rate=50, trace_msg=True
        )
        server = uas.stop()
    _ok(result, 3)
    assert result.step("100", "recv").messages == 3
    assert result.step("501", "recv").messages == 3
    assert result.step("ACK", "send").messages == 3
    # RFC 3261 §17.1.1.3: the ACK for a non-2xx has the INVITE's branch and the response's To tag.
    sent = _sent_requests(result.message_log)
    invites = {m["Call-ID"]: m for m in sent if m["method"] == "INVITE"}
    acks = [m for m in sent if m["method"] == "ACK"]
    assert len(invites) == len(acks) == 3
    for ack in acks:
        invite = invites[ack["Call-ID"]]
        assert _branch(ack["Via"]) == _branch(invite["Via"]), (ack, invite)
        assert "tag=" in ack["To"] and ack["CSeq"] == "1 ACK"
        assert ack["request_uri"] == invite["request_uri"]
    _ok(server, 3)  # the UAS requires the ACK


@slow
def test_invite_call_scenario_against_answering_uas() -> None:
    with start_sipp_uas(scenario="uas_answer.xml") as uas:
        result = run_sipp(
            uas.target, scenario="invite_uac_call.xml", calls=3, rate=50, extra=["-d", "100"]
        )
        server = uas.stop()
    _ok(result, 3)
    for name, direction in (("INVITE", "send"), ("200", "recv"), ("ACK", "send"), ("BYE", "send")):
        assert result.step(name, direction).messages == 3, result.describe()
    _ok(server, 3)
    assert server.step("ACK", "recv").messages == 3
    assert server.step("BYE", "recv").messages == 3


@slow
def test_invite_call_over_tcp() -> None:
    with start_sipp_uas(scenario="uas_answer.xml", transport="t1") as uas:
        result = run_sipp(uas.target, scenario="invite_uac_call.xml", calls=2, transport="t1")
        server = uas.stop()
    _ok(result, 2)
    assert "TCP" in result.screen
    for name in ("INVITE", "ACK", "BYE"):
        assert server.step(name, "recv").messages == 2, server.describe()
    # sipp gotcha: when the caller (here the sipp client, exiting) closes the TCP connection, a
    # sipp UAS aborts the calls still in their final <timewait> and may count them as failed.
    assert server.successful + server.failed == 2
    assert server.failed == server.counter("FailedTcpClosed"), server.describe()


@slow
@pytest.mark.parametrize("good", [True, False], ids=["right-password", "wrong-password"])
def test_register_with_digest_from_injection_file(tmp_path: Path, good: bool) -> None:
    users = [("alice", "alice-secret", "mss.test"), ("bob", "bob-secret", "mss.test")]
    server_csv = write_inf_file(tmp_path / "users.csv", users)
    client_csv = server_csv
    if not good:
        client_csv = write_inf_file(tmp_path / "bad.csv", [(u, p + "x", d) for u, p, d in users])
    with start_sipp_uas(scenario="register_uas.xml", inf_file=server_csv) as uas:
        result = run_sipp(
            uas.target,
            scenario="register_uac.xml",
            calls=4,
            rate=50,
            inf_file=client_csv,
            trace_msg=True,
            timeout=10,
        )
        uas.stop()
    assert result.step("401", "recv").messages == 4, result.describe()
    if not good:
        # The stub answers 403, which the scenario does not expect.
        assert result.returncode == EXIT_FAILED and result.failed == 4, result.describe()
        assert result.counter("FailedUnexpectedMessage") == 4
        return
    _ok(result, 4)
    # Check sipp's digest independently (RFC 2617 §3.2.2, qop=auth), and that its digest-uri
    # is the Request-URI, as a strict registrar requires.
    registers = [m for m in _sent_requests(result.message_log) if "Authorization" in m]
    assert len(registers) == 4
    for number, message in enumerate(registers):
        user, password, domain = users[number % 2]
        auth = dict(re.findall(r'(\w+)="?([^",]*)"?', message["Authorization"].split(" ", 1)[1]))
        assert auth["username"] == user and auth["realm"] == "mss.test"
        assert auth["uri"] == message["request_uri"]
        assert message["To"] == f"<sip:{user}@{domain}>"

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{user}:{auth['realm']}:{password}")
        ha2 = md5(f"REGISTER:{auth['uri']}")
        expected = md5(f"{ha1}:{auth['nonce']}:{auth['nc']}:{auth['cnonce']}:{auth['qop']}:{ha2}")
        assert auth["response"] == expected


@slow
def test_nobody_listening_fails_calls_on_receive_timeout() -> None:
    port = free_udp_port()
    result = run_sipp(
        f"127.0.0.1:{port}", scenario="uac", calls=2, rate=50, timeout=10, recv_timeout=1
    )
    assert result.returncode == EXIT_FAILED, result.describe()
    assert (result.successful, result.failed) == (0, 2)
    assert result.counter("FailedTimeoutOnRecv") == 2
    assert result.step("INVITE", "send").retrans >= 2  # one at T1 = 500 ms per call
    assert result.elapsed < 5 and not result.killed
    assert "receive timeout" in result.errors


@slow
def test_global_timeout_exits_nonzero_in_time() -> None:
    port = free_udp_port()
    result = run_sipp(f"127.0.0.1:{port}", scenario="uac", calls=2, timeout=2, recv_timeout=0)
    assert result.returncode == EXIT_FATAL, result.describe()
    assert result.timed_out and not result.killed
    assert result.successful == 0
    assert 1.5 < result.elapsed < 5
    # The CSV's last row and the screen (from stdout after a fatal exit) are still there.
    assert result.counter("OutgoingCall") == 2
    assert result.step("INVITE", "send").messages == 2


@slow
def test_uas_stop_escalates_to_sigterm_and_keeps_statistics() -> None:
    with start_sipp_uas(scenario="uas_answer.xml") as uas:
        client: list[SippResult] = []
        caller = threading.Thread(
            target=lambda: client.append(
                run_sipp(
                    uas.target,
                    scenario="invite_uac_call.xml",
                    calls=1,
                    timeout=8,
                    recv_timeout=1,
                    extra=["-d", "3000"],
                )
            )
        )
        caller.start()
        try:
            # On loopback the call is up within milliseconds; after 1 s it is in its 3 s pause,
            # so SIGUSR1 cannot end sipp within 0.3 s and the harness must send SIGTERM.
            time.sleep(1.0)
            server = uas.stop(grace=0.3)
        finally:
            caller.join(timeout=20)
    assert server.killed and server.returncode == EXIT_OK, server.describe()
    assert server.stats and server.counter("CurrentCall") == 1
    assert server.successful == 0 and uas.stop() is server
    # The caller's BYE found nobody: its call fails on the receive timeout, within bounds.
    assert client and client[0].failed == 1 and not client[0].killed, client[0].describe()


# --------------------------------------------------------------------------- argument checks


def test_non_loopback_targets_are_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        run_sipp("192.0.2.1:5060", scenario="uac", calls=1)
    with pytest.raises(ValueError, match="loopback"):
        run_sipp("127.0.0.1:5060", scenario="uac", calls=1, local_ip="192.0.2.10")
    with pytest.raises(ValueError, match="transport"):
        run_sipp("127.0.0.1:5060", scenario="uac", calls=1, transport="udp")


def test_missing_scenario_file() -> None:
    with pytest.raises(FileNotFoundError):
        run_sipp("127.0.0.1:5060", scenario="no_such_scenario.xml", calls=1)


def test_write_inf_file(tmp_path: Path) -> None:
    path = write_inf_file(tmp_path / "u.csv", [("alice", "pw", "mss.test")], order="RANDOM")
    assert path.read_text() == "RANDOM\nalice;pw;mss.test\n"
    with pytest.raises(ValueError):
        write_inf_file(tmp_path / "bad.csv", [("a;b", "pw", "d")])
    with pytest.raises(ValueError):
        write_inf_file(tmp_path / "bad.csv", [], order="ORDERED")


# --------------------------------------------------------------------------- parsers

UAC_SCREEN_WITH_LOSS = """\
------------------------------ Scenario Screen -------- [1-9]: Change Screen --
  Call rate (length)   Port   Total-time  Total-calls  Remote-host
  10.0(0 ms)/1.000s   15061      4.22 s           10  127.0.0.1:15060(UDP)

                                 Messages  Retrans   Timeout   Unexp.    Lost
      INVITE ---------->         10        3         0                   3
         100 <----------         0         0         0         0
         180 <----------         9         0         0         0         1
         200 <----------  E-RTD1 10        0         0         0
         ACK ---------->         10        0                             2
       Pause [      0ms]         10                            0
         BYE ---------->         10        7         0                   2
         200 <----------         10        0         0         0         5

------------------------------ Test Terminated --------------------------------
----------------------------- Statistics Screen ------- [1-9]: Change Screen --
  Successful call        |        0                  |       10
"""

UAS_SCREEN = """\
------------------------------ Scenario Screen -------- [1-9]: Change Screen --
  Port   Total-time  Total-calls  Transport
  15060      5.02 s            5  UDP

                                 Messages  Retrans   Timeout   Unexpected-Msg
  ----------> INVITE             5         0         0         0

  <---------- 180                5         0
  <---------- 200                5         0         0
  ----------> ACK         E-RTD1 4         0         0         1

  ----------> BYE                5         2         0         0
  <---------- 200                5         2
  [   4000ms] Pause              5                             0
Last Error: Aborted call with Call-ID '10-9127@127.0.0.1'
------- Waiting for active calls to end. Press [q] again to force exit. -------
"""


def test_parse_uac_screen_with_loss_column() -> None:
    steps = _parse_steps(UAC_SCREEN_WITH_LOSS)
    assert [(s.name, s.direction) for s in steps] == [
        ("INVITE", "send"),
        ("100", "recv"),
        ("180", "recv"),
        ("200", "recv"),
        ("ACK", "send"),
        ("Pause", "pause"),
        ("BYE", "send"),
        ("200", "recv"),
    ]
    invite, bye, last = steps[0], steps[6], steps[7]
    assert (invite.messages, invite.retrans, invite.timeouts, invite.unexpected, invite.lost) == (
        10,
        3,
        0,
        0,
        3,
    )
    assert (bye.retrans, bye.lost) == (7, 2)
    assert (last.messages, last.lost) == (10, 5)
    assert steps[3].label == "200 <----------  E-RTD1"


def test_parse_uas_screen() -> None:
    steps = _parse_steps(UAS_SCREEN)
    assert [(s.name, s.direction) for s in steps] == [
        ("INVITE", "recv"),
        ("180", "send"),
        ("200", "send"),
        ("ACK", "recv"),
        ("BYE", "recv"),
        ("200", "send"),
        ("Pause", "pause"),
    ]
    assert steps[3].messages == 4 and steps[3].unexpected == 1
    assert steps[4].retrans == 2 and steps[6].messages == 5
    assert _parse_steps("no screen here") == ()


def test_parse_stats_takes_last_row() -> None:
    csv = "StartTime;SuccessfulCall(C);FailedCall(C);\nx;0;0;\ny;7;1;\n"
    assert _parse_stats(csv) == {"StartTime": "y", "SuccessfulCall(C)": "7", "FailedCall(C)": "1"}
    assert _parse_stats("") == {}


# --------------------------------------------------------------------------- message log helpers


def _sent_requests(log: str) -> list[dict[str, str]]:
    """Requests sipp sent, from its -trace_msg log: method, request_uri and the headers."""
    requests = []
    for block in log.split("message sent")[1:]:
        lines = block.split("\n\n", 1)[1].replace("\r", "").split("\n") if "\n\n" in block else []
        if not lines or lines[0].startswith("SIP/2.0"):
            continue
        method, uri, _ = lines[0].split(" ", 2)
        message = {"method": method, "request_uri": uri}
        for line in lines[1:]:
            if not line:
                break
            name, _, value = line.partition(":")
            message.setdefault(name.strip(), value.strip())
        requests.append(message)
    return requests


def _branch(via: str) -> str:
    match = re.search(r"branch=([^;\s]+)", via)
    assert match, via
    return match.group(1)
