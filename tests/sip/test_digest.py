"""Digest authentication maths against published vectors (RFC 2617 §3.5, RFC 7616 §3.9.1)."""

from __future__ import annotations

import pytest

from pkiss.sip.digest import (
    authorization,
    challenge,
    parse_challenge,
    parse_credentials,
    response,
    verify,
)
from pkiss.sip.errors import ParseError


def test_rfc2617_example_md5() -> None:
    # RFC 2617 §3.5 (HTTP, but the same arithmetic)
    assert (
        response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                 "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001", "0a4f113b")
        == "6629fae49393a05397450978507c4ef1"
    )  # fmt: skip


def test_rfc7616_example_sha256_and_md5() -> None:
    # RFC 7616 §3.9.1
    args = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "auth", "00000001",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")  # fmt: skip
    assert response("MD5", *args) == "8ca523f5e9506fed4657c9700eebdbec"
    assert (
        response("SHA-256", *args)
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_round_trip_challenge_authorization_verify() -> None:
    header = challenge("sbc.example", "abc123", "SHA-256", opaque="o1")
    ch = parse_challenge(header)
    assert (ch.realm, ch.nonce, ch.algorithm, ch.qop, ch.opaque) == (
        "sbc.example", "abc123", "SHA-256", ("auth",), "o1")  # fmt: skip
    value = authorization(ch, "acme", "s3cret", "INVITE", "sip:+33140000001@sbc", "cn1")
    creds = parse_credentials(value)
    assert creds.username == "acme" and creds.qop == "auth" and creds.nc == "00000001"
    assert verify(creds, "s3cret", "INVITE")
    assert not verify(creds, "wrong", "INVITE")
    assert not verify(creds, "s3cret", "BYE")


def test_challenge_without_qop_uses_rfc2069_form() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n"')
    creds = parse_credentials(authorization(ch, "u", "p", "REGISTER", "sip:r", "c"))
    assert creds.qop is None and verify(creds, "p", "REGISTER")


@pytest.mark.parametrize(
    "bad",
    ['Basic realm="r"', 'Digest realm="r"', 'Digest realm="r", nonce', 'Digest nonce="unclosed'],
)
def test_malformed_headers_raise_parse_error(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_challenge(bad)


def test_unknown_algorithm_never_verifies() -> None:
    creds = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", algorithm=SHA-1'
    )
    assert not verify(creds, "p", "INVITE")


def test_nonces_are_ours_and_expire() -> None:
    from pkiss.sip.digest import Nonces

    nonces = Nonces(b"k" * 32, lifetime=300)
    nonce = nonces.issue(1000.0)
    assert nonces.check(nonce, 1100.0) == "valid"
    assert nonces.check(nonce, 1301.0) == "stale"
    assert nonces.check(nonce.replace(".", ".0"), 1100.0) == "invalid"
    assert nonces.check("garbage", 1100.0) == "invalid"
    assert Nonces(b"x" * 32).check(nonce, 1100.0) == "invalid", "another secret: not ours"


def test_credentials_with_non_ascii_characters_are_refused_not_raised() -> None:
    # hmac.compare_digest raises TypeError on str holding non-ASCII characters: a REGISTER
    # whose response or nonce held one escaped the registrar (found by fuzzing the receive path)
    from pkiss.sip.digest import Nonces

    ch = parse_challenge(challenge("example.com", "abc"))
    creds = parse_credentials(authorization(ch, "u", "pw", "REGISTER", "sip:example.com", "c1"))
    assert verify(creds, "pw", "REGISTER")
    bad = parse_credentials(
        authorization(ch, "u", "pw", "REGISTER", "sip:example.com", "c1").replace(
            'response="', 'response="\xe9'
        )
    )
    assert not verify(bad, "pw", "REGISTER")
    nonces = Nonces(b"k" * 32)
    nonce = nonces.issue(10.0)
    assert nonces.check(nonce, 11.0) == "valid"
    assert nonces.check(nonce[:-1] + "\xe9", 11.0) == "invalid"
