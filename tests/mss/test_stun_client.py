"""Interoperability of ``fastsip.stun.handle_request`` with real STUN clients from PyPI.

A tiny asyncio UDP server on loopback (ephemeral port) answers every datagram with
``handle_request``, as ``mss.transport`` will on its SIP ports. Real client libraries then ask it
for their mapped address, which on loopback must be their own socket address:

* ``aiostun`` (its ``Client.get_mapped_address``: RFC 5389 Binding with the magic cookie), and
* ``aioice`` (aiortc's ICE agent: its server-reflexive candidate gathering, and its strict STUN
  parser, which checks FINGERPRINT and the padding of every attribute).

Everything stays on 127.0.0.1 / ::1 and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, cast

import pytest

from fastsip import stun

TIMEOUT = 5.0
SOFTWARE = "mss test"


def _require(name: str) -> ModuleType:
    """Import a client library (test extras); missing is a failure."""
    return __import__(name)  # a missing client library fails the run, never skips


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


class _StunServer(asyncio.DatagramProtocol):
    """Answers each datagram with fastsip.stun.handle_request; records what it saw."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: list[tuple[bytes, tuple[str, int]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport: cast, not check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = (addr[0], addr[1])
        self.seen.append((data, source))
        reply = stun.handle_request(data, source, **self.options)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def stun_server(host: str = "127.0.0.1", **options: Any) -> AsyncIterator[_StunServer]:
    """Run the server on ``host`` with an ephemeral port; yields the protocol (port in sockname)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _StunServer(**options), local_addr=(host, 0)
    )
    try:
        yield protocol
    finally:
        transport.close()


def _port(server: _StunServer) -> int:
    assert server.transport is not None
    port: int = server.transport.get_extra_info("sockname")[1]
    return port


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 2))


# -- aiostun ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "family"),
    [("127.0.0.1", "IP4"), pytest.param("::1", "IP6", marks=needs_ipv6)],
    ids=["ipv4", "ipv6"],
)
def test_aiostun_mapped_address(host: str, family: str) -> None:
    aiostun = _require("aiostun")

    async def scenario() -> None:
        async with stun_server(host, software=SOFTWARE) as server:
            client = aiostun.Client(
                host, port=_port(server), family=getattr(aiostun, family), timeout=TIMEOUT
            )
            async with client:
                local = client.get_local_addr()
                mapped = await client.get_mapped_address()
            assert mapped, "no response from the server"
            assert mapped["ip"] == host == local[0]
            assert mapped["port"] == local[1]
            # The server saw exactly one RFC 5389 Binding request, from that socket.
            [(data, source)] = server.seen
            assert stun.is_stun(data) and source == (local[0], local[1])

    _run(scenario())


def test_aiostun_response_fields() -> None:
    aiostun = _require("aiostun")
    from aiostun import attribute, constants

    async def scenario() -> None:
        async with stun_server(software=SOFTWARE, legacy_mapped_address=True) as server:
            async with aiostun.Client("127.0.0.1", port=_port(server), timeout=TIMEOUT) as client:
                local = client.get_local_addr()
                resp = await client.bind_request()
            assert resp is not None
            assert resp.msgclass == constants.CLASS_SUCCESS
            assert resp.msgmethod == constants.METHOD_BINDING
            xor = resp.get_attribute(attribute.AttrXorMappedAddr)
            plain = resp.get_attribute(attribute.AttrMappedAddr)
            assert (xor.params["ip"], xor.params["port"]) == local
            assert (plain.params["ip"], plain.params["port"]) == local
            assert resp.get_attribute(attribute.AttrSoftware).params["value"] == SOFTWARE.encode()

    _run(scenario())


def test_aiostun_classic_rfc3489_request_is_ignored() -> None:
    aiostun = _require("aiostun")

    async def scenario() -> None:
        async with stun_server() as server:
            async with aiostun.Client("127.0.0.1", port=_port(server), timeout=0.3) as client:
                mapped = await client.get_mapped_address(use_classicstun=True)
            assert mapped == {}  # timed out: no magic cookie, no answer
            assert len(server.seen) == 1

    _run(scenario())


# -- aioice ----------------------------------------------------------------------------------


class _Receiver:
    """The parts of aioice.ice.Connection that its StunProtocol calls back."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def data_received(self, data: bytes, component: int) -> None:
        self.data.append(data)  # a datagram aioice's STUN parser rejected

    def request_received(self, *args: Any) -> None:
        raise AssertionError("the server never sends requests")

    def protocol_lost(self, protocol: Any) -> None:
        pass


@contextlib.asynccontextmanager
async def aioice_protocol(host: str) -> AsyncIterator[Any]:
    """An aioice StunProtocol on ``host``, as its ICE agent creates one per host candidate."""
    _require("aioice")
    from aioice.candidate import Candidate
    from aioice.ice import StunProtocol

    loop = asyncio.get_running_loop()
    receiver = _Receiver()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: StunProtocol(receiver),  # type: ignore[arg-type]
        local_addr=(host, 0),
    )
    local = protocol.transport.get_extra_info("sockname")
    protocol.local_candidate = Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=1,
        host=local[0],
        port=local[1],
        type="host",
    )
    try:
        yield protocol
    finally:
        await protocol.close()
        assert receiver.data == [], "aioice could not parse a reply of ours"


def test_aioice_server_reflexive_candidate() -> None:
    _require("aioice")
    from aioice.ice import server_reflexive_candidate

    async def scenario() -> None:
        async with stun_server() as server, aioice_protocol("127.0.0.1") as protocol:
            candidate, _ = await server_reflexive_candidate(protocol, ("127.0.0.1", _port(server)))
            local = protocol.transport.get_extra_info("sockname")
            assert candidate.type == "srflx"
            assert (candidate.host, candidate.port) == (local[0], local[1])

    _run(scenario())


@pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)], ids=["ipv4", "ipv6"]
)
def test_aioice_fingerprint_and_software(host: str) -> None:
    _require("aioice")
    from aioice import stun as aioice_stun

    async def scenario() -> None:
        async with stun_server(host, software=SOFTWARE) as server, aioice_protocol(host) as proto:
            request = aioice_stun.Message(
                message_method=aioice_stun.Method.BINDING,
                message_class=aioice_stun.Class.REQUEST,
                attributes={"SOFTWARE": "aioice"},
            )
            request.add_fingerprint()
            response, addr = await proto.request(request, (host, _port(server)), retransmissions=2)
            local = proto.transport.get_extra_info("sockname")
            # aioice's parse_message raised nothing: our FINGERPRINT verified.
            assert "FINGERPRINT" in response.attributes
            assert response.attributes["XOR-MAPPED-ADDRESS"] == (local[0], local[1])
            assert response.attributes["SOFTWARE"] == SOFTWARE
            assert response.transaction_id == request.transaction_id
            assert addr[1] == _port(server)
            # And the request aioice built parses on our side with a valid FINGERPRINT.
            ours = stun.parse_message(server.seen[0][0])
            assert ours.has_fingerprint and ours.fingerprint_ok
            assert ours.get(stun.ATTR_SOFTWARE) == b"aioice"

    _run(scenario())


def test_aioice_sees_420_for_ice_priority() -> None:
    _require("aioice")
    from aioice import stun as aioice_stun

    async def scenario() -> None:
        async with stun_server() as server, aioice_protocol("127.0.0.1") as proto:
            request = aioice_stun.Message(
                message_method=aioice_stun.Method.BINDING,
                message_class=aioice_stun.Class.REQUEST,
                attributes={"PRIORITY": 12345},
            )
            with pytest.raises(aioice_stun.TransactionFailed) as info:
                await proto.request(request, ("127.0.0.1", _port(server)), retransmissions=2)
            assert info.value.response.attributes["ERROR-CODE"] == (420, "Unknown Attribute")

    _run(scenario())


# -- the real server -----------------------------------------------------------------------


def test_aiostun_against_mss_serve_sip_port_and_stun_port(tmp_path: Any) -> None:
    """A real STUN client (aiostun) against the mss server's own listeners: the SIP UDP port and
    the dedicated STUN port (3478 by default; an ephemeral port here)."""
    aiostun = _require("aiostun")
    from serverutil import free_udp_port, running

    stun_port = free_udp_port()

    async def scenario() -> None:
        async with running(tmp_path, **{"stun.port": stun_port, "stun.host": "127.0.0.1"}) as srv:
            ports = [srv.port("udp"), srv.transport.stun_listener.port]
            for port in ports:
                async with aiostun.Client("127.0.0.1", port=port, timeout=TIMEOUT) as client:
                    local = client.get_local_addr()
                    mapped = await client.get_mapped_address()
                assert mapped, f"no STUN answer on port {port}"
                assert (mapped["ip"], mapped["port"]) == (local[0], local[1])
            assert srv.transport.stats.stun_requests == 2

    _run(scenario())
