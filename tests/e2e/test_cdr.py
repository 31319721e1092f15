"""Call detail records, as an operator reads them: ``pkiss cdr``, the SQLite file itself, and a
real PostgreSQL server (also one that is down when the calls end)."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import sqlite3
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from network import received
from sbc import Pkiss, basic_config, free_port, metric
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


def calls(net: Calls, uac: str, uas: str, count: int, called: str = CALLED,
          rate: float | None = None) -> None:  # fmt: skip
    """``count`` calls of one kind from the operator to the PBX, every one as expected."""
    pbx = net.make_sipp(uas, local_ip=PBX, local_port=net.pbx_port, calls=count).start()
    net.make_sipp(uac, local_ip=OPERATOR, local_port=net.op_port,
                  remote=("127.0.0.1", net.sbc_port), service=called, caller=CALLER,
                  calls=count, rate=rate).start().check()  # fmt: skip
    pbx.check()


def rows_when(postgres: Postgres, sql: str, done: Callable[[list[tuple[object, ...]]], bool],
              timeout: float = 15.0) -> list[tuple[object, ...]]:  # fmt: skip
    """``sql``'s rows once ``done`` says they are complete (or at the deadline)."""
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        try:
            rows = postgres.query(sql)
        except Exception:  # not up yet, or no table yet
            rows = []
        if done(rows):
            break
        time.sleep(0.2)
    return rows


def spool_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_node_killed_while_postgresql_is_down_loses_no_record_of_calls_that_had_ended(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], postgres: Postgres,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Calls end while PostgreSQL is stopped; after the batch interval the node is killed
    (SIGKILL: no shutdown of any kind). PostgreSQL and the node start again: the table has
    every record, each once, the earlier ones too."""
    postgres.start()
    spool = tmp_path / "spool" / "cdr.spool"
    net = Calls(sipp_factory, sbc_factory, postgres.url)
    net.sbc.stop()  # the same node, with its spool where the test can see it
    config = net.sbc.config
    config["storage"]["cdr_spool"] = {"path": str(spool)}
    net.sbc = sbc_factory(config)
    calls(net, "uac_basic", "uas_basic", 2)
    count = "SELECT count(*) FROM cdr"
    assert rows_when(postgres, count, lambda r: r == [(2,)]) == [(2,)]

    postgres.stop()
    ended = 6
    calls(net, "uac_basic", "uas_basic", 4)
    calls(net, "uac_busy", "uas_busy", 2)
    deadline = time.monotonic() + 10  # the next batch writes them to the spool
    while spool_lines(spool) < ended and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spool_lines(spool) == ended
    assert net.sbc.alive()
    net.sbc.signal(signal.SIGKILL)
    assert net.sbc.proc is not None and net.sbc.proc.wait(5) == -signal.SIGKILL

    postgres.start()
    node = sbc_factory(config)  # its spool is replayed as it starts
    rows = rows_when(postgres, count, lambda r: r == [(2 + ended,)])
    time.sleep(1.5)  # a batch later: nothing is written twice
    rows = postgres.query("SELECT call_id, count(*), min(status), max(status) FROM cdr "
                          "GROUP BY call_id ORDER BY min(id)")  # fmt: skip
    assert len(rows) == 2 + ended, rows
    assert all(n == 1 for _, n, _, _ in rows), rows
    statuses = [low for _, _, low, high in rows if low == high]
    assert statuses == [200] * 6 + [486] * 2
    assert spool_lines(spool) == 0
    assert metric(node, "pkiss_cdr_spool_bytes") == 0
    assert "records written to the database" in node.log()


def test_a_full_spool_says_so_and_counts_what_it_refused(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], postgres: Postgres,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A spool of 4 KiB (about 15 records) while PostgreSQL is down: the records beyond are
    lost, and the log, ``/metrics`` and the table all tell how many."""
    net = Calls(sipp_factory, sbc_factory, postgres.url)  # PostgreSQL not started
    net.sbc.stop()
    config = net.sbc.config
    config["storage"]["cdr_spool"] = {"path": str(tmp_path / "cdr.spool"), "max_bytes": 4096}
    net.sbc = node = sbc_factory(config)
    placed = 30
    calls(net, "uac_busy", "uas_busy", placed, rate=30)
    deadline = time.monotonic() + 10
    while metric(node, "pkiss_cdr_spool_refused_total") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # the last batch
    refused = metric(node, "pkiss_cdr_spool_refused_total")
    assert refused > 0
    assert metric(node, "pkiss_cdr_dropped_total") == refused  # the database failed too
    assert 0 < metric(node, "pkiss_cdr_spool_bytes") <= 4096
    assert metric(node, "pkiss_cdr_spool_max_bytes") == 4096
    assert "storage.cdr_spool.max_bytes 4096" in node.log()
    assert "CDRs lost" in node.log()

    postgres.start()
    kept = placed - int(refused)
    rows = rows_when(postgres, "SELECT count(*) FROM cdr", lambda r: r == [(kept,)])
    assert rows == [(kept,)]
    deadline = time.monotonic() + 5
    while metric(node, "pkiss_cdr_spool_bytes") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(node, "pkiss_cdr_spool_bytes") == 0


def test_records_as_csv_filtered_by_peer_number_and_status_from_the_api_and_pkiss_cdr(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    net = Calls(sipp_factory, sbc_factory, f"sqlite:///{tmp_path / 'cdr.sqlite'}")
    other = "+33155500000"
    calls(net, "uac_basic", "uas_basic", 1)
    calls(net, "uac_busy", "uas_busy", 1)
    calls(net, "uac_basic", "uas_basic", 1, called=other)

    def csv_rows(*args: str) -> list[dict[str, str]]:
        done = net.sbc.cli("cdr", "--csv", *args)
        assert done.returncode == 0, done.stderr
        return list(csv.DictReader(io.StringIO(done.stdout, newline="")))

    every = csv_rows()
    assert [(r["called"], r["status"]) for r in every] == [
        (CALLED, "200"), (CALLED, "486"), (other, "200"),
    ]  # fmt: skip
    assert every[0]["caller"] == CALLER and every[0]["source_peer"] == "operator"
    assert every[1]["answered_at"] == "" and every[0]["answered_at"] != ""
    assert [r["called"] for r in csv_rows("--status", "486")] == [CALLED]
    assert [r["called"] for r in csv_rows("--number", "5550")] == [other]
    assert [r["called"] for r in csv_rows("--number", CALLER[3:8])] == [CALLED, CALLED, other]
    assert len(csv_rows("--peer", "pbx")) == 3 and len(csv_rows("--peer", "operator")) == 3
    assert csv_rows("--peer", "elsewhere") == []
    assert [r["status"] for r in csv_rows("--limit", "1", "--offset", "1")] == ["486"]
    assert [r["status"] for r in csv_rows("--limit", "2")] == ["486", "200"]  # the newest two
    header = net.sbc.cli("cdr", "--csv", "--peer", "elsewhere").stdout
    assert header.startswith("id,call_id,caller,called,source_peer,dest_peer,status,")

    url = f"http://{net.sbc.config['admin']['listen']}/api/cdr?format=csv&status=200&peer=pbx"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/csv")
        body = response.read().decode()
    assert [r["called"] for r in csv.DictReader(io.StringIO(body, newline=""))] == [CALLED, other]
    shown = net.sbc.cli_json("cdr", "--number", "5550", "--status", "200")
    assert [(r["called"], r["dest_peer"]) for r in shown] == [(other, "pbx")]
    table = net.sbc.cli("cdr", "--status", "486")
    assert "1 record(s)" in table.stdout
    bad = net.sbc.cli("cdr", "--offset", "-1")
    assert bad.returncode == 1 and "offset" in bad.stderr


def test_a_postgresql_table_of_an_earlier_version_keeps_its_rows_and_takes_new_ones_once(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], postgres: Postgres
) -> None:
    """The ``cdr`` table as versions without ``uid`` made it, with one record: the node adds
    the column and its unique index, and a new call's record is written once."""
    import psycopg

    postgres.start()
    with psycopg.connect(postgres.url) as conn:
        conn.execute(
            "CREATE TABLE cdr (id SERIAL PRIMARY KEY, call_id VARCHAR(255) NOT NULL, "
            "caller VARCHAR(64), called VARCHAR(64) NOT NULL, source_peer VARCHAR(64) NOT NULL,"
            " dest_peer VARCHAR(64), status INTEGER NOT NULL, reason VARCHAR(128) NOT NULL, "
            "started_at TIMESTAMP WITH TIME ZONE NOT NULL, answered_at TIMESTAMP WITH TIME "
            "ZONE, ended_at TIMESTAMP WITH TIME ZONE NOT NULL, duration FLOAT NOT NULL, "
            "attempts INTEGER NOT NULL)"
        )
        conn.execute(
            "INSERT INTO cdr (call_id, called, source_peer, status, reason, started_at, "
            "ended_at, duration, attempts) VALUES ('old@op', '+331', 'operator', 200, 'BYE', "
            "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, 1)"
        )
    net = Calls(sipp_factory, sbc_factory, postgres.url)
    calls(net, "uac_busy", "uas_busy", 2)
    sql = "SELECT call_id, uid IS NULL, status FROM cdr ORDER BY id"
    rows = rows_when(postgres, sql, lambda r: len(r) >= 3)
    time.sleep(1.5)  # a batch later: nothing twice
    assert postgres.query(sql) == rows
    assert [(r[1], r[2]) for r in rows] == [(True, 200), (False, 486), (False, 486)]
    assert rows[0][0] == "old@op"
    (index,) = postgres.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_cdr_uid'")
    assert "UNIQUE" in str(index[0])
    assert len(net.sbc.cli_json("cdr")) == 3
    # and the columns added since, empty in the old row
    billing = "SELECT hangup_by, sip_reason, attempts_detail IS NULL FROM cdr ORDER BY id"
    assert postgres.query(billing) == [
        (None, None, True), *[("callee", 'SIP;cause=486;text="Busy Here"', False)] * 2,
    ]  # fmt: skip


RECORDING = Path("/usr/share/sip-tester/g711a.pcap")
PBX2 = "127.0.0.4"


def sent(peer: Sipp, method: str) -> list[str]:
    """The ``method`` requests a SIPp sent (first transmissions, one per Call-ID and CSeq)."""
    seen: dict[tuple[str, str], str] = {}
    for chunk in re.split(r"-{20,}[^\n]*\n", peer.messages()):
        if "message sent" not in chunk:
            continue
        text = chunk.split(":\n", 1)[-1].lstrip()
        if text.startswith(f"{method} "):
            cseq = re.search(r"^CSeq:\s*(.+?)\s*$", text, re.M | re.I)
            seen.setdefault((call_id_in(text), cseq.group(1) if cseq else ""), text)
    return list(seen.values())


def call_id_in(text: str) -> str:
    found = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
    assert found is not None, text
    return found.group(1)


def udp_payloads(path: Path) -> list[int]:
    """The UDP payload size of each packet of a classic pcap file of Ethernet frames (24-byte
    header, then 16-byte record headers; Ethernet, IPv4 and UDP headers: 42 bytes)."""
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    assert struct.unpack(endian + "I", data[20:24])[0] == 1  # Ethernet
    sizes, pos = [], 24
    while pos + 16 <= len(data):
        length = struct.unpack(endian + "I", data[pos + 8 : pos + 12])[0]
        pos += 16 + length
        sizes.append(length - 42)
    return sizes


@pytest.mark.skipif(not RECORDING.is_file(), reason=f"{RECORDING} not found (sip-tester)")
def test_records_worth_billing_from_a_failover_call_with_media_and_a_call_the_callee_ends(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss], tmp_path: Path
) -> None:
    """The PBX's first host answers 503, its second answers; the operator sends numbers
    without their '+', which it gets back, and the PBX wants them national. Each record, read
    as CSV from the API and from ``pkiss cdr --csv``, says what each SIPp saw on the wire:
    both Call-IDs, both attempts, the numbers as received and as sent, who hung up, setup
    times, and the RTP the relay carried each way."""
    sbc_port, op_port = free_port(), free_port(OPERATOR)
    pbx_port, pbx2_port = free_port(PBX), free_port(PBX2)
    config = basic_config(sbc_port, carrier_port=op_port, pbx_port=pbx_port)
    config["storage"] = {"cdr": f"sqlite:///{tmp_path / 'cdr.sqlite'}"}
    config["media"] = {"mode": "relay", "ports": "43000-43999"}
    config["peers"]["operator"]["rewrite"] = {
        "inbound": [{"match": r"^33(\d+)$", "replace": r"+33\1"}],
    }
    config["peers"]["pbx"].update(
        hosts=[
            {"address": f"{PBX}:{pbx_port}", "priority": 1},
            {"address": f"{PBX2}:{pbx2_port}", "priority": 2},
        ],
        match={"source": [PBX, PBX2]},
        rewrite={"outbound": [{"match": r"^\+33(\d+)$", "replace": r"0\1"}]},
    )
    sbc = sbc_factory(config)
    received_called, received_caller = CALLED[1:], CALLER[1:]  # 33123456789, 33987654321
    out_of_service = sipp_factory("uas_503", local_ip=PBX, local_port=pbx_port, calls=2,
                                  timeout=40).start()  # fmt: skip

    # 1. the caller plays the recording (8 s) to the second host, which echoes it; it hangs up
    echo = sipp_factory("uas_basic", local_ip=PBX2, local_port=pbx2_port, calls=1,
                        media_port=free_port(PBX2), extra_args=["-rtp_echo"]).start()  # fmt: skip
    talker = sipp_factory("uac_media", local_ip=OPERATOR, local_port=op_port,
                          remote=("127.0.0.1", sbc_port), service=received_called,
                          caller=received_caller, media_port=free_port(OPERATOR), calls=1,
                          timeout=30).start()  # fmt: skip
    talker.check(timeout=30)
    echo.check(timeout=5)
    # 2. the second host hangs up
    hanger = sipp_factory("uas_bye", local_ip=PBX2, local_port=pbx2_port, calls=1).start()
    sipp_factory("uac_recv_bye", local_ip=OPERATOR, local_port=op_port,
                 remote=("127.0.0.1", sbc_port), service=received_called, caller=received_caller,
                 calls=1).start().check()  # fmt: skip
    hanger.check(timeout=5)
    out_of_service.check(timeout=5)

    url = f"http://{sbc.config['admin']['listen']}/api/cdr?format=csv"
    with urllib.request.urlopen(url, timeout=5) as response:
        from_api = list(csv.DictReader(io.StringIO(response.read().decode(), newline="")))
    shown = sbc.cli("cdr", "--csv")
    assert shown.returncode == 0, shown.stderr
    from_cli = list(csv.DictReader(io.StringIO(shown.stdout, newline="")))
    assert from_api == from_cli and len(from_api) == 2
    talked, hung_up = from_api

    refused_ids = [call_id_in(m) for m in received(out_of_service, "INVITE")]
    for record, caller_side, callee_side, refused_id in (
        (talked, talker, echo, refused_ids[0]),
        (hung_up, None, hanger, refused_ids[1]),
    ):
        (b_invite,) = received(callee_side, "INVITE")
        assert record["b_call_id"] == call_id_in(b_invite) != refused_id
        if caller_side is not None:
            (a_invite,) = sent(caller_side, "INVITE")
            assert record["call_id"] == call_id_in(a_invite)
        # the numbers as the operator sent them, as routed, and as the PBX got them
        assert (record["caller"], record["called_received"]) == (received_caller,
                                                                 received_called)  # fmt: skip
        assert record["called"] == CALLED
        assert (record["caller_sent"], record["called_sent"]) == ("0987654321", "0123456789")
        assert b_invite.startswith("INVITE sip:0123456789@")
        assert re.search(r"^From:[^\n]*sip:0987654321@", b_invite, re.M)
        attempts = json.loads(record["attempts_detail"])
        assert record["attempts"] == "2"
        assert [(a["peer"], a["host"], a["status"]) for a in attempts] == [
            ("pbx", f"udp:{PBX}:{pbx_port}", 503), ("pbx", f"udp:{PBX2}:{pbx2_port}", 200),
        ]  # fmt: skip
        assert attempts[0]["at_ms"] <= attempts[0]["end_ms"] <= attempts[1]["at_ms"]
        assert (record["source_host"], record["dest_host"]) == (
            f"udp:{OPERATOR}:{op_port}", f"udp:{PBX2}:{pbx2_port}",
        )  # fmt: skip
        assert (record["tenant"], record["status"], record["sip_reason"]) == ("pbx", "200", "")
        ringing, answered = int(record["setup_18x_ms"]), int(record["setup_200_ms"])
        assert 0 <= ringing <= answered
    assert (talked["hangup_by"], talked["reason"]) == ("caller", "BYE from A-leg")
    assert (hung_up["hangup_by"], hung_up["reason"]) == ("callee", "BYE from B-leg")

    # the recording's RTP went to the PBX and came back (the echo), a few lost at most
    payloads = udp_payloads(RECORDING)
    (size,) = set(payloads)  # 30 ms of G.711 and the RTP header: 252 bytes
    for direction in ("caller", "callee"):
        packets, octets = int(talked[f"{direction}_packets"]), int(talked[f"{direction}_bytes"])
        assert len(payloads) * 0.95 <= packets <= len(payloads), (direction, packets)
        assert octets == packets * size
    assert int(hung_up["caller_packets"]) == int(hung_up["callee_packets"]) == 0  # no RTP

    # the numbers as sent find the calls too
    by_sent = sbc.cli("cdr", "--csv", "--number", "0987654321")
    assert len(list(csv.DictReader(io.StringIO(by_sent.stdout, newline="")))) == 2
