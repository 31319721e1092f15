"""Fixtures for the SIPp end-to-end tests: ``from sipp import Sipp`` works from here."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from network import Network
from sbc import Pkiss
from sipp import Sipp


@pytest.fixture(scope="session", autouse=True)
def one_run_at_a_time() -> Iterator[None]:
    """The end-to-end tests use fixed loopback addresses (127.0.0.2-9): a second run on the same
    machine, from another checkout, waits here until the first is over instead of colliding."""
    path = os.environ.get("PKISS_E2E_LOCK", "/tmp/pkiss-e2e-run.lock")
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def sipp_factory(tmp_path: Path) -> Iterator[Callable[..., Sipp]]:
    """Build (not start) Sipp objects working in tmp_path; every one is stopped at teardown.

    ``make = sipp_factory; uas = make("uas_basic", local_ip="127.0.0.3").start()``
    """
    made: list[Sipp] = []

    def make(scenario: str, **kwargs: Any) -> Sipp:
        kwargs.setdefault("workdir", tmp_path)
        peer = Sipp(scenario, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in reversed(made):
        peer.stop()


@pytest.fixture
def sbc_factory(tmp_path: Path) -> Iterator[Callable[..., Pkiss]]:
    """Start pkiss nodes from config dicts; every one is stopped (by PID) at teardown."""
    started: list[Pkiss] = []

    def make(config: dict[str, Any]) -> Pkiss:
        workdir = tmp_path / f"pkiss-{len(started)}"
        workdir.mkdir()
        node = Pkiss(config, workdir)
        started.append(node)
        return node.start()

    yield make
    for node in started:
        node.stop()


@pytest.fixture
def network(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> Callable[..., Network]:
    """``network(*peer_ips)``: a Network (network.py) of this test's factories, a free port
    chosen on each peer address."""

    def make(*ips: str) -> Network:
        return Network(sipp_factory, sbc_factory, *ips)

    return make
