"""``/metrics``: Prometheus text format (prometheus-client), read from counters that exist anyway.

:class:`ServerCollector` is a custom collector: at scrape time it reads the plain counters the
SIP side keeps (``SipCore`` per-method/status dicts and sampled handler timings,
``TransportStats``, the registrar's, authenticator's, security policy's, blacklist's and
B2BUA's ``stats``), the location service and the event hub. The hot path gains no
prometheus-client call: it only increments ints in dicts it owns. One registry per API app (no
global registry, no import-time state).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..auth import ReadToken
from ..problems import problem_responses
from ..services import ApiServices, CoreCounters
from .common import strict_query

__all__ = ("ServerCollector", "metrics_registry", "router")

router = APIRouter(dependencies=[Depends(strict_query)])
#: the classic text format (every name here is a legacy-valid metric name)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: TransportStats fields exported as ``mss_transport_<name>_total``, with their help text.
_TRANSPORT_HELP = {
    "messages_in": "SIP messages received and parsed",
    "messages_out": "SIP messages sent",
    "parse_errors": "datagrams or stream data that failed to parse",
    "dropped_banned": "packets and connections dropped from banned or black-listed sources",
    "dropped_garbage": "datagrams that were neither SIP, STUN nor keepalives",
    "stateless_errors": "stateless error responses to unparsable requests",
    "send_errors": "failed sends",
    "stun_requests": "STUN binding requests answered",
    "keepalives": "CRLF keepalives received",
    "connections_opened": "TCP/TLS connections opened",
    "connections_closed": "TCP/TLS connections closed",
    "connections_refused": "TCP/TLS connections refused by per-source or total caps",
}


class ServerCollector(Collector):
    """Reads the server's counters at scrape time (see the module docstring)."""

    def __init__(self, services: ApiServices) -> None:
        self.svc = services

    def collect(self) -> Iterator[Metric]:
        svc = self.svc
        yield from self._info()
        core = svc.core
        if core is not None:
            yield from self._core(core)
        if svc.transport is not None:
            stats = svc.transport.as_dict()
            for name, help_text in _TRANSPORT_HELP.items():
                if name in stats:
                    yield CounterMetricFamily(f"mss_transport_{name}", help_text, value=stats[name])
            drops = CounterMetricFamily(
                "mss_sip_dropped",
                "messages dropped without processing, by reason",
                labels=["reason"],
            )
            drops.add_metric(["banned"], stats.get("dropped_banned", 0))
            drops.add_metric(["garbage"], stats.get("dropped_garbage", 0))
            drops.add_metric(["parse_error"], stats.get("parse_errors", 0))
            if core is not None:
                drops.add_metric(["invalid"], core.stats.get("invalid", 0))
            yield drops
        yield GaugeMetricFamily("mss_users", "local users", value=len(svc.users))
        all_live = svc.location.all()
        yield GaugeMetricFamily(
            "mss_registrations",
            "live bindings (registered contacts)",
            value=sum(len(b) for b in all_live.values()),
        )
        yield GaugeMetricFamily(
            "mss_registered_users", "users with at least one live binding", value=len(all_live)
        )
        if svc.security is not None:
            yield GaugeMetricFamily(
                "mss_bans_active", "sources banned now", value=len(svc.security.bans())
            )
            sec = CounterMetricFamily(
                "mss_security_events", "fail-to-ban counters", labels=["event"]
            )
            for key, value in svc.security.stats.items():
                sec.add_metric([key], value)
            yield sec
        if svc.blacklist is not None:
            bl = CounterMetricFamily(
                "mss_blacklist_calls", "calls screened by the system blacklist", labels=["outcome"]
            )
            for key, value in svc.blacklist.stats.items():
                bl.add_metric([key], value)
            yield bl
            yield GaugeMetricFamily(
                "mss_blacklist_records", "system blacklist records", value=len(svc.blacklist)
            )
        for name, source in sorted((svc.counters or {}).items()):
            fam = CounterMetricFamily(f"mss_{name}_events", f"{name} counters", labels=["event"])
            for key, value in source.stats.items():
                fam.add_metric([key], value)
            yield fam
        if svc.calls is not None:
            yield GaugeMetricFamily(
                "mss_calls_active", "calls in progress", value=len(svc.calls.active_calls())
            )
        if svc.trunks is not None:
            calls = GaugeMetricFamily(
                "mss_trunk_calls",
                "active calls per trunk and direction",
                labels=["trunk", "direction"],
            )
            up = GaugeMetricFamily(
                "mss_trunk_up", "1 unless OPTIONS pings found the trunk down", labels=["trunk"]
            )
            for trunk in svc.trunks.trunks():
                for direction in ("in", "out"):
                    calls.add_metric([trunk.id, direction], svc.trunks.active(trunk.id, direction))
                up.add_metric([trunk.id], 1 if svc.trunks.is_up(trunk.id) else 0)
            yield calls
            yield up
        if svc.lines is not None:
            state = GaugeMetricFamily(
                "mss_line_state",
                "external line registration state (1 for the current state)",
                labels=["line", "state"],
            )
            for st in svc.lines.statuses():
                state.add_metric([str(st["line"]), str(st["state"])], 1)
            yield state
        yield GaugeMetricFamily(
            "mss_event_subscribers", "connected /events clients", value=len(svc.hub)
        )
        ev = CounterMetricFamily("mss_events", "event channel counters", labels=["event"])
        for key, value in svc.hub.stats.items():
            ev.add_metric([key], value)
        yield ev
        yield CounterMetricFamily(
            "mss_decisions_recorded",
            "rejecting decisions recorded for /explain",
            value=svc.decisions.recorded,
        )

    def _info(self) -> Iterator[Metric]:
        info = dict(self.svc.system.system_info()) if self.svc.system is not None else {}
        fam = InfoMetricFamily("mss_build", "version and whether the Cython extensions are used")
        fam.add_metric(
            [],
            {
                "version": str(info.get("version", "")),
                "extensions": "true" if info.get("using_extensions") else "false",
                "event_loop": str(info.get("event_loop", "")),
            },
        )
        yield fam
        if "uptime" in info:
            yield GaugeMetricFamily(
                "mss_uptime_seconds",
                "seconds since the server started",
                value=float(info["uptime"]),
            )
        started = info.get("started_at")
        if started is not None:
            yield GaugeMetricFamily(
                "mss_start_time_seconds", "start time, epoch seconds", value=float(started)
            )

    @staticmethod
    def _core(c: CoreCounters) -> Iterator[Metric]:
        rin = CounterMetricFamily(
            "mss_sip_requests_received", "SIP requests received, by method", labels=["method"]
        )
        for method, n in sorted(c.requests_in.items()):
            rin.add_metric([method], n)
        yield rin
        rout = CounterMetricFamily(
            "mss_sip_requests_sent", "SIP requests sent, by method", labels=["method"]
        )
        for method, n in sorted(c.requests_out.items()):
            rout.add_metric([method], n)
        yield rout
        sin = CounterMetricFamily(
            "mss_sip_responses_received", "SIP responses received, by status", labels=["status"]
        )
        for status, n in sorted(c.responses_in.items()):
            sin.add_metric([str(status)], n)
        yield sin
        sout = CounterMetricFamily(
            "mss_sip_responses_sent", "SIP responses sent, by status", labels=["status"]
        )
        for status, n in sorted(c.responses_out.items()):
            sout.add_metric([str(status)], n)
        yield sout
        yield CounterMetricFamily(
            "mss_sip_retransmissions",
            "request retransmissions absorbed by transactions",
            value=c.stats.get("retransmissions", 0),
        )
        yield CounterMetricFamily(
            "mss_sip_invalid", "messages failing validation", value=c.stats.get("invalid", 0)
        )
        txn = GaugeMetricFamily("mss_sip_transactions", "open transactions", labels=["kind"])
        txn.add_metric(["server"], c.layer.server_count)
        txn.add_metric(["client"], c.layer.client_count)
        yield txn
        timings = c.timings
        hist = HistogramMetricFamily(
            "mss_sip_handler_seconds",
            "time in the request handler, sampled (1 request in 8), by method",
            labels=["method"],
        )
        bounds = list(timings.BUCKETS)
        for method, counts in sorted(timings.counts.items()):
            cumulative = 0
            buckets = []
            for bound, n in zip([*map(str, bounds), "+Inf"], counts, strict=False):
                cumulative += n
                buckets.append((bound, cumulative))
            hist.add_metric([method], buckets, sum_value=timings.sums.get(method, 0.0))
        yield hist


@router.get(
    "/metrics",
    tags=["system"],
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format 0.0.4",
        },
        **problem_responses(401, 422),
    },
)
async def metrics(request: Request, _: ReadToken) -> Response:
    """Prometheus metrics (scrape with ``authorization: {credentials: <token>}``)."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


def metrics_registry(svc: ApiServices) -> CollectorRegistry:
    """A registry of its own holding one :class:`ServerCollector` (no global registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(svc))
    return registry
