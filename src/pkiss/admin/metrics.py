"""Prometheus metrics, read from the node's state when scraped: nothing is counted twice and
the per-message path does no metrics work at all."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..engine import Engine

__all__ = ["render_metrics"]


class _NodeCollector:
    def __init__(self, engine: Engine, now: float) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterator[Metric]:
        engine, now = self.engine, self.now
        b2bua = engine.b2bua
        stats = b2bua.stats
        calls = CounterMetricFamily("pkiss_calls", "Calls by outcome since start",
                                    labels=["outcome"])  # fmt: skip
        for outcome in ("answered", "failed", "limited"):
            calls.add_metric([outcome], stats.get(outcome, 0))
        yield calls
        yield CounterMetricFamily("pkiss_call_attempts", "Calls offered since start",
                                  value=stats.get("calls", 0))  # fmt: skip
        yield GaugeMetricFamily("pkiss_calls_in_progress", "Calls in progress",
                                value=len(b2bua.calls))  # fmt: skip
        per_peer = GaugeMetricFamily("pkiss_peer_calls_in_progress", "Calls in progress per peer",
                                     labels=["peer"])  # fmt: skip
        for name, counters in sorted(b2bua.limits.snapshot().items()):
            per_peer.add_metric([name], counters.calls)
        yield per_peer
        up = GaugeMetricFamily("pkiss_host_up", "1 when a probed host answers OPTIONS",
                               labels=["peer", "host"])  # fmt: skip
        monitor = b2bua.monitor
        if monitor is not None:
            for addr, host in sorted(monitor.hosts.items(), key=lambda kv: str(kv[0])):
                up.add_metric([host.name, f"{addr.host}:{addr.port}"], 1 if host.up else 0)
        yield up
        yield CounterMetricFamily("pkiss_dropped_packets", "Packets dropped unanswered",
                                  value=engine.dropped)  # fmt: skip
        sec = CounterMetricFamily("pkiss_security_events", "Security filter hits",
                                  labels=["kind"])  # fmt: skip
        for kind, count in sorted(engine.security.stats.items()):
            sec.add_metric([kind], count)
        yield sec
        yield GaugeMetricFamily("pkiss_bans", "Sources banned now",
                                value=len(engine.security.bans.active(now)))  # fmt: skip
        relay = engine.relay
        if relay is not None:
            yield GaugeMetricFamily("pkiss_media_calls", "Calls whose media the relay anchors",
                                    value=len(relay.calls))  # fmt: skip
            yield CounterMetricFamily("pkiss_media_packets", "RTP/RTCP packets relayed",
                                      value=relay.stats["packets"])  # fmt: skip
            yield CounterMetricFamily("pkiss_media_bytes", "RTP/RTCP bytes relayed",
                                      value=relay.stats["bytes"])  # fmt: skip
            yield CounterMetricFamily("pkiss_media_ignored_packets",
                                      "Packets to relay ports from unexpected sources",
                                      value=relay.stats["ignored"])  # fmt: skip


def render_metrics(engine: Engine, now: float) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(engine, now))
    return generate_latest(registry), CONTENT_TYPE_LATEST
