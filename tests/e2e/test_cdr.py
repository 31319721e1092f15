"""Call detail records, as an operator reads them: ``pkiss cdr``, the SQLite file itself, and a
real PostgreSQL server (also one that is down when the calls end)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sbc import Pkiss, basic_config, free_port
from servers import Postgres, postgres_bin
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"
CALLED, CALLER = "+33123456789", "+33987654321"


class Calls:
    """One node, an operator and a PBX; ``run(uac, uas)`` makes one call of that kind."""

    def __init__(self, make_sipp: Callable[..., Sipp], make_sbc: Callable[..., Pkiss],
                 cdr: str) -> None:  # fmt: skip
        self.make_sipp = make_sipp
        self.sbc_port, self.op_port, self.pbx_port = (
            free_port(),
            free_port(OPERATOR),
            free_port(PBX),
        )
        config = basic_config(self.sbc_port, carrier_port=self.op_port, pbx_port=self.pbx_port)
        config["storage"] = {"cdr": cdr}
        self.sbc = make_sbc(config)

    def run(self, uac: str, uas: str, **kw: Any) -> None:
        pbx = self.make_sipp(uas, local_ip=PBX, local_port=self.pbx_port, calls=1).start()
        self.make_sipp(uac, local_ip=OPERATOR, local_port=self.op_port,
                       remote=("127.0.0.1", self.sbc_port), service=CALLED, caller=CALLER,
                       calls=1, **kw).start().check()  # fmt: skip
        pbx.check()


def test_each_call_gets_one_record_shown_by_pkiss_cdr_and_kept_in_sqlite(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    db = tmp_path / "records" / "cdr.sqlite"  # a folder that does not exist yet
    net = Calls(sipp_factory, sbc_factory, f"sqlite:///{db}")
    net.run("uac_basic", "uas_basic", pause_ms=1000)
    net.run("uac_busy", "uas_busy")
    net.run("uac_cancel", "uas_ring_forever")
    shown = net.sbc.cli("cdr")
    assert shown.returncode == 0, shown.stderr
    assert "3 record(s)" in shown.stdout
    records = json.loads(net.sbc.cli("cdr", "--json", "--since", "1h").stdout)
    assert [(r["status"], r["reason"]) for r in records] == [
        (200, "BYE from A-leg"),
        (486, "failed 486"),
        (487, "cancelled"),
    ]
    answered = records[0]
    assert (answered["caller"], answered["called"]) == (CALLER, CALLED)
    assert (answered["source_peer"], answered["dest_peer"]) == ("operator", "pbx")
    assert 0.9 <= answered["duration"] < 5
    assert answered["answered_at"] is not None and records[1]["answered_at"] is None
    assert json.loads(net.sbc.cli("cdr", "--json", "--since",
                            "2000-01-01T00:00:00").stdout) == records  # fmt: skip
    # the node stops; the file holds every record, readable with any SQLite tool
    assert net.sbc.stop() == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, source_peer, dest_peer FROM cdr ORDER BY id").fetchall()
    assert rows == [(200, "operator", "pbx"), (486, "operator", "pbx"), (487, "operator", "pbx")]


def test_a_bad_since_is_refused_with_its_reason(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    net = Calls(sipp_factory, sbc_factory, f"sqlite:///{tmp_path / 'cdr.sqlite'}")
    done = net.sbc.cli("cdr", "--since", "yesterday")
    assert done.returncode == 1 and "--since" in done.stderr


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server not installed (Debian package postgresql)")
    server = Postgres()
    yield server
    server.remove()


def test_records_go_to_postgresql_even_when_it_comes_up_late(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], postgres: Postgres
) -> None:
    """The node starts while PostgreSQL is down: calls go on, their records wait in memory
    and land once the database answers."""
    net = Calls(sipp_factory, sbc_factory, postgres.url)
    net.run("uac_basic", "uas_basic")
    assert "CDR storage postgresql://pkiss@127.0.0.1" in net.sbc.log()  # not available yet
    postgres.start()
    net.run("uac_busy", "uas_busy")
    deadline = time.monotonic() + 10
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        try:
            rows = postgres.query("SELECT status, called, dest_peer FROM cdr ORDER BY id")
        except Exception:  # the table is created by the node's next write
            rows = []
        if len(rows) == 2:
            break
        time.sleep(0.2)
    assert rows == [(200, CALLED, "pbx"), (486, CALLED, "pbx")]
    shown = net.sbc.cli("cdr")
    assert "2 record(s)" in shown.stdout


def test_a_call_refused_before_it_exists_has_its_record(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    """The PBX calls a number its routes refuse with 503: no B-leg, one record."""
    sbc_port, pbx_port = free_port(), free_port(PBX)
    config = basic_config(sbc_port, pbx_port=pbx_port)
    config["routes"] = [{"prefix": "+33899", "reject": 503}, {"prefix": "", "via": ["operator"]}]
    config["storage"] = {"cdr": f"sqlite:///{tmp_path / 'cdr.sqlite'}"}
    sbc = sbc_factory(config)
    sipp_factory("uac_503", local_ip=PBX, local_port=pbx_port, remote=("127.0.0.1", sbc_port),
                 service="+33899123456", caller=CALLED, calls=1).start().check()  # fmt: skip
    (record,) = json.loads(sbc.cli("cdr", "--json").stdout)
    assert (record["status"], record["called"], record["caller"]) == (503, "+33899123456", CALLED)
    assert (record["source_peer"], record["dest_peer"]) == ("pbx", None)
    assert record["reason"].startswith("refused: ") and record["attempts"] == 0
