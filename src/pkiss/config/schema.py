"""The configuration schema: one frozen pydantic model per section of the YAML file.

Every model forbids unknown keys, so a misspelt key is an error instead of a setting silently
ignored. Compact strings (``udp:0.0.0.0:5060``, ``10.0.0.10:5060``, ``10.0.0.0/24:5070``,
``20000-29999``) are parsed here, once, into small objects: the rest of pkiss never parses
configuration text. Rules that span several fields or sections (a route naming a carrier, two
peers that cannot be told apart, ...) live in :mod:`pkiss.config.checks`; the loader runs them
after this schema, and any error there is a :class:`~pkiss.config.errors.ConfigError` too.

Durations are seconds (``float``); ports are integers 1-65535.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    WrapSerializer,
    field_validator,
    model_validator,
)

Transport = Literal["udp", "tcp", "tls"]
Role = Literal["carrier", "pbx"]
MediaMode = Literal["relay", "bypass"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SIP_PORT = 5060
DEFAULT_SIPS_PORT = 5061

DEFAULT_SCANNER_USER_AGENTS = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak",
    "sundayddr",
    "iWar",
    "VaxSIPUserAgent",
    "VaxIPUserAgent",
    "pplsip",
    "friendly-request",
    "sipscan",
    "SIVuS",
    "siparmyknife",
    "Nmap NSE",
)
"""Substrings of a User-Agent header that mark a SIP scanner (matched case-insensitively)."""

DEFAULT_METHODS = (
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "PRACK",
    "UPDATE",
    "INFO",
    "REGISTER",
    "NOTIFY",
    "REFER",
)
"""SIP methods accepted by default; any other is refused."""


class _Frozen(BaseModel):
    """Base of every config model: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- immutable mappings --------------------------------------------------------------------------

_K = TypeVar("_K")
_V = TypeVar("_V")


def _serialize_mapping(value: Mapping[Any, Any], serialize: SerializerFunctionWrapHandler) -> Any:
    return serialize(dict(value))


FrozenMap = Annotated[
    Mapping[_K, _V], AfterValidator(MappingProxyType), WrapSerializer(_serialize_mapping)
]
"""A mapping validated into a read-only ``MappingProxyType``."""


def _empty_map() -> Mapping[Any, Any]:
    return MappingProxyType({})


# --- addresses -----------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?", re.I)


def _canonical_host(text: str, *, ip_only: bool = False) -> str | None:
    """Return `text` as a canonical IP address or lower-case DNS name, or None if it is neither."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ip_only or re.fullmatch(r"[\d.]+", text) or not _HOSTNAME.fullmatch(text):
        return None
    return text.lower()


def _split_port(text: str) -> tuple[str, str | None] | None:
    """Split ``host:port``, ``[v6]:port``, ``[v6]``, ``host`` or a bare IPv6 address.

    Returns (host, port text or None); None when brackets are malformed.
    """
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None  # a host without port, or a bare IPv6 address


def _port(text: str | None, default: int | None) -> int | None:
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        return None
    return int(text)


def is_ip(host: str) -> bool:
    """True when `host` is an IP address rather than a DNS name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Address(_Frozen):
    """A ``host:port`` address. `host` is an IP address (IPv6 without brackets) or a DNS name."""

    host: str
    port: int = Field(ge=1, le=65535)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _address_parser(default_port: int | None) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, Address):
            return value
        parts = _split_port(value) if isinstance(value, str) else None
        if parts is not None:
            host, port = _canonical_host(parts[0]), _port(parts[1], default_port)
            if host is not None and port is not None:
                return Address(host=host, port=port)
        raise ValueError("not a host:port")

    return parse


HostPort = Annotated[Address, BeforeValidator(_address_parser(None))]
"""An address whose port must be written."""
PeerAddress = Annotated[Address, BeforeValidator(_address_parser(DEFAULT_SIP_PORT))]
"""An address whose port defaults to 5060."""


class Endpoint(_Frozen):
    """A socket written ``transport:host:port``, e.g. ``udp:0.0.0.0:5060`` or ``tls:[::]:5061``."""

    transport: Transport
    host: str
    port: int = Field(ge=1, le=65535)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def _endpoint_parser(default_ports: Mapping[str, int]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, Endpoint):
            return value
        if isinstance(value, str):
            transport, _, rest = value.partition(":")
            parts = _split_port(rest)
            if transport in ("udp", "tcp", "tls") and parts is not None:
                host = _canonical_host(parts[0], ip_only=True)
                port = _port(parts[1], default_ports.get(transport))
                if host is not None and port is not None:
                    return Endpoint(transport=transport, host=host, port=port)  # type: ignore[arg-type]
        raise ValueError("not transport:ip:port (e.g. udp:0.0.0.0:5060)")

    return parse


ListenEndpoint = Annotated[
    Endpoint,
    BeforeValidator(
        _endpoint_parser(
            {"udp": DEFAULT_SIP_PORT, "tcp": DEFAULT_SIP_PORT, "tls": DEFAULT_SIPS_PORT}
        )
    ),
]
ControlEndpoint = Annotated[Endpoint, BeforeValidator(_endpoint_parser({}))]


class Source(_Frozen):
    """Where requests may come from: an IP network, and optionally one source port."""

    network: IPNetwork
    port: int | None = Field(default=None, ge=1, le=65535)

    def matches(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        """True when a packet from `address`:`port` comes from this source."""
        return address in self.network and (self.port is None or self.port == port)

    def overlaps(self, other: Source) -> bool:
        """True when some packet could come from both sources."""
        return (
            self.network.version == other.network.version
            and self.network.overlaps(other.network)
            and (self.port is None or other.port is None or self.port == other.port)
        )

    def __str__(self) -> str:
        if self.port is None:
            return str(self.network)
        if self.network.version == 6:
            return f"[{self.network}]:{self.port}"
        return f"{self.network}:{self.port}"


def _network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text)
    except ValueError as error:
        if "host bits set" in str(error):
            fixed = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"{text} has host bits set (did you mean {fixed}?)") from None
        raise ValueError("not an IP address or network") from None


def _parse_network(value: Any) -> Any:
    if isinstance(value, str):
        return _network(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    raise ValueError("not an IP address or network")


def _parse_source(value: Any) -> Any:
    if isinstance(value, Source):
        return value
    parts = _split_port(value) if isinstance(value, str) else None
    if parts is not None and (port := _port(parts[1], 0)) is not None:
        return Source(network=_network(parts[0]), port=port or None)
    raise ValueError("not an IP address or network, with an optional :port")


Network = Annotated[IPNetwork, BeforeValidator(_parse_network)]
SourceSpec = Annotated[Source, BeforeValidator(_parse_source)]


def _check_domain(text: str) -> str:
    host = _canonical_host(text)
    if host is None:
        raise ValueError("not a host name or IP address")
    return host


DomainName = Annotated[str, AfterValidator(_check_domain)]


# --- small value types ---------------------------------------------------------------------------


def _check_peer_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError("a peer name is letters, digits, '-', '_' and '.'")
    return name


PeerName = Annotated[str, AfterValidator(_check_peer_name)]

_NUMBER = re.compile(r"\+?[0-9]+")


def _check_did(text: str) -> str:
    """Check a DID: exact ``+33555000111``, prefix ``+3398765*`` or range ``+331000-+331099``."""
    if text.endswith("*") and re.fullmatch(r"\+?[0-9]*", text[:-1]):
        return text
    if _NUMBER.fullmatch(text):
        return text
    low, dash, high = text.partition("-")
    if dash and _NUMBER.fullmatch(low) and _NUMBER.fullmatch(high):
        if len(low) != len(high) or low.startswith("+") != high.startswith("+"):
            raise ValueError("both ends of a range must have the same number of digits")
        if low > high:
            raise ValueError("a range must start at or below its end")
        return text
    raise ValueError("not a DID: +33555000111 (exact), +3398765* (prefix) or +33100-+33199 (range)")


Did = Annotated[str, AfterValidator(_check_did)]


def _check_prefix(text: str) -> str:
    if not re.fullmatch(r"\+?[0-9]*", text):
        raise ValueError("a prefix is digits, optionally after '+'")
    return text


Prefix = Annotated[str, AfterValidator(_check_prefix)]


def _check_method(text: str) -> str:
    if not re.fullmatch(r"[A-Z]+", text):
        raise ValueError("a SIP method is upper-case letters, e.g. INVITE")
    return text


Method = Annotated[str, AfterValidator(_check_method)]


def _check_header_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", text):
        raise ValueError("not a SIP header name")
    return text


HeaderName = Annotated[str, AfterValidator(_check_header_name)]
StatusCode = Annotated[int, Field(ge=300, le=699)]
Seconds = Annotated[float, Field(gt=0)]


class PortRange(_Frozen):
    """An inclusive range of UDP ports, written ``20000-29999``."""

    low: int = Field(ge=1, le=65535)
    high: int = Field(ge=1, le=65535)

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def _parse_port_range(value: Any) -> Any:
    if isinstance(value, PortRange):
        return value
    low, dash, high = value.partition("-") if isinstance(value, str) else ("", "", "")
    first, last = _port(low.strip() or None, None), _port(high.strip() or None, None)
    if not dash or first is None or last is None or first >= last:
        raise ValueError("not a port range LOW-HIGH (e.g. 20000-29999)")
    return PortRange(low=first, high=last)


# --- sections ------------------------------------------------------------------------------------


class Tls(_Frozen):
    """TLS material for ``tls:`` listeners and TLS connections to peers. Paths are files."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify_peer: bool = False
    """Require and verify a client certificate from peers connecting over TLS (against `ca`)."""


class Sbc(_Frozen):
    """The SBC's own SIP sockets and identity."""

    listen: tuple[ListenEndpoint, ...] = Field(
        default=(
            Endpoint(transport="udp", host="0.0.0.0", port=DEFAULT_SIP_PORT),
            Endpoint(transport="tcp", host="0.0.0.0", port=DEFAULT_SIP_PORT),
        ),
        min_length=1,
    )
    advertise: DomainName | None = None
    """Address written in Via/Contact/SDP instead of the listening one (SBC behind NAT)."""
    tls: Tls | None = None
    server_header: str | None = None
    """Value of the Server/User-Agent header the SBC sends; None sends no such header."""


class Media(_Frozen):
    """How RTP is handled."""

    mode: MediaMode = "relay"
    engine: Literal["builtin", "rtpengine"] = "builtin"
    ports: Annotated[PortRange, BeforeValidator(_parse_port_range)] = PortRange(
        low=20000, high=29999
    )
    """UDP ports of the built-in relay."""
    rtpengine: ControlEndpoint = Endpoint(transport="udp", host="127.0.0.1", port=22222)
    """rtpengine's ng control socket."""
    timeout: Seconds = 60.0
    """Seconds without RTP in either direction before a call is ended."""
    learn: Literal["signalled", "first-packet"] = "signalled"
    """Which media sources the built-in relay accepts: ``signalled``, only the hosts a side's
    SDP or SIP names; ``first-packet``, also the source of a side's first packet within 3 s of
    an offer or answer, wherever it comes from (phones that send RTP from another address than
    their SDP names), at the price of RTP bleed within that window (docs/security.md)."""


class Host(_Frozen):
    """One address of a peer: ``host:port``, or ``{address, priority, weight, transport}``."""

    address: PeerAddress
    transport: Transport = "udp"
    priority: int = Field(default=1, ge=0)
    """Failover order: lower values are tried first."""
    weight: int = Field(default=1, ge=0)
    """Share of calls under the balance strategy (0: never chosen)."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            _address_parser(DEFAULT_SIP_PORT)(data)  # reports the error at hosts[i]
            return {"address": data}
        return data

    @property
    def host(self) -> str:
        """IP address (IPv6 without brackets) or DNS name."""
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port


class Match(_Frozen):
    """How a request is attributed to a peer; every given condition must hold."""

    source: tuple[SourceSpec, ...] | None = None
    """Networks (and optionally source ports) the peer sends from; None: its hosts."""
    username: str | None = Field(default=None, min_length=1)
    """Digest username the SBC challenges the peer for (the password is `Peer.password`)."""
    header: FrozenMap[HeaderName, str] = Field(default_factory=_empty_map)
    """Headers the peer's requests carry, name -> exact value (stripped before forwarding)."""
    domain: DomainName | None = None
    """Host part of the request's From/To; None: `Peer.domain`."""

    @field_validator("source")
    @classmethod
    def _not_empty(cls, source: tuple[Source, ...] | None) -> tuple[Source, ...] | None:
        if source == ():
            raise ValueError("must not be empty (leave it out to match the peer's hosts)")
        return source


DigestAlgorithm = Literal["MD5", "SHA-256"]


class Credentials(_Frozen):
    """Digest settings of a peer. ``username``/``password``: what the SBC answers this
    carrier's 401/407 with. ``algorithms``: what the SBC offers when it challenges this peer
    (a PBX or tenant with ``match.username``), in order."""

    username: str | None = Field(default=None, min_length=1)
    password: str | None = Field(default=None, repr=False)
    algorithms: tuple[DigestAlgorithm, ...] = ("MD5",)
    """Digest algorithms of the SBC's challenges (RFC 8760): MD5, which every UA answers,
    unless SHA-256 is asked for; several only when listed (some UAs give up on a challenge
    set holding an algorithm they lack)."""

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (the answer to a carrier's "
                             "challenge)")  # fmt: skip
        if not self.algorithms:
            raise ValueError("algorithms: name one at least (MD5 or SHA-256)")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError("algorithms: each algorithm once")
        return self


class Registration(_Frozen):
    """The SBC registers to a carrier."""

    username: str = Field(min_length=1)
    password: str = Field(repr=False)
    domain: DomainName | None = None
    """Registrar domain (R-URI and To host); None: the carrier's first host."""
    expires: int = Field(default=600, ge=60)
    """Seconds asked for in Expires; the SBC refreshes before it runs out."""


class Health(_Frozen):
    """OPTIONS probes of every host of a peer."""

    interval: Seconds = 10.0
    """Seconds between probes of one host."""
    timeout: Seconds = Field(default=2.0, validate_default=True)
    """Seconds without an answer before a probe counts as failed; below `interval`."""
    down_after: int = Field(default=2, ge=1)
    """Consecutive failed probes that mark a host down."""
    up_after: int = Field(default=2, ge=1)
    """Consecutive answered probes that mark a down host up again."""
    strict: bool = False
    """When every host is down: false still tries them in order, true fails the call at once."""

    @field_validator("timeout")
    @classmethod
    def _below_interval(cls, timeout: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and timeout >= interval:
            raise ValueError(f"must be less than health.interval ({interval:g} s)")
        return timeout


def _health_switch(value: Any) -> Any:
    """``health: false`` disables probes; ``health: true`` is the defaults."""
    if value is False:
        return None
    return {} if value is True else value


class Limits(_Frozen):
    """Beyond these, new calls get 503 with Retry-After. None: no limit."""

    calls: int | None = Field(default=None, ge=0)
    """Calls in progress with this peer, both directions."""
    cps: float | None = Field(default=None, gt=0)
    """New calls per second with this peer, both directions."""


def _compile(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None


class Rewrite(_Frozen):
    """Number normalisation: `match` searched in the number, replaced by `replace` (``\\1``...)."""

    match: Annotated[re.Pattern[str], BeforeValidator(_compile)]
    replace: str

    @field_validator("replace")
    @classmethod
    def _valid_template(cls, replace: str, info: ValidationInfo) -> str:
        pattern = info.data.get("match")
        if pattern is not None:
            try:
                pattern.sub(replace, "")  # checks group references even without a match
            except re.error as error:
                raise ValueError(f"not a valid replacement: {error}") from None
        return replace

    def apply(self, number: str) -> str | None:
        """The rewritten number, or None when `match` does not match `number`."""
        result, count = self.match.subn(self.replace, number, count=1)
        return result if count else None


class Rewrites(_Frozen):
    """Ordered rewrite rules per direction; the first matching rule applies."""

    inbound: tuple[Rewrite, ...] = ()
    """Applied to numbers received from the peer."""
    outbound: tuple[Rewrite, ...] = ()
    """Applied to numbers sent to the peer."""


class Route(_Frozen):
    """One entry of a routing table: calls whose number starts with `prefix` go `via` carriers."""

    prefix: Prefix
    via: tuple[PeerName, ...] = ()
    """Carrier peers tried in this order."""
    reject: int | None = Field(default=None, ge=400, le=699)
    """Status the call is refused with instead."""

    @model_validator(mode="after")
    def _via_or_reject(self) -> Self:
        if bool(self.via) == (self.reject is not None):
            raise ValueError("needs exactly one of via (carrier names) or reject (a status code)")
        return self


_NEVER_PASSED = frozenset(
    {"via", "route", "record-route", "contact", "call-id", "from", "to", "cseq",
     "max-forwards", "content-length", "p-asserted-identity", "authorization",
     "proxy-authorization", "www-authenticate", "proxy-authenticate", "user-agent", "server"}
)  # fmt: skip


def _passable(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if name.lower() in _NEVER_PASSED:
            raise ValueError(f"{name} is the SBC's own on each leg (or rebuilt by it), "
                             "never passed across")  # fmt: skip
    return names


class Headers(_Frozen):
    """What a peer's messages may carry across to the other leg beyond the built-in list."""

    pass_: Annotated[tuple[HeaderName, ...], AfterValidator(_passable)] = Field(
        default=(), alias="pass"
    )
    """Extra header names copied from this peer's requests and responses to the other leg,
    value for value (``Diversion``, ``History-Info``, ``P-Charge-Info``...). Written ``pass``."""


class SessionTimer(_Frozen):
    """RFC 4028 session timers on the legs with a peer: each leg negotiates its own."""

    expires: int = Field(default=1800, ge=90)
    """Session interval (seconds) the SBC asks for in the INVITEs it sends the peer, and the
    largest it grants the peer's INVITEs (a larger one is lowered to it)."""
    min_se: int = Field(default=90, ge=90)
    """Smallest interval the SBC accepts: a peer's INVITE asking for less gets 422 with
    ``Min-SE`` (when it supports timers), and a 422 from the peer raises the SBC's offer."""
    refresher: Literal["sbc", "peer"] = "sbc"
    """Who refreshes when the SBC chooses: ``sbc`` (re-INVITE or UPDATE at half the interval)
    or ``peer`` (when it supports timers; otherwise the SBC does)."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_se > self.expires:
            raise ValueError("min_se must not be larger than expires")
        return self


def _session_timer_switch(value: Any) -> Any:
    if value is False or value is None:
        return None
    return {} if value is True else value


class Peer(_Frozen):
    """A SIP neighbour: a carrier (operator) or a PBX."""

    role: Role
    hosts: tuple[Host, ...]
    """Where requests to the peer go; empty when the peer is ``registered``."""
    strategy: Literal["failover", "balance"] = "failover"
    match: Match = Field(default_factory=Match)
    auth: Credentials | None = None
    registration: Registration | None = Field(default=None, alias="register")
    """Written ``register`` (a name pydantic reserves)."""
    health: Annotated[Health | None, BeforeValidator(_health_switch)] = Field(
        default_factory=Health
    )
    """None when probes are disabled (``health: false``)."""
    failover_on: tuple[StatusCode, ...] = (408, 500, 502, 503, 504)
    """Final statuses that move a call to the next candidate."""
    setup_timeout: Seconds = 3.0
    """Seconds without any response to an INVITE before the next candidate is tried."""
    answer_timeout: Seconds = 120.0
    """Seconds a call to this peer may ring unanswered: then it is CANCELled and the caller
    gets 480 (what it holds, relay ports included, is released)."""
    limits: Limits = Field(default_factory=Limits)
    rewrite: Rewrites = Field(default_factory=Rewrites)
    media: MediaMode | None = None
    """Overrides `media.mode` for calls with this peer."""
    domain: DomainName | None = None
    """Host part of the R-URI/To the SBC sends the peer; also matched on requests from it."""
    password: str | None = Field(default=None, repr=False)
    """Password of `match.username`, checked by digest challenge."""
    dids: tuple[Did, ...] = ()
    """Numbers this PBX owns: exact, prefix ``+3398765*`` or range ``+33100-+33199``."""
    caller_id: Literal["enforce", "off"] = "off"
    """enforce: the caller (From/P-Asserted-Identity) must be one of `dids`, else 403."""
    routes: tuple[Route, ...] | None = None
    """This PBX's own outbound table; None: the global one."""
    headers: Headers = Field(default_factory=Headers)
    codecs: tuple[Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")], ...] | None = (
        None
    )
    """Codec policy: an INVITE's SDP offer sent to this peer keeps only these codecs (rtpmap
    encoding names, e.g. ``[PCMA, PCMU, telephone-event]``), in this order; none left: the
    call gets 488. None: offers pass as they are."""
    trusted: bool = True
    """RFC 3325 trust: P-Asserted-Identity and Privacy are taken from and sent to a trusted
    peer; an untrusted one's PAI is ignored, and toward it PAI is stripped and a caller asking
    for privacy (``Privacy: id``) is made anonymous in From."""
    session_timer: Annotated[SessionTimer | None, BeforeValidator(_session_timer_switch)] = Field(
        default_factory=SessionTimer
    )
    """RFC 4028 session timers on this peer's legs; None when disabled (``false``)."""
    refer: Literal["reject", "local"] = "reject"
    """A REFER from this peer within a call: ``reject`` (403), or ``local``: the SBC places
    the new call through its routing, bridges the remaining leg to it and reports with NOTIFY."""

    # Derived values live in the instance's __dict__, not in pydantic private attributes:
    # those are read through a slow __getattr__ (about 2 µs), and routing reads these per call.

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        registered = isinstance(data, Mapping) and data.get("hosts") == "registered"
        if registered:
            data = {**data, "hosts": ()}
        peer = handler(data)
        if isinstance(data, Mapping):
            derived = peer.__dict__
            derived["_registered"] = registered
            derived["_match_sources"] = peer.match.source or tuple(
                Source(network=ipaddress.ip_network(host.host))
                for host in peer.hosts
                if is_ip(host.host)
            )
        return peer

    @property
    def name(self) -> str:
        """The peer's key under ``peers``."""
        name: str = self.__dict__.get("_name", "")
        return name

    def __hash__(self) -> int:
        # Equal peers have equal names; a hash of every field would fail on match.header.
        return hash(self.name)

    @property
    def call_limits(self) -> Limits:
        """`limits`, its `calls` the node's `limits.peer_calls` when it gives none."""
        limits: Limits = self.__dict__.get("_call_limits", self.limits)
        return limits

    @property
    def registered(self) -> bool:
        """True for ``hosts: registered``: calls go to the Contact of its registration."""
        registered: bool = self.__dict__.get("_registered", False)
        return registered

    @property
    def match_sources(self) -> tuple[Source, ...]:
        """`match.source`, else one /32 or /128 per host address; empty: any source."""
        sources: tuple[Source, ...] = self.__dict__.get("_match_sources", ())
        return sources

    @property
    def match_domain(self) -> str | None:
        """The domain requests from the peer are matched on: `match.domain`, else `domain`."""
        return self.match.domain or self.domain


def _expand_defaults(value: Any) -> Any:
    """``...`` in a user_agents list stands for the built-in list."""
    if isinstance(value, list | tuple) and "..." in value:
        expanded: list[Any] = []
        for item in value:
            expanded.extend(DEFAULT_SCANNER_USER_AGENTS if item == "..." else [item])
        return tuple(dict.fromkeys(expanded))  # once each, in order
    return value


class Flood(_Frozen):
    """Ban a source (not matching any peer) that sends more than `max` requests in `window`."""

    window: Seconds = 2.0
    max: int = Field(default=40, ge=1)
    ban: Seconds = 600.0
    """Seconds the source stays banned."""


class AuthFailures(_Frozen):
    """Ban a source after `max` failed digest authentications within `window`."""

    max: int = Field(default=5, ge=1)
    window: Seconds = 60.0
    ban: Seconds = 3600.0


class Scanners(_Frozen):
    """Ban a source whose User-Agent contains one of `user_agents` (case-insensitive)."""

    ban: Seconds = 86400.0
    user_agents: Annotated[tuple[str, ...], BeforeValidator(_expand_defaults)] = (
        DEFAULT_SCANNER_USER_AGENTS
    )


class Connections(_Frozen):
    """Inbound TCP and TLS connections: what a source, and all of them, may hold."""

    max: int = Field(default=2048, ge=1)
    """Inbound connections held in all (within the descriptor limit less what the node keeps for
    itself); beyond, the newest connection of a stranger is closed (a peer's never)."""
    per_source: int = Field(default=32, ge=1)
    """Inbound connections held by one source address that matches no peer's addresses."""
    first_message: Seconds = 5.0
    """Seconds an inbound connection has to deliver its first complete SIP message."""
    tls_handshake: Seconds = 5.0
    """Seconds an inbound TLS connection has to complete its handshake."""
    idle: Seconds = 3600.0
    """Seconds without any message, either way, after which an inbound connection is closed
    (CRLF keep-alives do not count)."""


class Security(_Frozen):
    """Filters applied to every packet before any state is kept."""

    unknown_sources: Literal["drop", "reject"] = "drop"
    """What to do with requests no peer matches: drop silently or answer 403."""
    max_message_bytes: int = Field(default=16384, ge=1024)
    """Larger messages are dropped."""
    flood: Flood = Field(default_factory=Flood)
    auth_failures: AuthFailures = Field(default_factory=AuthFailures)
    scanners: Scanners = Field(default_factory=Scanners)
    connections: Connections = Field(default_factory=Connections)
    methods: tuple[Method, ...] = DEFAULT_METHODS
    """Methods accepted; others get 405."""
    never_ban: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.1"),
        ipaddress.ip_network("::1"),
    )
    """Addresses and networks never banned."""


class Trace(_Frozen):
    """The call trace (``GET /api/calls/{id}/trace``): every SIP message of the calls in
    progress and of the last ``calls`` ended ones, both legs."""

    enabled: bool = True
    calls: int = Field(default=1000, ge=0, le=100_000)
    """Ended calls whose messages are kept (the oldest go first)."""
    messages: int = Field(default=200, ge=1, le=10_000)
    """Messages kept per call (the rest are counted, not kept)."""


class TraceExport(_Frozen):
    """``trace``: where every traced SIP message goes as well."""

    hep: ControlEndpoint | None = None
    """A Homer or heplify collector (or ``sngrep -L``), ``udp:host:port``: HEPv3 packets."""
    hep_agent: int = Field(default=0, ge=0, le=4294967295)
    """The capture agent id the packets carry (which node sent them)."""

    @field_validator("hep")
    @classmethod
    def _udp_only(cls, value: Endpoint | None) -> Endpoint | None:
        if value is not None and value.transport != "udp":
            raise ValueError("HEP goes over UDP: udp:host:port")
        return value


class Admin(_Frozen):
    """The admin REST API, dashboard and /metrics."""

    listen: HostPort = Address(host="127.0.0.1", port=8080)
    token: str | None = Field(default=None, min_length=1, repr=False)
    """Bearer token; required for writes, and for reads unless `listen` is loopback."""
    trace: Trace = Trace()


def _check_url_port(url: str) -> None:
    """A port that is not a number is found now, not when the node first connects."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"not a valid URL (port): {url!r}")


def _check_cdr_url(url: str) -> str:
    if not re.match(r"(sqlite|postgres(ql)?)(\+\w+)?://", url):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    if not url.startswith("sqlite"):
        _check_url_port(url)
        if not urlsplit(url).hostname:
            raise ValueError("a postgresql:// URL needs a host: postgresql://user:pass@host/db")
    return url


def _check_state(url: str) -> str:
    if url == "memory":
        return url
    if not re.match(r"rediss?://", url):
        raise ValueError("must be memory or a redis:// URL")
    _check_url_port(url)
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("a redis:// URL needs a host: redis://127.0.0.1:6379/0")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError("the database of a redis:// URL is a number: redis://host:6379/0")
    return url


class CdrSpool(_Frozen):
    """The file where records wait until the database has them (``storage.cdr_spool``)."""

    path: Path | None = None
    """The spool file; default: the SQLite file's path + ``.spool``, or ``pkiss-cdr.spool``
    (in the node's working directory) with PostgreSQL."""
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096)
    """Bytes the spool holds at most (about 300 a record); beyond, records are refused."""


class Storage(_Frozen):
    """Where call detail records are written."""

    cdr: Annotated[str, AfterValidator(_check_cdr_url)] = "sqlite:///pkiss-cdr.sqlite"
    """SQLAlchemy URL; ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    cdr_spool: CdrSpool = Field(default_factory=CdrSpool)

    def cdr_spool_path(self) -> Path:
        """Where the spool is: ``cdr_spool.path``, or next to the SQLite file."""
        if self.cdr_spool.path is not None:
            return self.cdr_spool.path
        if self.cdr.startswith("sqlite:///"):
            db = self.cdr[len("sqlite:///") :].split("?", 1)[0]
            if db not in ("", ":memory:"):
                return Path(db + ".spool")
        return Path("pkiss-cdr.spool")


class Logging(_Frozen):
    """Log records written to stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class NodeLimits(_Frozen):
    """What the whole node holds at most (``limits``): beyond, new calls and new requests get
    503 with Retry-After, and what is in progress goes on."""

    calls: int = Field(default=10000, ge=1)
    """Calls in progress in all."""
    transactions: int = Field(default=400000, ge=1)
    """SIP transactions in progress in all, answered ones still absorbing retransmissions
    included: a call leaves about four of them for 32 s (RFC 3261 timers H, J, RFC 6026), so
    1,000 calls/s keep about 128,000."""
    peer_calls: int = Field(default=5000, ge=1)
    """Calls in progress with one peer whose ``limits.calls`` says nothing: a runaway PBX or a
    spoofed carrier address cannot take the whole node."""


class Config(_Frozen):
    """A whole, valid configuration file. Build it with `load_config` or `parse_config`."""

    sbc: Sbc = Field(default_factory=Sbc)
    media: Media = Field(default_factory=Media)
    peers: FrozenMap[PeerName, Peer] = Field(default_factory=_empty_map)
    routes: tuple[Route, ...] = ()
    """The outbound table for calls from PBX peers without their own `routes`."""
    security: Security = Field(default_factory=Security)
    admin: Admin = Field(default_factory=Admin)
    trace: TraceExport = Field(default_factory=TraceExport)
    storage: Storage = Field(default_factory=Storage)
    state: Annotated[str, AfterValidator(_check_state)] = "memory"
    """Where bans, call counts and health are kept: memory, or a redis:// URL shared by nodes."""
    logging: Logging = Field(default_factory=Logging)
    limits: NodeLimits = Field(default_factory=NodeLimits)

    @model_validator(mode="after")
    def _name_peers(self) -> Self:
        for name, peer in self.peers.items():
            peer.__dict__["_name"] = name
            limits = peer.limits
            if limits.calls is None:
                limits = limits.model_copy(update={"calls": self.limits.peer_calls})
            peer.__dict__["_call_limits"] = limits
        return self

    def peer(self, name: str) -> Peer:
        """The peer called `name`; KeyError if there is none."""
        try:
            return self.peers[name]
        except KeyError:
            raise KeyError(f"no peer named {name!r}") from None

    def peers_by_role(self, role: Role) -> tuple[Peer, ...]:
        """Every peer of `role`, in file order."""
        return tuple(peer for peer in self.peers.values() if peer.role == role)

    def routes_for(self, peer: Peer) -> tuple[Route, ...]:
        """The outbound table of calls from `peer`: its own `routes`, else the global one."""
        return self.routes if peer.routes is None else peer.routes

    def media_mode_for(self, peer: Peer) -> MediaMode:
        """The media mode of calls with `peer`: its override, else `media.mode`."""
        return peer.media or self.media.mode
