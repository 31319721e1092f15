"""RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages) against the parser.

The messages are read byte-exact from the corpus folder (``$PKISS_CORPUS``, by default
``../shared/corpus`` next to the repository; see its SOURCES.md). Each test is parametrised by
file name and takes its verdict from the folder's ``EXPECTATIONS.tsv``:

* ACCEPT, ACCEPT-parse (with or without "then <status>"): ``parse_datagram`` returns the message
  and ``validate()`` passes.
* REJECT, including "liberal accept allowed": ``ParseError``, ``status_hint`` 505 for
  ``badvers.dat`` (RFC 4475 §3.1.2.16), else 400.
* ``baddate.dat`` ("REJECT or ignore Date") is accepted: RFC 4475 §3.1.2.12 says an element
  should not reject it "unless the contents of the Date header field were actually important
  to its processing", and nothing in the SBC reads Date.

What the RFC 4475 text was checked against (§3.2-§3.4, before these became hard asserts): the
prose of §3.2.1 and §3.3.1-§3.3.15 and §3.4.1 as quoted, section by section, in the docstrings of
github.com/0xInfection/SIPTorch ``modules/{transaction,application,backcomp}/*.py``, and the
section titles and "parses / throws 400" expectations of two JsSIP-family RFC 4475 test suites.
It confirms the EXPECTATIONS.tsv lines: badbranch "a parser must not break ... could reject the
request with a 400 (preferably statelessly) ... or fall back to the RFC 2543-style transaction
identifier"; insuf "must not break ... ideally ... 400 Bad Request"; unkscm "a parser must accept
this as a well-formed SIP request ... reject it with a 416"; novelsc "must accept ... 416 ... or
404"; unksm2 "syntactically valid ... a registrar would reject this request with a 400"; bext01
"420 Bad Extension ... Unsupported"; invut "syntactically valid ... 415"; regaut01 "well formed
... 401 ... 405"; multi01 "respond with a 400"; mcl01 (only its last paragraph is quoted there)
"if a request like this arrives over TCP, the framing error is not recoverable, and the
connection should be closed", which with the section title (Multiple Content-Length Values)
supports REJECT; bcast "well formed; parsers must not fail ... proxies should drop such
responses"; zeromf "a proxy should not forward ... 483 ... an endpoint should process the
request"; cparam01 "'unknownparam' must be interpreted as a contact-param and not a url-param";
cparam02 "must include 'unknownparam' as a url-parameter"; regescrt "must include the escaped
Route header in the contact URI"; sdp01 "406 Not Acceptable, with a Warning/399 ... also
appropriate to respond with a 400"; inv2543 "a legal message per RFC 2543 ... should be accepted
by RFC 3261 elements that want to maintain backwards compatibility". No line needed changing.

Statuses RFC 4475 expects for messages that parse: these belong not to the parser but to the
SBC's request sanity check (``pkiss.sip.sanity.check_request``, applied on admission), so the
verdict tests only assert that they parse; ``test_sanity_check_answers`` checks the statuses the
sanity check gives (``SANITY_CHECK_ANSWERS``: insuf, unkscm, novelsc, bext01, multi01). The
others are not its job: a response (bcast) never reaches it, and the rest are requests it lets
through for the transaction layer and the B2BUA:

==============  =======  =====================================================================
file            section  expected answer
==============  =======  =====================================================================
badbranch.dat   3.2.1    400 (preferably stateless), or RFC 2543 transaction matching
insuf.dat       3.3.1    400 Bad Request (no Call-ID, From, To, Max-Forwards)
unkscm.dat      3.3.2    416 Unsupported URI Scheme (never route on To instead)
novelsc.dat     3.3.3    416, or 404 if some URIs of the scheme could be served
unksm2.dat      3.3.4    400 from a registrar (To must hold a SIP/SIPS AOR); a proxy forwards
bext01.dat      3.3.5    420 Bad Extension, Unsupported listing the unknown option tags
invut.dat       3.3.6    415 Unsupported Media Type at an endpoint; a proxy forwards
regaut01.dat    3.3.7    401 from an authenticating registrar, 405 from a non-registrar
multi01.dat     3.3.8    400 Bad Request (several Call-ID, To, From, Max-Forwards, CSeq)
bcast.dat       3.3.10   drop (response whose second Via sent-by is 255.255.255.255)
zeromf.dat      3.3.11   483 Too Many Hops at a proxy; an endpoint processes it
sdp01.dat       3.3.15   406 Not Acceptable with Warning 399, or 400
==============  =======  =====================================================================

RFC 5118 adds one: ``port-ambiguous`` parses (the Request-URI host is the address
``2001:db8::10:5070``, no port) but is "probably not what the sender meant".

Every message is also fed to a ``StreamParser`` whole, one byte at a time and followed by
trailing junk; the stream gives the datagram's verdict except where the stream rules differ
(``_STREAM_EXCEPTIONS``).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

import pytest

from pkiss.sip.errors import ParseError
from pkiss.sip.headers import NameAddr
from pkiss.sip.message import Message, Request, Response
from pkiss.sip.parser import StreamParser, parse_datagram
from pkiss.sip.sanity import check_request
from pkiss.sip.uri import SipURI, unescape

_REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("PKISS_CORPUS") or _REPO_ROOT.parent / "shared" / "corpus")
RFC4475 = CORPUS / "rfc4475"
RFC5118 = CORPUS / "rfc5118"
ERRATA_BADDN = "errata-variants/baddn.final-crlf-added.dat"
_MISSING = f"torture corpus not found at {CORPUS} (set PKISS_CORPUS)"

ACCEPT = "accept"
REJECT = "reject"

# RFC 4475 §3.1.2.12: the Date header field is not important to us, so we ignore it.
_VERDICT_OVERRIDES = {"baddate.dat": ACCEPT}
# Where the RFC names a status other than 400 for a message the parser rejects.
_STATUS = {"badvers.dat": 505}
# The statuses of the module docstring's table, checked against EXPECTATIONS.tsv's "then ...".
SANITY_CHECK_STATUSES = {
    "insuf.dat": "400",
    "unkscm.dat": "416",
    "novelsc.dat": "416/404",
    "bext01.dat": "420",
    "invut.dat": "415",
    "multi01.dat": "400",
    "bcast.dat": "drop",
    "sdp01.dat": "406/400",
}

# What pkiss.sip.sanity.check_request answers, for the rows of that table it is the place for.
SANITY_CHECK_ANSWERS = {
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "bext01.dat": 420,
    "multi01.dat": 400,
}


def _expectations(folder: Path) -> dict[str, str]:
    """file name -> parser_verdict column of the folder's EXPECTATIONS.tsv."""
    with open(folder / "EXPECTATIONS.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {row["file"]: row["parser_verdict"] for row in rows}


def _verdict(name: str, text: str) -> str:
    if name in _VERDICT_OVERRIDES:
        return _VERDICT_OVERRIDES[name]
    if text.startswith("ACCEPT"):
        return ACCEPT
    if text.startswith("REJECT"):
        return REJECT
    raise AssertionError(f"{name}: unknown verdict {text!r}")


def _params(folder: Path, extra: tuple[str, ...] = ()) -> list[object]:
    if not (folder / "EXPECTATIONS.tsv").is_file():
        return [pytest.param("", "", marks=pytest.mark.skip(reason=_MISSING), id="no-corpus")]
    table = _expectations(folder)
    table.pop("test.dat", None)  # in the RFC archive, described by no section: tested apart
    for name in extra:
        table[name] = table[name.rsplit("/", 1)[-1].split(".")[0] + ".dat"]
    return [
        pytest.param(name, _verdict(name, text), id=name) for name, text in sorted(table.items())
    ]


_SUMS: dict[Path, dict[str, str]] = {}


def _read(folder: Path, name: str) -> bytes:
    """The file's bytes, checked against the folder's SHA256SUMS (a CRLF lost in a checkout
    must fail loudly, not turn a torture test into a different one)."""
    if folder not in _SUMS:
        sums = {}
        with open(folder / "SHA256SUMS", "rb") as f:
            for line in f.read().decode("ascii").splitlines():
                digest, _, file = line.partition("  ")
                sums[file] = digest
        _SUMS[folder] = sums
    with open(folder / name, "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == _SUMS[folder].get(name), f"{name}: SHA-256 mismatch"
    return data


def _parse(folder: Path, name: str) -> Message:
    msg = parse_datagram(_read(folder, name))
    msg.validate()
    return msg


def _request(folder: Path, name: str) -> Request:
    msg = _parse(folder, name)
    assert isinstance(msg, Request)
    return msg


# ------------------------------------------------------------------------------ integrity first


@pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)
def test_sha256sums() -> None:
    for folder in (RFC4475, RFC5118):
        listed = []
        with open(folder / "SHA256SUMS", "rb") as f:
            for line in f.read().decode("ascii").splitlines():
                digest, _, name = line.partition("  ")
                with open(folder / name, "rb") as g:
                    assert hashlib.sha256(g.read()).hexdigest() == digest, f"{folder.name}/{name}"
                listed.append(name)
        # every message file of the folder is covered by a checksum
        present = {
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.name not in ("SHA256SUMS", "EXPECTATIONS.tsv")
        }
        assert present == set(listed)
    assert len(listed) == 12  # RFC 5118
    assert len(_expectations(RFC4475)) == 50 and len(_expectations(RFC5118)) == 12


# ------------------------------------------------------------------------------------ verdicts


def _check_verdict(folder: Path, name: str, verdict: str) -> None:
    data = _read(folder, name)
    if verdict == ACCEPT:
        msg = parse_datagram(data)
        msg.validate()
        assert isinstance(msg, (Request, Response))
        if msg.raw == data:  # no octets beyond Content-Length: serialises to the same bytes
            assert bytes(msg) == data
        else:
            assert data.startswith(bytes(msg))
    else:
        with pytest.raises(ParseError) as info:
            parse_datagram(data)
        assert info.value.status_hint == _STATUS.get(name.rsplit("/", 1)[-1], 400)
    _check_stream(name, data, verdict)


@pytest.mark.parametrize(("name", "verdict"), _params(RFC4475, (ERRATA_BADDN,)))
def test_rfc4475(name: str, verdict: str) -> None:
    _check_verdict(RFC4475, name, verdict)


@pytest.mark.parametrize(("name", "verdict"), _params(RFC5118))
def test_rfc5118(name: str, verdict: str) -> None:
    _check_verdict(RFC5118, name, verdict)


@pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)
def test_undocumented_test_dat_is_rejected() -> None:
    # Not in the RFC 4475 counts: no section describes it. Its request line lacks the version
    # and a header line lacks ':'.
    with pytest.raises(ParseError):
        parse_datagram(_read(RFC4475, "test.dat"))


@pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)
def test_counts() -> None:
    """The tally reported for each corpus (test.dat excluded)."""
    for folder, extra, accepted, rejected in (
        (RFC4475, (ERRATA_BADDN,), 30, 20),
        (RFC5118, (), 10, 2),
    ):
        verdicts = [p.values[1] for p in _params(folder, extra)]  # type: ignore[attr-defined]
        assert (verdicts.count(ACCEPT), verdicts.count(REJECT)) == (accepted, rejected)


@pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)
def test_sanity_check_statuses_match_the_expectations() -> None:
    then = {}
    for name, text in _expectations(RFC4475).items():
        m = re.search(r"then (\S+)", text)
        if m:
            then[name] = m.group(1)
    assert then == SANITY_CHECK_STATUSES


@pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)
@pytest.mark.parametrize(("name", "status"), sorted(SANITY_CHECK_ANSWERS.items()))
def test_sanity_check_answers(name: str, status: int) -> None:
    assert str(status) in SANITY_CHECK_STATUSES[name].split("/")  # one the RFC allows
    verdict = check_request(_request(RFC4475, name))
    assert verdict is not None and verdict[0] == status
    if name == "bext01.dat":  # 420 lists the unknown option tags (RFC 3261 section 8.2.2.3)
        assert verdict[2] == [("Unsupported", "nothingsupportsthis, nothingsupportsthiseither")]


# --------------------------------------------------------------------------------- the stream

# Where a byte stream rightly gives another verdict than a datagram (RFC 3261 §18.3: on a
# stream Content-Length is mandatory and frames the message; octets after it are the next one).
_STREAM_EXCEPTIONS = {
    # no Content-Length: legal over UDP (RFC 2543 syntax), a framing error on a stream
    "inv2543.dat": "no-content-length",
    # Content-Length: 0, then an INVITE: on a stream that INVITE is simply the next message
    "dblreq.dat": "next-message",
    # Content-Length 9999 > the octets present: RFC 4475 §3.1.2.2 says a stream waits for more
    "clerr.dat": "waits",
    # the RFC archive copy has no empty line ending the head: a stream waits for it
    "baddn.dat": "waits",
    # this copy's Content-Length is shorter than the SDP (SOURCES.md §2): the rest of the body
    # is the start of a next message that never completes
    "ipv6-in-sdp": "short-content-length",
    "mult-ip-in-sdp": "short-content-length",
    "ipv4-mapped-ipv6": "short-content-length",
}
_JUNK = b"\x00\xffjunk that is not a SIP message"


def _stream(chunks: list[bytes]) -> tuple[list[Message | ParseError], ParseError | None]:
    parser = StreamParser()
    items: list[Message | ParseError] = []
    try:
        for chunk in chunks:
            items += parser.feed(chunk)
        items += parser.feed(b"")  # a framing error found after a message surfaces here
    except ParseError as exc:
        return items, exc
    return items, None


def _summary(outcome: tuple[list[Message | ParseError], ParseError | None]) -> object:
    items, error = outcome
    return (
        [(x.status_hint,) if isinstance(x, ParseError) else bytes(x) for x in items],
        None if error is None else error.reason,
    )


def _check_stream(name: str, data: bytes, verdict: str) -> None:
    whole = _stream([data])
    bytewise = _stream([data[i : i + 1] for i in range(len(data))])
    junk = _stream([data + _JUNK])
    assert _summary(bytewise) == _summary(whole)  # framing does not depend on the chunking
    items, error = whole
    kind = _STREAM_EXCEPTIONS.get(name.rsplit("/", 1)[-1])
    if kind is None:
        if verdict == ACCEPT:
            assert error is None and len(items) == 1 and bytes(items[0]) == data
        else:
            # rejected either as a message that frames but does not parse, or as a framing error
            status = _STATUS.get(name.rsplit("/", 1)[-1], 400)
            assert (len(items) == 1 and isinstance(items[0], ParseError)) or (
                not items and error is not None
            )
            if items:
                assert isinstance(items[0], ParseError) and items[0].status_hint == status
        # trailing junk that never completes a head changes nothing
        assert _summary(junk) == _summary(whole)
    elif kind == "no-content-length":
        assert not items and error is not None and "Content-Length" in error.reason
    elif kind == "next-message":
        assert len(items) >= 2 and isinstance(items[0], Request) and items[0].method == "REGISTER"
        assert isinstance(items[1], Request) and items[1].method == "INVITE"
    elif kind == "waits":
        assert not items and error is None
    else:
        assert kind == "short-content-length"
        assert len(items) == 1 and isinstance(items[0], Request) and error is None
        assert data.startswith(bytes(items[0]))


# ------------------------------------------------------------------ what the RFCs point out

needs_corpus = pytest.mark.skipif(not RFC4475.is_dir(), reason=_MISSING)


@needs_corpus
def test_wsinv() -> None:
    msg = _request(RFC4475, "wsinv.dat")
    assert msg.method == "INVITE"
    assert len(msg.via) == 3
    assert [v.transport for v in msg.via] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in msg.via] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert msg.to is not None and msg.to.tag == "1918181833n"
    assert msg.from_ is not None and msg.from_.tag == "98asjd8"
    assert msg.from_.display == '"J Rosenberg \\\\\\""'
    assert msg.max_forwards == 68
    assert msg.cseq is not None and (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    # unknown headers kept, folded value joined by one SP
    assert msg.header("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.header("Subject") == ""
    contact = msg.contact[0]
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.param("newparam") == "newvalue" and contact.param("q") == "0.33"
    assert contact.param("secondparam") == ""
    assert msg.route[0].sip_uri.param("unknown-no-value") == ""
    assert len(msg.body) == 150


@needs_corpus
def test_intmeth() -> None:
    msg = _request(RFC4475, "intmeth.dat")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq is not None and msg.cseq.method == msg.method
    assert isinstance(msg.uri, SipURI) and msg.uri.host == "example.com"


@needs_corpus
def test_esc01_unescapes_once() -> None:
    msg = _request(RFC4475, "esc01.dat")
    uri = msg.uri
    assert isinstance(uri, SipURI) and uri.user is not None
    assert unescape(uri.user) == "sips:user@example.com"
    assert msg.to is not None and unescape(msg.to.sip_uri.user or "") == "user"
    assert msg.from_ is not None and unescape(msg.from_.sip_uri.user or "") == "I have spaces"
    contact = msg.contact[0].sip_uri
    # parameters are kept as written; comparing them unescapes once, never recursively
    assert contact.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert unescape(contact.params[1][1] or "") == "value%41"
    assert unescape(contact.params[0][0]) == "lr"


@needs_corpus
def test_escnull() -> None:
    msg = _request(RFC4475, "escnull.dat")
    assert msg.to is not None and unescape(msg.to.sip_uri.user or "") == "null-\x00-null"
    users = [unescape(c.sip_uri.user or "") for c in msg.contact]
    assert users == ["\x00", "\x00\x00"]  # two distinct contacts, nothing truncated


@needs_corpus
def test_esc02() -> None:
    msg = _request(RFC4475, "esc02.dat")
    assert msg.method == "RE%47IST%45R"  # not REGISTER
    assert msg.to is not None and msg.to.display == '"%Z%45"'
    assert len(msg.contact) == 2  # C%6Fntact is another header
    assert msg.header("C%6Fntact") == "<sip:alias2@host2.example.com>"


@needs_corpus
def test_lwsdisp() -> None:
    msg = _request(RFC4475, "lwsdisp.dat")
    assert msg.from_ is not None and msg.from_.display == "caller"


@needs_corpus
def test_longreq() -> None:
    msg = _request(RFC4475, "longreq.dat")
    assert len(msg.via) > 10
    assert msg.call_id is not None and len(msg.call_id) > 100


@needs_corpus
def test_dblreq_gives_the_register_only() -> None:
    data = _read(RFC4475, "dblreq.dat")
    msg = parse_datagram(data)
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.body == b""
    # the trailing INVITE is ignored and never serialised (RFC 3261 §18.3)
    assert bytes(msg) == data[: data.index(b"\r\n\r\n") + 4]
    assert b"INVITE" not in bytes(msg)


@needs_corpus
def test_semiuri_user_part() -> None:
    uri = _request(RFC4475, "semiuri.dat").uri
    assert isinstance(uri, SipURI)
    assert uri.user == "user;par=u%40example.net"
    assert unescape(uri.user) == "user;par=u@example.net"
    assert uri.host == "example.com" and uri.params == ()


@needs_corpus
def test_transports() -> None:
    msg = _request(RFC4475, "transports.dat")
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


@needs_corpus
def test_mpart01_body_is_framed_by_content_length() -> None:
    msg = _request(RFC4475, "mpart01.dat")
    assert len(msg.body) == int(msg.header("Content-Length") or "")
    assert b"\x00" in msg.body  # binary octets survive


@needs_corpus
def test_unusual_and_empty_reason_phrases() -> None:
    unreason = _parse(RFC4475, "unreason.dat")
    assert isinstance(unreason, Response) and unreason.status == 200
    assert unreason.reason.encode("latin-1").decode("utf-8").endswith("простое")
    noreason = _parse(RFC4475, "noreason.dat")
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")


@needs_corpus
def test_badbranch_parses_with_the_bare_cookie() -> None:
    msg = _request(RFC4475, "badbranch.dat")
    assert msg.top_via is not None and msg.top_via.branch == "z9hG4bK"


@needs_corpus
def test_insuf_parses_without_the_required_headers() -> None:
    msg = _request(RFC4475, "insuf.dat")
    assert msg.call_id is None and msg.from_ is None and msg.to is None
    assert msg.max_forwards is None


@needs_corpus
def test_unknown_schemes() -> None:
    assert _request(RFC4475, "unkscm.dat").uri.scheme == "nobodyknowsthisscheme"
    assert _request(RFC4475, "novelsc.dat").uri.scheme == "soap.beep"
    msg = _request(RFC4475, "unksm2.dat")
    assert msg.to is not None and msg.to.uri is not None and msg.to.uri.scheme == "isbn"
    assert msg.from_ is not None and msg.from_.uri is not None
    assert msg.from_.uri.scheme == "http"
    assert [c.uri.scheme for c in msg.contact if c.uri is not None] == ["name"]


@needs_corpus
def test_multi01_keeps_every_value() -> None:
    msg = _request(RFC4475, "multi01.dat")
    for name in ("Call-ID", "To", "From", "Max-Forwards", "CSeq"):
        assert msg.count(name) == 2, name


@needs_corpus
def test_bcast() -> None:
    msg = _parse(RFC4475, "bcast.dat")
    assert msg.via[1].host == "255.255.255.255"


@needs_corpus
def test_zeromf() -> None:
    assert _request(RFC4475, "zeromf.dat").max_forwards == 0


@needs_corpus
def test_cparam01_parameter_belongs_to_the_contact() -> None:
    contact = _request(RFC4475, "cparam01.dat").contact[0]
    assert contact.param("unknownparam") == ""
    assert contact.sip_uri.params == ()  # not a URI parameter


@needs_corpus
def test_cparam02_parameter_belongs_to_the_uri() -> None:
    contact = _request(RFC4475, "cparam02.dat").contact[0]
    assert contact.params == ()
    assert contact.sip_uri.param("unknownparam") == ""


@needs_corpus
def test_regescrt_keeps_the_escaped_header() -> None:
    contact = _request(RFC4475, "regescrt.dat").contact[0].sip_uri
    assert contact.headers == "Route=%3Csip:sip.example.com%3E"


@needs_corpus
def test_inv2543() -> None:
    msg = _request(RFC4475, "inv2543.dat")
    assert msg.top_via is not None and msg.top_via.branch is None
    assert msg.from_ is not None and msg.from_.tag is None
    assert msg.header("Content-Length") is None and msg.max_forwards is None
    assert msg.body  # the rest of the datagram (RFC 3261 §18.3)


@needs_corpus
def test_rfc5118_ipv6_references() -> None:
    good = _request(RFC5118, "ipv6-good")
    assert isinstance(good.uri, SipURI) and good.uri.host == "[2001:db8::10]"
    assert good.uri.host_address == "2001:db8::10"
    assert good.top_via is not None and good.top_via.host == "[2001:db8::9:1]"
    assert good.contact[0].sip_uri.host == "[2001:db8::1]"


@needs_corpus
def test_rfc5118_port_ambiguous_has_no_port() -> None:
    uri = _request(RFC5118, "port-ambiguous").uri
    assert isinstance(uri, SipURI)
    assert uri.host == "[2001:db8::10:5070]" and uri.port is None


@needs_corpus
def test_rfc5118_port_unambiguous() -> None:
    uri = _request(RFC5118, "port-unambiguous").uri
    assert isinstance(uri, SipURI)
    assert uri.host == "[2001:db8::10]" and uri.port == 5070


@needs_corpus
def test_rfc5118_received_with_and_without_brackets() -> None:
    with_delim = _request(RFC5118, "via-received-param-with-delim").top_via
    no_delim = _request(RFC5118, "via-received-param-no-delim").top_via
    assert with_delim is not None and with_delim.received == "[2001:db8::9:255]"
    assert no_delim is not None and no_delim.received == "2001:db8::9:255"


@needs_corpus
def test_rfc5118_mixed_via_list() -> None:
    via = _request(RFC5118, "mult-ip-in-header").via
    assert [(v.host, v.port) for v in via] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert via[2].received == "192.0.2.200"


@needs_corpus
def test_rfc5118_ipv4_mapped() -> None:
    msg = _request(RFC5118, "ipv4-mapped-ipv6")
    assert [(v.host, v.port) for v in msg.via] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert isinstance(msg.contact[0], NameAddr)
    assert msg.contact[0].sip_uri.host == "[::ffff:192.0.2.2]"
