from pkiss.routing.numbers import DidTable, called_number, parse_did
from pkiss.sip.parser import parse_datagram


def test_parse_did_kinds() -> None:
    assert parse_did("+33555000111") == ("exact", "+33555000111", "+33555000111")
    assert parse_did("+3398765*") == ("prefix", "+3398765", "+3398765")
    assert parse_did("+33123456700-+33123456799") == ("range", "+33123456700", "+33123456799")


def test_exact_beats_range_beats_prefix() -> None:
    table = DidTable(
        [
            ("prefix", ["+3312*"]),
            ("range", ["+33123456700-+33123456799"]),
            ("exact", ["+33123456742"]),
        ]
    )
    assert table.owner("+33123456742") == "exact"
    assert table.owner("+33123456743") == "range"
    assert table.owner("+33123456800") == "prefix"
    assert table.owner("+44123") is None


def test_longest_prefix_and_range_length() -> None:
    table = DidTable([("short", ["+33*"]), ("long", ["+331*"]), ("r", ["100-199"])])
    assert table.owner("+3312") == "long"
    assert table.owner("+3322") == "short"
    assert table.owner("150") == "r"
    assert table.owner("1500") is None  # a range holds numbers of its own length only


def _invite(uri: str) -> bytes:
    return (
        f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK1\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_called_number_forms() -> None:
    assert called_number(parse_datagram(_invite("sip:+33123@sbc"))) == "+33123"  # type: ignore[arg-type]
    assert called_number(parse_datagram(_invite("sip:%2B33123;npdi@sbc"))) == "+33123"  # type: ignore[arg-type]
    assert called_number(parse_datagram(_invite("tel:+33-1-23;phone-context=x"))) == "+33123"  # type: ignore[arg-type]
