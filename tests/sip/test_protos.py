"""The 4,527 PROTOS c07-sip r2 cases (OUSPG) through ``parse_datagram``.

Every substituted INVITE (and its teardown request) must come back as a message or as a
``ParseError``: anything else escaping the parser would be a crash of the SBC on that datagram.
Case 0 is the valid INVITE the original tool uses as its liveness check.
"""

from __future__ import annotations

import time

import pytest

from pkiss.sip import headers, uri
from pkiss.sip.errors import ParseError
from pkiss.sip.message import Request
from pkiss.sip.parser import parse_datagram
from protos_cases import ARCHIVE, CASE_COUNT, ProtosCase, corpus_dir, load_protos

_ARCHIVE = corpus_dir() / ARCHIVE
pytestmark = pytest.mark.skipif(
    not _ARCHIVE.is_file(), reason=f"PROTOS archive not found at {_ARCHIVE} (set PKISS_CORPUS)"
)


@pytest.fixture(scope="module")
def cases() -> list[ProtosCase]:
    return load_protos()


def test_every_case_parses_or_raises_parse_error(cases: list[ProtosCase]) -> None:
    assert [c.number for c in cases] == list(range(CASE_COUNT))
    failures: list[str] = []
    accepted = 0
    started = time.perf_counter()
    for case in cases:
        for what, data in (("INVITE", case.invite), ("teardown", case.teardown)):
            try:
                parse_datagram(data)
            except ParseError:
                continue
            except Exception as exc:  # the bug this test exists to find
                failures.append(f"case {case.number:04d} {what}: {type(exc).__name__}: {exc}")
                continue
            if what == "INVITE":
                accepted += 1
    elapsed = time.perf_counter() - started
    assert not failures, f"{len(failures)} failures, first 20:\n" + "\n".join(failures[:20])
    # Most mutations leave a message we can still parse (a long display name, an odd Expires,
    # an SDP body we do not read); the rest are rejected.
    assert 0 < accepted < CASE_COUNT
    assert elapsed < 5.0, f"parsing took {elapsed:.1f} s"


def test_case_0_is_a_valid_invite(cases: list[ProtosCase]) -> None:
    case = cases[0]
    msg = parse_datagram(case.invite)
    assert isinstance(msg, Request) and msg.method == "INVITE"
    msg.validate()
    assert bytes(msg) == case.invite
    assert msg.uri_text == "sip:user@127.0.0.1"
    assert msg.to is not None and str(msg.to.uri) == "sip:user@127.0.0.1"
    assert msg.from_ is not None and msg.from_.tag == "0"
    assert msg.top_via is not None and msg.top_via.sent_by() == ("127.0.0.2", 5060)
    assert msg.call_id == "protos0000000@127.0.0.2"
    assert len(msg.body) == int(msg.header("Content-Length") or "-1") > 0
    teardown = parse_datagram(case.teardown)
    assert isinstance(teardown, Request) and teardown.method == "CANCEL"
    assert teardown.cseq is not None and teardown.cseq.method == "CANCEL"
    assert teardown.call_id == msg.call_id


def test_cases_are_unique_calls(cases: list[ProtosCase]) -> None:
    first = parse_datagram(cases[0].invite)
    again = parse_datagram(cases[4526].invite)
    assert first.call_id != again.call_id
    assert first.top_via is not None and again.top_via is not None
    assert first.top_via.branch != again.top_via.branch


def test_caches_stay_small_after_every_case(cases: list[ProtosCase]) -> None:
    # The parser's only state is its caches (header names, URIs); hostile input must not grow
    # them without bound, and the valid case still parses afterwards (the tool's -validcase).
    for case in cases:
        try:
            parse_datagram(case.invite)
        except ParseError:
            pass
    assert len(headers._name_cache) <= 2048
    assert all(len(name) <= 64 for name in headers._name_cache)
    info = uri._parse_uri_cached.cache_info()
    assert info.currsize <= 4096
    assert isinstance(parse_datagram(cases[0].invite), Request)
