"""What an operator watches, during a real SIPp load through a node: ``/metrics`` counts what
SIPp did (INVITEs, responses by code, calls by peer and outcome, setup times), the Grafana
dashboard and the alert rules in docs/ only name metrics the node serves, and the dashboard
in headless Chromium charts the calls and failures a second, shows setup percentiles and the
health strip of a PBX host that stopped answering."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import Browser
from sbc import ROOT, Pkiss, basic_config, free_port
from servers import Redis
from sipp import SCENARIOS, Sipp, sipp_available

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (package chromium)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server"),
]

OPERATOR, PBX, BUSY, BACKUP = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
ANSWERED, BUSY_CALLS, UNROUTED = 40, 10, 6
HEALTH = {"interval": 1, "timeout": 0.5, "down_after": 2, "up_after": 1}


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis().start()
    try:
        yield server
    finally:
        server.stop()


def scrape(node: Pkiss) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://{node.config['admin']['listen']}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert found, line
        labels = frozenset(re.findall(r'([a-zA-Z_]+)="([^"]*)"', found.group(3) or ""))
        samples[(found.group(1), labels)] = float(found.group(4))
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return samples.get((name, frozenset(labels.items())), 0.0)


def get_json(node: Pkiss, path: str) -> Any:
    with urllib.request.urlopen(f"http://{node.config['admin']['listen']}{path}", timeout=5) as r:
        return json.loads(r.read())


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def uac_expecting(status: int, workdir: Path) -> Path:
    """A caller that expects ``status`` as its final answer (uac_busy.xml, another code)."""
    text = (SCENARIOS / "uac_busy.xml").read_text()
    text = text.replace('response="486"', f'response="{status}"')
    path = workdir / f"uac_{status}.xml"
    path.write_text(text)
    return path


def test_a_sipp_load_shows_in_metrics_and_on_the_dashboard(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], redis: Redis,
    tmp_path: Path,
) -> None:  # fmt: skip
    sbc_port, op_port = free_port(), free_port(OPERATOR)
    pbx_port, busy_port, backup_port = free_port(PBX), free_port(BUSY), free_port(BACKUP)
    config: dict[str, Any] = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
    peers = config["peers"]
    peers["pbx"]["health"] = HEALTH
    peers["busy"] = {"role": "pbx", "hosts": [{"address": f"{BUSY}:{busy_port}"}],
                     "match": {"source": [BUSY]}, "health": False, "dids": ["+332*"]}  # fmt: skip
    peers["backup"] = {"role": "pbx", "hosts": [{"address": f"{BACKUP}:{backup_port}"}],
                       "match": {"source": [BACKUP]}, "health": HEALTH,
                       "dids": ["+339*"]}  # fmt: skip
    config["media"] = {"mode": "relay", "ports": "43000-43999"}
    config["state"] = redis.url
    node = sbc_factory(config)
    sbc = ("127.0.0.1", sbc_port)
    # PBXs that answer the health checks (-aa): no call count, stopped at the end
    sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=None,
                       auto_answer=True, timeout=90).start()  # fmt: skip
    backup = sipp_factory("uas_basic", local_ip=BACKUP, local_port=backup_port, calls=None,
                          auto_answer=True, timeout=90).start()  # fmt: skip
    busy = sipp_factory(
        "uas_busy", local_ip=BUSY, local_port=busy_port, calls=BUSY_CALLS, timeout=90
    ).start()
    wait_for(lambda: all(h["state"] == "up" for p in get_json(node, "/api/peers")
                         for h in p["hosts"] if p["name"] in ("pbx", "backup")),
             "the PBXs never answered their health checks")  # fmt: skip

    shots = Path(os.environ.get("PKISS_SCREENSHOTS", tmp_path))
    with Browser(CHROMIUM or "", f"http://{node.config['admin']['listen']}/") as page:
        assert page.until("document.getElementById('state').textContent.startsWith('updated')")
        # the load: answered calls, busy ones and unrouted numbers (404 from the node)
        answered = sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port, remote=sbc,
                                service="+33123456789", caller="+33970000001", calls=ANSWERED,
                                rate=2, pause_ms=1000, timeout=60).start()  # fmt: skip
        failing = sipp_factory("uac_busy", local_ip=OPERATOR, remote=sbc, service="+33223456789",
                               caller="+33970000002", calls=BUSY_CALLS, rate=0.5,
                               timeout=60).start()  # fmt: skip
        unrouted = sipp_factory(uac_expecting(404, tmp_path), local_ip=OPERATOR, remote=sbc,
                                service="+34123456789", caller="+33970000003", calls=UNROUTED,
                                rate=0.3, timeout=60).start()  # fmt: skip
        time.sleep(5.0)
        backup.stop()  # a PBX host stops answering: its health checks fail

        # during the run: the chart has points for calls and failures, percentiles are numbers
        nonzero = "Number(document.querySelector('#traffic-svg polyline.{}')?.dataset.nonzero || 0)"
        assert page.until(nonzero.format("calls") + " > 0", 20), page.run("document.body.innerText")
        assert page.until(nonzero.format("failed") + " > 0", 20)
        p50 = "[...document.querySelectorAll('#setup .card b')].map((b) => b.textContent)"
        assert page.until(f"/^[0-9]+ ms$/.test({p50}[0])", 20), page.run(p50)
        strip = f"document.querySelector('.host[data-host=\"{BACKUP}:{backup_port}\"]')"
        assert page.until(f"{strip}?.querySelector('rect.down') !== null", 20), page.run(
            "document.getElementById('health').innerText"
        )
        assert page.run(f"{strip}.querySelector('rect.up') !== null")  # up before it went down
        assert "down" in page.run(f"{strip}.querySelector('.now').textContent")
        pbx_strip = f"document.querySelector('.host[data-host=\"{PBX}:{pbx_port}\"]')"
        assert page.run(f"{pbx_strip}.querySelector('rect.down') === null")

        answered.check(timeout=40)
        failing.check(timeout=40)
        unrouted.check(timeout=40)
        busy.check(timeout=10)
        wait_for(lambda: get_json(node, "/api/calls") == [], "calls still in progress")

        # the last minute a point a second, then the screenshot (docs/ with PKISS_SCREENSHOTS)
        page.run("const w = document.getElementById('window'); w.value = '60';"
                 "w.dispatchEvent(new Event('change'))")  # fmt: skip
        points = "document.querySelector('#traffic-svg polyline.calls').getAttribute('points')"
        assert page.until(f"{points}.split(' ').length === 60", 10)
        note = "document.getElementById('chart-note').textContent"
        calls_in = f"Number({note}.match(/([0-9]+) calls/)[1])"
        total = ANSWERED + BUSY_CALLS + UNROUTED
        assert page.until(f"{calls_in} === {total}", 10), page.run(
            "document.getElementById('chart-note').textContent"
        )
        page.screenshot(shots / "dashboard-traffic.png", height=1100)

        # filters: the busy peer's records only, by peer and status
        page.run("document.getElementById('f-peer').value = 'busy';"
                 "document.getElementById('f-status').value = '486';"
                 "document.querySelector('#filters button[type=submit]').click()")  # fmt: skip
        rows = "[...document.querySelectorAll('#cdr tbody tr')].map((tr) => tr.textContent)"
        assert page.until(f"{rows}.length === {BUSY_CALLS}", 10), page.run(rows)
        assert all("busy" in row and "486" in row for row in page.run(rows))
    assert (shots / "dashboard-traffic.png").stat().st_size > 20_000

    # /metrics: what SIPp did
    s = scrape(node)
    invites = value(s, "pkiss_sip_requests_total", direction="in", method="INVITE")
    assert invites >= ANSWERED + BUSY_CALLS + UNROUTED
    assert value(s, "pkiss_sip_requests_total", direction="out", method="INVITE") >= ANSWERED
    assert value(s, "pkiss_sip_requests_total", direction="out", method="OPTIONS") > 0  # probes
    assert value(s, "pkiss_sip_responses_total", direction="out", code="200") >= ANSWERED
    assert value(s, "pkiss_sip_responses_total", direction="in", code="486") >= BUSY_CALLS
    assert value(s, "pkiss_sip_responses_total", direction="out", code="486") >= BUSY_CALLS
    assert value(s, "pkiss_sip_responses_total", direction="out", code="404") >= UNROUTED
    assert value(s, "pkiss_call_setup_seconds_count") == ANSWERED
    assert value(s, "pkiss_call_setup_seconds_bucket", le="+Inf") == ANSWERED
    assert 0 < value(s, "pkiss_call_setup_seconds_sum") < ANSWERED * 5
    peer_calls = {(dict(k[1])["peer"], dict(k[1])["side"], dict(k[1])["outcome"]): v
                  for k, v in s.items() if k[0] == "pkiss_peer_calls_total"}  # fmt: skip
    assert peer_calls == {
        ("operator", "source", "answered"): ANSWERED,
        ("operator", "source", "failed"): BUSY_CALLS + UNROUTED,
        ("pbx", "destination", "answered"): ANSWERED,
        ("busy", "destination", "failed"): BUSY_CALLS,
    }, peer_calls
    assert value(s, "pkiss_host_up", peer="backup", host=f"{BACKUP}:{backup_port}") == 0
    assert value(s, "pkiss_host_up", peer="pbx", host=f"{PBX}:{pbx_port}") == 1
    assert value(s, "pkiss_state_connected") == 1
    assert ("pkiss_transactions", frozenset()) in s
    assert ("pkiss_sip_retransmissions_total", frozenset({("direction", "out")})) in s
    assert ("pkiss_cdr_queue", frozenset()) in s
    assert value(s, "pkiss_media_packets_total") >= 0

    # the Grafana dashboard and the alert rules name only what is served, with its labels
    served: dict[str, set[str]] = {}
    for name, labels in s:
        served.setdefault(name, set()).update(k for k, _ in labels)
    docs = ROOT / "docs"
    for expr in promql(docs / "grafana-pkiss.json", docs / "prometheus-alerts.yml"):
        for name, matchers in re.findall(r"\b(pkiss_[a-z0-9_]+)(\{[^}]*\})?", expr):
            assert name in served, f"{name} is not in /metrics (used by {expr})"
            for label in re.findall(r"([a-z_]+)\s*[=!~]", matchers):
                assert label == "instance" or label in served[name], (name, label, expr)
        for label in re.findall(r"by \(([^)]*)\)", expr):
            for one in (x.strip() for x in label.split(",")):
                assert one in ("instance", "le") or any(one in ls for ls in served.values()), one


def promql(dashboard: Path, rules: Path) -> list[str]:
    """Every PromQL expression in a Grafana dashboard (its panels' targets and variables) and
    in a Prometheus rules file."""
    found: list[str] = []
    for panel in json.loads(dashboard.read_text())["panels"]:
        found += [t["expr"] for t in panel.get("targets", [])]
    for variable in json.loads(dashboard.read_text())["templating"]["list"]:
        if variable.get("type") == "query":
            found.append(variable["definition"])
    for group in yaml.safe_load(rules.read_text())["groups"]:
        found += [rule["expr"] for rule in group["rules"]]
    assert len(found) > 30
    return found
