"""The training run of the profile-guided build (setup.py, ``FASTSIP_PGO``).

setup.py first builds the extensions with ``-fprofile-generate`` into a scratch directory, runs
this script there (``python pgo_train.py DIR``: ``DIR`` holds a copy of the ``fastsip``
package with those instrumented modules), then compiles again with ``-fprofile-use``: gcc lays
out branches, inlines and places code by the counts this run left.

What it runs is the work of a SIP server, not the benchmarks: its messages are written here
and differ from ``benchmarks/messages.py`` (other user agents, header sets, lengths, compact
forms, digest credentials, Record-Route, several Vias). Every message is parsed, its hot
accessors read, responses built and serialized, Vias pushed and popped as a proxy does; a
stream is fed in pieces; malformed input takes the error paths about as often as it does on a
server facing scanners. The ban table and the timer wheel get the calls the server makes.

Only the standard library and fastsip are used, so the run works inside pip's isolated build.
"""

from __future__ import annotations

import os
import sys

ROUNDS = 3000  # ~2 s instrumented; more moves the counts by less than the noise of a run


def _messages() -> list[bytes]:
    sdp = (
        b"v=0\r\n"
        b"o=- 3912465170 3912465170 IN IP4 10.20.30.40\r\n"
        b"s=softphone\r\n"
        b"c=IN IP4 10.20.30.40\r\n"
        b"t=0 0\r\n"
        b"m=audio 7078 RTP/AVP 96 0 8 101\r\n"
        b"a=rtpmap:96 opus/48000/2\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=sendrecv\r\n"
    )
    # the headers the callee's 180 and 200 share, as the proxy forwards them
    answer = (
        b"Via: SIP/2.0/UDP 192.168.1.1:5060;branch=z9hG4bKpx1;received=192.168.1.1\r\n"
        b"Via: SIP/2.0/UDP 172.16.5.9:5060;branch=z9hG4bK-524287-1---f00dbabe;rport=5060\r\n"
        b"Record-Route: <sip:192.168.1.1;lr>\r\n"
        b"To: <sip:3003@pbx.example.net>;tag=77aa\r\n"
        b'From: "Reception" <sip:2002@pbx.example.net>;tag=6a1b2c3d\r\n'
        b"Call-ID: Y2FsbC1pZC0xMjM0NTY3ODk\r\n"
        b"CSeq: 2 INVITE\r\n"
        b"Contact: <sip:3003@192.168.1.77:5070>\r\n"
    )
    texts = [
        # REGISTER with digest credentials and an outbound Contact
        b"REGISTER sip:pbx.example.net;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.20.30.40:5062;rport;branch=z9hG4bK.Qm3Zx8pWk\r\n"
        b"From: <sip:2001@pbx.example.net>;tag=aG7kLq2\r\n"
        b"To: sip:2001@pbx.example.net\r\n"
        b"CSeq: 21 REGISTER\r\n"
        b"Call-ID: qLz8sKd0pX\r\n"
        b"Max-Forwards: 70\r\n"
        b"Supported: outbound, path, gruu\r\n"
        b'Contact: <sip:2001@10.20.30.40:5062;transport=udp>;+sip.instance="<urn:uuid:'
        b'0c4a2b9e-5c1d-4e3f-9a7b-2d6e8f1a3c5b>";reg-id=1;expires=600\r\n'
        b'Authorization: Digest realm="pbx.example.net", nonce="5f3c9a1be2d4", '
        b'algorithm=MD5, username="2001", uri="sip:pbx.example.net;transport=udp", '
        b'response="0d9e3c2b1a8f7e6d5c4b3a2f1e0d9c8b", qop=auth, nc=00000001, '
        b'cnonce="a8b7c6d5"\r\n'
        b"User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n"
        b"Content-Length: 0\r\n\r\n",
        # its challenge and its success
        b"SIP/2.0 401 Unauthorized\r\n"
        b"Via: SIP/2.0/UDP 10.20.30.40:5062;rport=5062;branch=z9hG4bK.Qm3Zx8pWk;"
        b"received=10.20.30.40\r\n"
        b"From: <sip:2001@pbx.example.net>;tag=aG7kLq2\r\n"
        b"To: <sip:2001@pbx.example.net>;tag=srv81\r\n"
        b"Call-ID: qLz8sKd0pX\r\n"
        b"CSeq: 20 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="pbx.example.net", nonce="5f3c9a1be2d4", '
        b'algorithm=MD5, qop="auth"\r\n'
        b"Server: mss\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 10.20.30.40:5062;rport=5062;branch=z9hG4bK.Qm3Zx8pWk;"
        b"received=10.20.30.40\r\n"
        b"From: <sip:2001@pbx.example.net>;tag=aG7kLq2\r\n"
        b"To: <sip:2001@pbx.example.net>;tag=srv82\r\n"
        b"Call-ID: qLz8sKd0pX\r\n"
        b"CSeq: 21 REGISTER\r\n"
        b"Contact: <sip:2001@10.20.30.40:5062;transport=udp>;expires=600\r\n"
        b"Date: Fri, 27 Nov 2026 10:00:00 GMT\r\n"
        b"Content-Length: 0\r\n\r\n",
        # a call through a proxy: INVITE, provisional and final answers, ACK, BYE
        b"INVITE sip:3003@pbx.example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 172.16.5.9:5060;branch=z9hG4bK-524287-1---f00dbabe;rport\r\n"
        b"Max-Forwards: 69\r\n"
        b"Contact: <sip:2002@172.16.5.9:5060>\r\n"
        b"To: <sip:3003@pbx.example.net>\r\n"
        b'From: "Reception" <sip:2002@pbx.example.net>;tag=6a1b2c3d\r\n'
        b"Call-ID: Y2FsbC1pZC0xMjM0NTY3ODk\r\n"
        b"CSeq: 2 INVITE\r\n"
        b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Supported: replaces, timer\r\n"
        b"Session-Expires: 1800\r\n"
        b"User-Agent: Zoiper rv2.10\r\n"
        b"Content-Length: " + str(len(sdp)).encode() + b"\r\n\r\n" + sdp,
        b"SIP/2.0 100 Trying\r\n"
        b"Via: SIP/2.0/UDP 172.16.5.9:5060;branch=z9hG4bK-524287-1---f00dbabe;rport=5060\r\n"
        b"To: <sip:3003@pbx.example.net>\r\n"
        b'From: "Reception" <sip:2002@pbx.example.net>;tag=6a1b2c3d\r\n'
        b"Call-ID: Y2FsbC1pZC0xMjM0NTY3ODk\r\n"
        b"CSeq: 2 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"SIP/2.0 180 Ringing\r\n" + answer + b"Content-Length: 0\r\n\r\n",
        b"SIP/2.0 200 OK\r\n" + answer + b"Content-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(sdp)).encode() + b"\r\n\r\n" + sdp,
        b"ACK sip:3003@192.168.1.77:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 172.16.5.9:5060;branch=z9hG4bK-524287-1---0ddba11;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:192.168.1.1;lr>\r\n"
        b"To: <sip:3003@pbx.example.net>;tag=77aa\r\n"
        b'From: "Reception" <sip:2002@pbx.example.net>;tag=6a1b2c3d\r\n'
        b"Call-ID: Y2FsbC1pZC0xMjM0NTY3ODk\r\n"
        b"CSeq: 2 ACK\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"BYE sip:2002@172.16.5.9:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.168.1.77:5070;branch=z9hG4bKbye42\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:192.168.1.1;lr>\r\n"
        b"From: <sip:3003@pbx.example.net>;tag=77aa\r\n"
        b'To: "Reception" <sip:2002@pbx.example.net>;tag=6a1b2c3d\r\n'
        b"Call-ID: Y2FsbC1pZC0xMjM0NTY3ODk\r\n"
        b"CSeq: 101 BYE\r\n"
        b"Content-Length: 0\r\n\r\n",
        # compact forms, a keepalive OPTIONS, a scanner, a MESSAGE
        b"OPTIONS sip:pbx.example.net SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 10.1.1.5:5060;branch=z9hG4bKka77\r\n"
        b"f: <sip:keepalive@10.1.1.5>;tag=ka\r\n"
        b"t: <sip:pbx.example.net>\r\n"
        b"i: ka-88121@10.1.1.5\r\n"
        b"CSeq: 9 OPTIONS\r\n"
        b"Max-Forwards: 70\r\n"
        b"l: 0\r\n\r\n",
        b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-2547911466;rport\r\n"
        b"Content-Length: 0\r\n"
        b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6434396633623535313363340131363634323035\r\n'
        b"Accept: application/sdp\r\n"
        b"User-Agent: friendly-scanner\r\n"
        b'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
        b"Contact: sip:100@127.0.1.1:5061\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Call-ID: 24618375912045376031523\r\n"
        b"Max-Forwards: 70\r\n\r\n",
        b"MESSAGE sip:2001@pbx.example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 10.9.8.7:5061;branch=z9hG4bKim9;alias\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: sip:2005@pbx.example.net;tag=m1\r\n"
        b"To: sip:2001@pbx.example.net\r\n"
        b"Call-ID: im-5551@10.9.8.7\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain;charset=utf-8\r\n"
        b"Content-Length: 11\r\n\r\nhello there",
    ]
    return texts


_BAD = [
    b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",  # no empty line
    b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 99\r\n\r\n",  # body shorter
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 8,  # TLS hello on the UDP port
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP\r\nFrom: <sip:a@b\r\nCSeq: x\r\n\r\n",
]


def _read(m: object, fastsip: object) -> None:
    """The accessors a registrar, a proxy and a B2BUA read on every message."""
    m.via.branch, m.via.host, m.via.port, m.via.transport, m.via.received, m.via.rport
    m.from_.tag, m.from_.uri.user, m.from_.uri.host, m.from_.display
    m.to.tag, m.to.uri, m.call_id, m.cseq.seq, m.cseq.method
    m.max_forwards, m.expires, m.content_length, m.content_type
    for c in m.contacts:
        c.uri.host, c.uri.port, c.expires, c.params
    m.vias, m.routes, m.record_routes, m.supported, m.user_agent
    for a in m.authorization:
        a.scheme, a.params
    for a in m.www_authenticate:
        a.params
    if isinstance(m, fastsip.Request):
        m.method, m.uri.user, m.uri.host, m.uri.params
    else:
        m.status, m.reason


def main(build_dir: str, rounds: int = ROUNDS) -> None:
    sys.path.insert(0, build_dir)
    if os.environ.get("FASTSIP_NO_EXTENSIONS", "") in ("", "0"):
        # (setup.py clears FASTSIP_NO_EXTENSIONS: there the instrumented modules must load; a
        # pure-Python test run drives the same calls through the pure twins)
        os.environ["FASTSIP_REQUIRE_EXTENSIONS"] = "1"
    import fastsip
    from fastsip import BanTable, ParseError, TimerWheel, parse_datagram

    messages = _messages()
    for data in messages:  # a training message that fails would train the wrong paths
        _read(parse_datagram(data), fastsip)
    stream = b"".join(m for m in messages if b"/TCP " in m or b"/TLS " in m) + b"\r\n\r\n"
    bans = BanTable(max_entries=4096)
    wheel = TimerWheel(tick=0.01)
    now = 0.0
    parsed = rejected = 0
    for r in range(rounds):
        for data in messages:
            m = parse_datagram(data)
            parsed += 1
            fastsip.classify(data)
            _read(m, fastsip)
            if isinstance(m, fastsip.Request):
                m.push_via(f"SIP/2.0/UDP 192.168.1.1:5060;branch=z9hG4bKpx{r}")
                bytes(m)
                m.pop_via()
                if m.method != "ACK":
                    bytes(fastsip.make_response(m, 200 if r % 4 else 486, to_tag="t9"))
            bytes(m)
        for data in _BAD:
            fastsip.classify(data)
            try:
                parse_datagram(data).validate()
            except ParseError:
                rejected += 1
        parser = fastsip.StreamParser()
        for i in range(0, len(stream), 97):
            parser.feed(stream[i : i + 97])
        now += 0.02
        for i in range(16):
            ip = bytes((127, 0, r & 0xFF, i))
            if not bans.check(ip, now):
                if i % 5 == 0:
                    bans.record_failure(ip, now)
                else:
                    bans.record_success(ip, now)
        handles = [wheel.schedule(now + 0.5 + i * 0.05, i) for i in range(8)]
        for h in handles[::2]:
            wheel.cancel(h)
        wheel.advance(now)
    print(
        f"pgo training: {rounds} rounds, {parsed} messages parsed and read, {rejected} rejected,"
        f" extensions: {fastsip.USING_EXTENSIONS}"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS)
