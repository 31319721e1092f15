"""The security filters with explicit time: bans, flood, authentication failures, scanners."""

from __future__ import annotations

import ipaddress

import pytest

from pkiss.config import parse_config
from pkiss.security import BanList, ScannerSignatures, Security, WindowCounter
from pkiss.sip.errors import ParseError
from pkiss.sip.message import Request
from pkiss.sip.parser import parse_datagram
from protos_cases import corpus_dir

CAPTURED = corpus_dir() / "sipvicious" / "captured"


def security(extra: str = "") -> Security:
    cfg = parse_config(
        "sbc: {listen: [udp:127.0.0.1:5060]}\n"
        "peers: {op: {role: carrier, hosts: [127.0.0.2:5060]}}\n"
        "security:\n"
        "  flood: {window: 2, max: 3, ban: 600}\n"
        "  auth_failures: {max: 2, window: 60, ban: 3600}\n"
        "  never_ban: [10.0.0.0/8]\n" + extra
    )
    return Security(cfg.security)


def test_a_ban_ends_at_its_deadline_and_never_ban_is_honoured() -> None:
    bans = BanList([ipaddress.ip_network("10.0.0.0/8")])
    assert bans.ban("192.0.2.1", 60, "test", now=100.0) is not None
    assert bans.banned("192.0.2.1", 159.9)
    assert not bans.banned("192.0.2.1", 160.0)
    assert bans.ban("10.1.2.3", 60, "test", now=0.0) is None
    assert not bans.banned("10.1.2.3", 1.0)


def test_a_longer_ban_in_place_is_kept_and_unban_lifts_it() -> None:
    bans = BanList()
    bans.ban("192.0.2.1", 3600, "auth", now=0.0)
    bans.ban("192.0.2.1", 60, "flood", now=10.0)
    (ban,) = bans.active(20.0)
    assert (ban.until, ban.reason) == (3600.0, "auth")
    assert bans.unban("192.0.2.1")
    assert not bans.banned("192.0.2.1", 20.0)
    assert not bans.unban("192.0.2.1")


def test_expired_bans_are_swept_so_the_table_stays_bounded() -> None:
    bans = BanList()
    for i in range(5000):
        bans.ban(f"198.51.{i // 256}.{i % 256}", 1.0, "flood", now=float(i))
    assert len(bans._bans) < 1100
    assert [b.host for b in bans.active(4999.5)] == ["198.51.19.135"]


def test_window_counts_restart_with_each_window() -> None:
    counter = WindowCounter(2.0)
    assert [counter.hit("a", t) for t in (0.0, 0.5, 1.9)] == [1, 2, 3]
    assert counter.hit("b", 1.9) == 1
    assert counter.hit("a", 2.0) == 1


def test_a_stranger_over_the_flood_limit_is_banned_then_dropped() -> None:
    sec = security()
    assert not any(sec.stranger_packet("192.0.2.7", 0.1 * i) for i in range(3))
    assert sec.stranger_packet("192.0.2.7", 0.4)  # the 4th in 2 s
    assert sec.banned("192.0.2.7", 599.0)
    assert not sec.banned("192.0.2.7", 601.0)
    # another window, another count
    assert not sec.stranger_packet("192.0.2.8", 0.0)
    assert not any(sec.stranger_packet("192.0.2.8", 2.0 + i) for i in range(2))


def test_flood_from_a_never_ban_network_is_not_banned() -> None:
    sec = security()
    assert not any(sec.stranger_packet("10.9.9.9", 0.0) for _ in range(10))
    assert not sec.banned("10.9.9.9", 0.0)


def test_authentication_failures_ban_at_the_limit_and_reload_keeps_bans() -> None:
    sec = security()
    assert not sec.auth_failed("192.0.2.9", 0.0)
    assert sec.auth_failed("192.0.2.9", 30.0)
    assert sec.banned("192.0.2.9", 3629.0)
    sec.reconfigure(parse_config("sbc: {listen: [udp:127.0.0.1:5060]}\npeers: {}\n").security)
    assert sec.banned("192.0.2.9", 3629.0)
    assert sec.config.auth_failures.max == 5


def test_failures_spread_over_two_windows_do_not_ban() -> None:
    sec = security()
    assert not sec.auth_failed("192.0.2.9", 0.0)
    assert not sec.auth_failed("192.0.2.9", 61.0)


def request(text: str) -> Request:
    message = parse_datagram(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return message


def options(user_agent: str = "", from_: str = "<sip:alice@192.0.2.1>", branch: str = "z9hG4bKa1"):
    ua = f"User-Agent: {user_agent}\n" if user_agent else ""
    return request(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\n"
        f"From: {from_};tag=1\nTo: <sip:100@127.0.0.1>\nCall-ID: x\nCSeq: 1 OPTIONS\n"
        f"{ua}Content-Length: 0\n\n"
    )


def test_a_peer_like_request_is_not_a_scanner() -> None:
    sig = ScannerSignatures(["friendly-scanner", "sipcli"])
    assert sig.match(options("Asterisk PBX 20.1")) is None
    assert sig.match(options("Yealink SIP-T46S")) is None


@pytest.mark.parametrize(
    ("kwargs", "clue"),
    [
        ({"user_agent": "SIPCLI/v1.8"}, "User-Agent"),
        ({"from_": '"sipvicious"<sip:100@192.0.2.1>'}, "display name"),
        ({"from_": "<sip:100@1.1.1.1>"}, "1.1.1.1"),
        ({"branch": "z9hG4bK-2931138063"}, "branch"),
    ],
)
def test_each_fingerprint_gives_a_scanner_away(kwargs: dict[str, str], clue: str) -> None:
    reason = ScannerSignatures(["friendly-scanner", "sipcli"]).match(options(**kwargs))
    assert reason is not None and clue in reason


@pytest.mark.skipif(not CAPTURED.is_dir(), reason=f"SIPVicious captures not found at {CAPTURED} "
                    "(set PKISS_CORPUS)")  # fmt: skip
def test_every_captured_sipvicious_request_is_recognised() -> None:
    """svmap (also compact, with no User-Agent), svwar and svcrack, byte-exact as captured."""
    sig = Security(parse_config("sbc: {listen: [udp:127.0.0.1:5060]}\npeers: {}\n").security)
    seen = 0
    for path in sorted(CAPTURED.rglob("*.sip")):
        try:
            message = parse_datagram(path.read_bytes())
        except ParseError:
            continue  # svwar's ACK with "CSeq: 1  ACK" does not parse: it is answered 400
        if not isinstance(message, Request) or message.method == "ACK":
            continue
        seen += 1
        assert sig.scanners.match(message) is not None, path.name
    assert seen >= 10


def test_bans_made_here_are_told_and_bans_from_elsewhere_are_not() -> None:
    told: list[str] = []
    lifted: list[str] = []
    bans = BanList()
    bans.on_ban = lambda ban, now: told.append(ban.host)
    bans.on_unban = lifted.append
    bans.ban("192.0.2.1", 60, "flood", now=0.0)
    bans.ban("192.0.2.2", 60, "flood (another node)", now=0.0, shared=False)
    assert told == ["192.0.2.1"]
    bans.unban("192.0.2.2", shared=False)
    bans.unban("192.0.2.1")
    assert lifted == ["192.0.2.1"]
