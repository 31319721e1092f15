"""The SBC as registrar of a PBX with ``hosts: registered``, on the sans-I/O bench."""

from __future__ import annotations

from peers import OPERATOR, Bench, invite, requests, responses

from pkiss.sip.digest import authorization, parse_challenge
from pkiss.sip.transaction import Addr

REMOTE = Addr("udp", "192.0.2.50", 40000)  # the PBX's NATed source

CONFIG = """
sbc: {listen: [udp:127.0.0.1:5060]}
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060]}
  remote-pbx:
    role: pbx
    hosts: registered
    match: {username: remote1}
    password: secret
    dids: ["+33140000500"]
"""


def register(n: int, auth: str | None = None, expires: str = "Expires: 120\r\n") -> bytes:
    return (
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK-reg{n}\r\n"
        "From: <sip:remote1@127.0.0.1>;tag=r1\r\nTo: <sip:remote1@127.0.0.1>\r\n"
        f"Call-ID: reg@10.1.1.1\r\nCSeq: {n} REGISTER\r\n"
        "Contact: <sip:remote1@10.1.1.1:5060>\r\nMax-Forwards: 70\r\n"
        + expires
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()


def registered(bench: Bench, expires: str = "Expires: 120\r\n") -> list:
    sends = bench.feed(register(1), REMOTE)
    (challenge,) = responses(sends, REMOTE)
    assert challenge.status == 401
    ch = parse_challenge(challenge.header("www-authenticate") or "")
    creds = authorization(ch, "remote1", "secret", "REGISTER", "sip:127.0.0.1", "c1")
    return responses(bench.feed(register(2, creds, expires), REMOTE), REMOTE)


def test_register_then_inbound_call_goes_to_the_registered_source() -> None:
    bench = Bench(CONFIG)
    (ok,) = registered(bench)
    assert ok.status == 200
    assert ok.header("expires") == "120"
    assert "sip:remote1@10.1.1.1:5060" in (ok.header("contact") or "")
    sends = bench.feed(invite(1, called="+33140000500"), OPERATOR)
    (b_invite,) = requests(sends, REMOTE, "INVITE")
    # sent to the REGISTER's source, the Request-URI the Contact it registered (§10.3)
    assert str(b_invite.uri) == "sip:remote1@10.1.1.1:5060"
    assert b_invite.header("to") == "<sip:+33140000500@192.0.2.50>"


def test_wrong_password_is_challenged_again() -> None:
    bench = Bench(CONFIG)
    (challenge,) = responses(bench.feed(register(1), REMOTE), REMOTE)
    ch = parse_challenge(challenge.header("www-authenticate") or "")
    creds = authorization(ch, "remote1", "wrong", "REGISTER", "sip:127.0.0.1", "c1")
    (again,) = responses(bench.feed(register(2, creds), REMOTE), REMOTE)
    assert again.status == 401
    sends = bench.feed(invite(1, called="+33140000500"), OPERATOR)
    assert [r.status for r in responses(sends, OPERATOR) if r.status >= 200] == [480]


def test_expires_zero_unregisters_and_expiry_ends_the_binding() -> None:
    bench = Bench(CONFIG)
    (ok,) = registered(bench, "Expires: 0\r\n")
    assert ok.status == 200
    final = [r for r in responses(bench.feed(invite(1, called="+33140000500"), OPERATOR),
                                  OPERATOR) if r.status >= 200]  # fmt: skip
    assert [r.status for r in final] == [480]
    bench2 = Bench(CONFIG)
    (ok2,) = registered(bench2, "Expires: 99999\r\n")
    assert ok2.header("expires") == "3600"
    bench2.now = 3601.0
    final = [r for r in responses(bench2.feed(invite(2, called="+33140000500"), OPERATOR),
                                  OPERATOR) if r.status >= 200]  # fmt: skip
    assert [r.status for r in final] == [480]


def test_register_without_registered_peers_is_405() -> None:
    bench = Bench()
    (refused,) = responses(bench.feed(register(1), REMOTE), REMOTE)
    assert refused.status == 405


def _offered(bench: Bench, n: int, auth: str | None = None) -> tuple[int, list[str]]:
    (answer,) = responses(bench.feed(register(n, auth), REMOTE), REMOTE)
    return answer.status, [
        parse_challenge(v).algorithm for v in answer.header_lines("www-authenticate")
    ]


def test_the_challenge_offers_md5_alone_by_default() -> None:
    # some UAs (baresip 1.0.0) give up on a challenge set holding an algorithm they lack
    assert _offered(Bench(CONFIG), 1) == (401, ["MD5"])


def test_auth_algorithms_choose_what_is_offered_and_what_is_accepted() -> None:
    sha_only = "    password: secret\n    auth: {algorithms: [SHA-256]}\n"
    bench = Bench(CONFIG.replace("    password: secret\n", sha_only))
    status, offered = _offered(bench, 1)
    assert (status, offered) == (401, ["SHA-256"])
    sha = parse_challenge(
        responses(bench.feed(register(2), REMOTE), REMOTE)[0].header("www-authenticate") or ""
    )
    md5 = authorization(sha.__class__(sha.realm, sha.nonce, "MD5"), "remote1", "secret",
                        "REGISTER", "sip:127.0.0.1", "c1")  # fmt: skip
    assert _offered(bench, 3, md5)[0] == 401  # right password, algorithm not allowed
    good = authorization(sha, "remote1", "secret", "REGISTER", "sip:127.0.0.1", "c2")
    assert _offered(bench, 4, good) == (200, [])
