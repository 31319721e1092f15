"""Prometheus metrics, read from the node's state when scraped: nothing is counted twice. The
per-message path only counts what it already told apart (the engine's messages by method or
status, the transaction layer's retransmissions); calls by peer and the setup-time histogram
come from the call records (``stats.py``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..node import Node
from ..security.connections import REASONS
from ..sip.transaction import Addr
from ..stats import SETUP_BUCKETS, CallStats

__all__ = ["render_metrics"]


class _NodeCollector:
    def __init__(self, node: Node, now: float) -> None:
        self.node = node
        self.now = now

    def collect(self) -> Iterator[Metric]:
        node, now = self.node, self.now
        owner = node.calls
        stats = owner.stats
        calls = CounterMetricFamily("pkiss_calls", "Calls by outcome since start",
                                    labels=["outcome"])  # fmt: skip
        for outcome in ("answered", "failed", "limited"):
            calls.add_metric([outcome], stats.get(outcome, 0))
        yield calls
        yield CounterMetricFamily("pkiss_call_attempts", "Calls offered since start",
                                  value=stats.get("calls", 0))  # fmt: skip
        yield GaugeMetricFamily("pkiss_calls_in_progress", "Calls in progress",
                                value=len(owner.calls))  # fmt: skip
        per_peer = GaugeMetricFamily("pkiss_peer_calls_in_progress", "Calls in progress per peer",
                                     labels=["peer"])  # fmt: skip
        for name, counters in sorted(owner.limits.snapshot().items()):
            per_peer.add_metric([name], counters.calls)
        yield per_peer
        up = GaugeMetricFamily("pkiss_host_up", "1 when a probed host answers OPTIONS",
                               labels=["peer", "host"])  # fmt: skip
        for addr, host in sorted(node.monitor.hosts.items(), key=lambda kv: str(kv[0])):
            up.add_metric([host.name, f"{addr.host}:{addr.port}"], 1 if host.up else 0)
        yield up
        drains = node.drains
        drained = GaugeMetricFamily("pkiss_host_drained", "1 when a host gets no new calls: "
                                    "drained itself or by its peer",
                                    labels=["peer", "host"])  # fmt: skip
        peer_drained = GaugeMetricFamily("pkiss_peer_drained", "1 when a peer is drained",
                                         labels=["peer"])  # fmt: skip
        for name, peer in sorted(node.config.peers.items()):
            peer_drained.add_metric([name], 1 if name in drains.peers else 0)
            if peer.registered:
                continue
            for h in peer.hosts:
                addr = Addr(h.transport, h.host, h.port)
                drained.add_metric([name, str(h.address)], int(drains.host_drained(name, addr)))
        yield drained
        yield peer_drained
        yield CounterMetricFamily("pkiss_dropped_packets", "Packets dropped unanswered",
                                  value=node.dropped)  # fmt: skip
        sec = CounterMetricFamily("pkiss_security_events", "Security filter hits",
                                  labels=["kind"])  # fmt: skip
        for kind, count in sorted(node.security.stats.items()):
            sec.add_metric([kind], count)
        yield sec
        yield GaugeMetricFamily("pkiss_bans", "Sources banned now",
                                value=len(node.security.bans.active(now)))  # fmt: skip
        gate = node.connections
        inbound = GaugeMetricFamily("pkiss_inbound_connections",
                                    "TCP and TLS connections peers and strangers opened, held now",
                                    labels=["source"])  # fmt: skip
        inbound.add_metric(["peer"], gate.inbound - gate.strangers)
        inbound.add_metric(["stranger"], gate.strangers)
        yield inbound
        yield GaugeMetricFamily("pkiss_inbound_connections_max",
                                "Inbound connections held at most: connections.max within the "
                                "descriptor limit", value=gate.cap)  # fmt: skip
        yield GaugeMetricFamily("pkiss_outbound_connections",
                                "TCP and TLS connections the node opened to peers",
                                value=gate.outbound)  # fmt: skip
        closed = CounterMetricFamily("pkiss_connections_closed",
                                     "Inbound connections the node closed, by reason",
                                     labels=["reason"])  # fmt: skip
        for reason in REASONS:
            closed.add_metric([reason], gate.closed.get(reason, 0))
        yield closed
        overload = node.engine.overload
        yield GaugeMetricFamily("pkiss_overloaded", "1 while the node turns new calls away "
                                "(its event loop lags)", value=int(overload.active))  # fmt: skip
        yield GaugeMetricFamily("pkiss_loop_lag_seconds", "The event loop's lag, smoothed",
                                value=overload.lag)  # fmt: skip
        yield CounterMetricFamily("pkiss_overload_refused", "New INVITEs answered 503 while "
                                  "overloaded", value=overload.turned_away)  # fmt: skip
        engine = node.engine
        requests = CounterMetricFamily("pkiss_sip_requests", "SIP requests parsed from peers "
                                       "(in) and sent (out), by method",
                                       labels=["direction", "method"])  # fmt: skip
        responses = CounterMetricFamily("pkiss_sip_responses", "SIP responses parsed from peers "
                                        "(in) and sent (out), by status code",
                                        labels=["direction", "code"])  # fmt: skip
        ways = (("in", engine.requests_in, engine.responses_in),
                ("out", engine.requests_out, engine.responses_out))  # fmt: skip
        for direction, reqs, resps in ways:
            for method, count in sorted(reqs.items()):
                requests.add_metric([direction, method], count)
            for code, count in sorted(resps.items()):
                responses.add_metric([direction, str(code)], count)
        yield requests
        yield responses
        layer = node.core.layer
        retx = CounterMetricFamily("pkiss_sip_retransmissions", "SIP retransmissions: requests "
                                   "(and 2xx) that came again (in), messages sent again (out)",
                                   labels=["direction"])  # fmt: skip
        retx.add_metric(["in"], layer.retransmissions)
        retx.add_metric(["out"], layer.retransmitted)
        yield retx
        yield GaugeMetricFamily("pkiss_transactions", "SIP transactions in flight (client and "
                                "server, lingering ones included)", value=len(layer))  # fmt: skip
        relay = node.relay
        if relay is not None:
            yield GaugeMetricFamily("pkiss_media_calls", "Calls whose media the relay anchors",
                                    value=len(relay.calls))  # fmt: skip
            yield CounterMetricFamily("pkiss_media_packets", "RTP/RTCP packets relayed",
                                      value=relay.stats["packets"])  # fmt: skip
            yield CounterMetricFamily("pkiss_media_bytes", "RTP/RTCP bytes relayed",
                                      value=relay.stats["bytes"])  # fmt: skip
            yield CounterMetricFamily("pkiss_media_rtcp_packets", "RTCP packets relayed",
                                      value=relay.stats.get("rtcp", 0))  # fmt: skip
            yield CounterMetricFamily("pkiss_media_rtcp_rewritten",
                                      "RTCP packets whose SDES items (CNAME...) were rewritten",
                                      value=relay.stats.get("rtcp_rewritten", 0))  # fmt: skip
            yield GaugeMetricFamily("pkiss_media_sockets",
                                    "Sockets the relay holds, in calls or pooled",
                                    value=relay.sockets)  # fmt: skip
            yield CounterMetricFamily("pkiss_media_ignored_packets",
                                      "Packets to relay ports from unexpected sources",
                                      value=relay.stats["ignored"])  # fmt: skip
            yield CounterMetricFamily("pkiss_media_learned_sources",
                                      "Media sources learned from a first packet "
                                      "(media.learn: first-packet)",
                                      value=relay.stats.get("learned", 0))  # fmt: skip


class _CdrCollector:
    """The CDR writer's counters and its spool (``storage.cdr_spool``)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        w = self.writer
        yield CounterMetricFamily("pkiss_cdr_written", "CDRs written to the database since start",
                                  value=w.written)  # fmt: skip
        yield GaugeMetricFamily("pkiss_cdr_spool_bytes",
                                "Bytes of CDRs in the spool, not in the database yet",
                                value=w.spool_bytes)  # fmt: skip
        yield GaugeMetricFamily("pkiss_cdr_spool_max_bytes", "storage.cdr_spool.max_bytes",
                                value=w.spool_max_bytes)  # fmt: skip
        yield CounterMetricFamily("pkiss_cdr_spool_refused",
                                  "CDRs the full spool refused since start",
                                  value=w.refused)  # fmt: skip
        yield CounterMetricFamily("pkiss_cdr_dropped",
                                  "CDRs lost since start (spool full and database failing)",
                                  value=w.dropped)  # fmt: skip
        yield GaugeMetricFamily("pkiss_cdr_queue", "CDRs waiting in memory for the next batch",
                                value=len(w.pending))  # fmt: skip


class _StatsCollector:
    """Calls by peer and outcome, and the setup-time histogram, from the call records."""

    def __init__(self, stats: CallStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        peers = CounterMetricFamily("pkiss_peer_calls", "Calls ended by peer, side (source: the "
                                    "peer called; destination: the call went to it) and outcome "
                                    "(answered: 2xx; failed: any other final status, or none)",
                                    labels=["peer", "side", "outcome"])  # fmt: skip
        for (peer, side, outcome), count in sorted(stats.outcomes.items()):
            peers.add_metric([peer, side, outcome], count)
        yield peers
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*SETUP_BUCKETS, math.inf), stats.setup_buckets, strict=True):
            total += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), total))
        setup = HistogramMetricFamily("pkiss_call_setup_seconds", "Seconds from a call's INVITE "
                                      "to its answer, answered calls")  # fmt: skip
        setup.add_metric([], buckets, stats.setup_sum)
        yield setup


class _StateCollector:
    """``state: redis://...``: whether this node reaches the shared store."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("pkiss_state_connected", "1 while the shared state (Redis) "
                                "answers", value=int(bool(self.state.connected)))  # fmt: skip
        yield GaugeMetricFamily("pkiss_state_nodes", "Nodes seen in the shared state",
                                value=self.state.nodes)  # fmt: skip


def render_metrics(node: Node, now: float, cdr: Any = None, stats: CallStats | None = None,
                   state: Any = None) -> tuple[bytes, str]:  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(node, now))
    if cdr is not None:
        registry.register(_CdrCollector(cdr))
    if stats is not None:
        registry.register(_StatsCollector(stats))
    if state is not None:
        registry.register(_StateCollector(state))
    return generate_latest(registry), CONTENT_TYPE_LATEST
