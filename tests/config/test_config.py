"""The YAML configuration: valid files, and the error each mistake produces (with its YAML path)."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pydantic
import pytest

from pkiss.config import Config, ConfigError, Host, Peer, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pkiss.yaml"
DOCS = ROOT / "docs" / "configuration.md"

# The example of the configuration contract (CONFIG.md), with its `routes: [...]` placeholder
# filled in and the operator-b its routes name added.
FULL = r"""
sbc:
  listen: [udp:0.0.0.0:5060, tcp:0.0.0.0:5060]    # also tls:0.0.0.0:5061 (needs sbc.tls)
  advertise: 203.0.113.10
  tls: {cert: cert.pem, key: key.pem, ca: ca.pem, verify_peer: false}
  server_header: null

media:
  mode: relay
  engine: builtin
  ports: 20000-29999
  rtpengine: udp:127.0.0.1:22222
  timeout: 60

peers:
  operator-a:
    role: carrier
    hosts: [198.51.100.10:5060]
    strategy: failover
    match: {source: [198.51.100.0/28]}
    auth: {username: "0123456789", password: "secret"}
    register:
      {username: "0123456789", password: "secret", domain: sip.operator-a.example, expires: 600}
    health: {interval: 10, timeout: 2, down_after: 2, up_after: 2}
    failover_on: [408, 500, 502, 503, 504]
    setup_timeout: 3
    limits: {calls: 30, cps: 5}
    rewrite:
      inbound:  [{match: '^0(\d{9})$', replace: '+33\1'}]
      outbound: [{match: '^\+33(\d{9})$', replace: '0\1'}]
    media: relay
  operator-b:
    role: carrier
    hosts: [sip.operator-b.example]
    match: {source: [192.0.2.0/24]}
    strategy: balance
  pbx-main:
    role: pbx
    hosts:
      - {address: 10.0.0.10:5060, priority: 1}
      - {address: 10.0.0.11:5060, priority: 2}
    strategy: failover
    dids: ["+33123456700-+33123456799", "+3398765*", "+33555000111"]
    caller_id: enforce
    routes: [{prefix: "+33", via: [operator-a]}, {prefix: "", reject: 403}]
  tenant-acme:
    role: pbx
    hosts: [10.0.0.20:5060]
    domain: acme.pbx.local
    match: {source: [10.0.0.20], username: acme}
    password: ${ACME_SIP_PASSWORD}
    dids: ["+33140000000-+33140000099"]
    limits: {calls: 10}
  remote-pbx:
    role: pbx
    hosts: registered
    match: {username: remote1}
    password: ${REMOTE1_PASSWORD}
    dids: ["+33140000500"]

routes:
  - {prefix: "+33899", reject: 403}
  - {prefix: "+44", via: [operator-b, operator-a]}
  - {prefix: "+", via: [operator-a, operator-b]}
  - {prefix: "", via: [operator-a]}

security:
  unknown_sources: drop
  max_message_bytes: 16384
  flood: {window: 2, max: 40, ban: 600}
  auth_failures: {max: 5, window: 60, ban: 3600}
  scanners: {ban: 86400, user_agents: [friendly-scanner, sipvicious, sipcli, ...]}
  methods: [INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, UPDATE, INFO, REGISTER, NOTIFY, REFER]
  never_ban: [127.0.0.1]

admin:
  listen: 127.0.0.1:8080
  token: ${PKISS_ADMIN_TOKEN}
storage:
  cdr: sqlite:///var/lib/pkiss/cdr.sqlite
state: memory
logging: {level: info, format: text}
"""

PEERS = """
peers:
  operator: {role: carrier, hosts: [127.0.0.2:5060]}
  pbx: {role: pbx, hosts: [127.0.0.3:5060], dids: ["+3312345*"]}
"""


def parse(text: str, **environ: str) -> Config:
    return parse_config(textwrap.dedent(text), "test.yaml", environ=environ)


def errors_of(text: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, **environ)
    for line in caught.value.errors:
        assert "Value error" not in line and "pydantic" not in line and "http" not in line, line
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def with_peers(peers: str, extra: str = "") -> str:
    """A file whose `peers` section is `peers` (YAML indented for that section)."""
    return f"peers:\n{textwrap.indent(textwrap.dedent(peers), '  ')}\n{textwrap.dedent(extra)}"


# --- valid files ---------------------------------------------------------------------------------


@pytest.fixture
def full(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("ACME_SIP_PASSWORD", "acme-secret")
    monkeypatch.setenv("REMOTE1_PASSWORD", "remote-secret")
    monkeypatch.setenv("PKISS_ADMIN_TOKEN", "admin-token")
    return parse_config(FULL, "pkiss.yaml")


def test_full_example_sbc_and_media(full: Config) -> None:
    assert [str(e) for e in full.sbc.listen] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert (full.sbc.listen[0].transport, full.sbc.listen[0].host, full.sbc.listen[0].port) == (
        "udp",
        "0.0.0.0",
        5060,
    )
    assert full.sbc.advertise == "203.0.113.10"
    assert full.sbc.tls is not None and str(full.sbc.tls.cert) == "cert.pem"
    assert full.sbc.server_header is None
    assert (full.media.ports.low, full.media.ports.high) == (20000, 29999)
    assert str(full.media.rtpengine) == "udp:127.0.0.1:22222"
    assert full.media.timeout == 60


def test_full_example_peers(full: Config) -> None:
    operator = full.peer("operator-a")
    assert operator.name == "operator-a"
    assert operator.auth is not None and operator.auth.username == "0123456789"
    assert operator.registration is not None and operator.registration.expires == 600
    assert operator.limits.calls == 30 and operator.limits.cps == 5
    assert [str(s) for s in operator.match_sources] == ["198.51.100.0/28"]
    assert operator.rewrite.inbound[0].apply("0123456789") == "+33123456789"
    assert operator.rewrite.outbound[0].apply("+33123456789") == "0123456789"
    assert operator.rewrite.inbound[0].apply("+33123456789") is None
    assert full.media_mode_for(operator) == "relay"

    pbx = full.peer("pbx-main")
    assert [(h.host, h.port, h.priority, h.transport) for h in pbx.hosts] == [
        ("10.0.0.10", 5060, 1, "udp"),
        ("10.0.0.11", 5060, 2, "udp"),
    ]
    assert pbx.dids == ("+33123456700-+33123456799", "+3398765*", "+33555000111")
    assert pbx.caller_id == "enforce"
    assert [r.prefix for r in full.routes_for(pbx)] == ["+33", ""]

    acme = full.peer("tenant-acme")
    assert acme.password == "acme-secret"
    assert acme.match.username == "acme" and acme.match_domain == "acme.pbx.local"
    assert full.routes_for(acme) == full.routes

    remote = full.peer("remote-pbx")
    assert remote.registered and remote.hosts == () and remote.match_sources == ()
    assert not pbx.registered
    assert [p.name for p in full.peers_by_role("carrier")] == ["operator-a", "operator-b"]


def test_full_example_routes_security_and_rest(full: Config) -> None:
    assert full.routes[0].reject == 403 and full.routes[0].via == ()
    assert full.routes[1].via == ("operator-b", "operator-a")
    assert full.security.scanners.user_agents[:3] == ("friendly-scanner", "sipvicious", "sipcli")
    assert "VaxSIPUserAgent" in full.security.scanners.user_agents
    assert len(set(full.security.scanners.user_agents)) == len(full.security.scanners.user_agents)
    assert full.security.never_ban == (ipaddress.ip_network("127.0.0.1/32"),)
    assert full.admin.token == "admin-token" and str(full.admin.listen) == "127.0.0.1:8080"
    assert full.storage.cdr == "sqlite:///var/lib/pkiss/cdr.sqlite"
    assert (full.state, full.logging.level, full.logging.format) == ("memory", "info", "text")


def test_minimal_file_takes_the_defaults() -> None:
    config = parse("sbc:\n  listen: [udp:127.0.0.1:5060]\n" + PEERS)
    operator = config.peer("operator")
    assert operator.strategy == "failover"
    assert operator.health is not None
    assert (operator.health.interval, operator.health.timeout) == (10, 2)
    assert (operator.health.down_after, operator.health.up_after, operator.health.strict) == (
        2,
        2,
        False,
    )
    assert operator.failover_on == (408, 500, 502, 503, 504)
    assert operator.setup_timeout == 3
    assert operator.caller_id == "off" and operator.media is None
    assert config.media_mode_for(operator) == "relay"
    assert [str(s) for s in operator.match_sources] == ["127.0.0.2/32"]
    assert config.routes == () and config.security.unknown_sources == "drop"
    assert config.security.max_message_bytes == 16384
    assert "friendly-scanner" in config.security.scanners.user_agents
    assert config.security.methods[0] == "INVITE"
    assert str(config.admin.listen) == "127.0.0.1:8080" and config.admin.token is None
    assert config.storage.cdr.startswith("sqlite:///")
    assert config.state == "memory"


def test_default_listen_and_empty_peers() -> None:
    config = parse("peers: {}")
    assert [str(e) for e in config.sbc.listen] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert config.peers == {}


def test_example_file_loads_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PKISS_ADMIN_TOKEN", raising=False)
    config = load_config(EXAMPLE)
    assert [str(e) for e in config.sbc.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert config.peer("operator").hosts[0].host == "127.0.0.2"
    assert config.peer("pbx").hosts[0].host == "127.0.0.3"
    assert "+3312345*" in config.peer("pbx").dids
    assert config.media.mode == "relay" and config.media.timeout == 60
    assert config.storage.cdr == "sqlite:///./pkiss-cdr.sqlite"
    assert str(config.admin.listen) == "127.0.0.1:8080" and config.admin.token


def test_documented_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACME_SIP_PASSWORD", "REMOTE1_PASSWORD", "PKISS_ADMIN_TOKEN"):
        monkeypatch.setenv(name, "x")
    section = DOCS.read_text(encoding="utf-8").split("## A complete example", 1)[1]
    config = parse_config(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert config.peer("tenant-globex").match.header == {"X-Tenant": "globex"}


def test_secrets_stay_out_of_repr(full: Config) -> None:
    assert "secret" not in repr(full) and "admin-token" not in repr(full)


def test_addresses_ipv6_default_ports_and_long_form() -> None:
    config = parse(
        """
        sbc:
          listen: ["udp:[::1]:5062", tls:0.0.0.0, tcp:0.0.0.0]
          tls: {cert: c.pem, key: k.pem}
        peers:
          a: {role: carrier, hosts: ["[2001:db8::1]:5070", 192.0.2.1]}
          b:
            role: pbx
            hosts: [{address: "[2001:DB8::2]", transport: tcp, priority: 2, weight: 3}]
        """
    )
    assert [(e.transport, e.host, e.port) for e in config.sbc.listen] == [
        ("udp", "::1", 5062),
        ("tls", "0.0.0.0", 5061),
        ("tcp", "0.0.0.0", 5060),
    ]
    assert str(config.sbc.listen[0]) == "udp:[::1]:5062"
    a, b = config.peer("a"), config.peer("b")
    assert [(h.host, h.port) for h in a.hosts] == [("2001:db8::1", 5070), ("192.0.2.1", 5060)]
    assert str(a.hosts[0].address) == "[2001:db8::1]:5070"
    assert [str(s) for s in a.match_sources] == ["2001:db8::1/128", "192.0.2.1/32"]
    host = b.hosts[0]
    assert isinstance(host, Host)
    assert (host.host, host.port, host.transport, host.priority, host.weight) == (
        "2001:db8::2",
        5060,
        "tcp",
        2,
        3,
    )


def test_match_sources_with_ports_tell_tenants_apart() -> None:
    config = parse(
        with_peers(
            """
            t1: {role: pbx, hosts: [10.0.0.20:5060], match: {source: ["10.0.0.20:5060"]}}
            t2: {role: pbx, hosts: [10.0.0.20:5070], match: {source: ["10.0.0.20:5070"]}}
            t3: {role: pbx, hosts: [10.0.0.20], match: {source: [10.0.0.20], header: {X-Tenant: c}}}
            t4: {role: pbx, hosts: [10.0.0.20], domain: d.example}
            v6: {role: pbx, hosts: [10.0.0.30], match: {source: ["[2001:db8::/32]:5060"]}}
            """
        )
    )
    source = config.peer("t2").match_sources[0]
    assert source.port == 5070
    assert source.matches(ipaddress.ip_address("10.0.0.20"), 5070)
    assert not source.matches(ipaddress.ip_address("10.0.0.20"), 5060)
    assert config.peer("t3").match.header == {"X-Tenant": "c"}
    v6 = config.peer("v6").match_sources[0]
    assert str(v6) == "[2001:db8::/32]:5060"


def test_health_false_disables_probes_and_yaml_booleans_are_true_false_only() -> None:
    config = parse(
        with_peers(
            """
            pbx:
              role: pbx
              hosts: [10.0.0.1]
              health: false
              caller_id: off
            """
        )
    )
    assert config.peer("pbx").health is None
    assert config.peer("pbx").caller_id == "off"


def test_environment_substitution() -> None:
    config = parse(
        with_peers(
            """
            t: {role: pbx, hosts: [10.0.0.1], match: {username: "${USER_}"}, password: "p-${PW}"}
            """,
            "admin: {token: '${TOKEN:-fallback}'}",
        ),
        USER_="u1",
        PW="x",
    )
    assert config.peer("t").match.username == "u1"
    assert config.peer("t").password == "p-x"
    assert config.admin.token == "fallback"


def test_config_objects_are_immutable() -> None:
    config = parse(PEERS)
    peer = config.peer("pbx")
    with pytest.raises(pydantic.ValidationError):
        peer.role = "carrier"
    with pytest.raises(TypeError):
        config.peers["x"] = peer  # type: ignore[index]
    assert isinstance(peer, Peer)
    assert parse(PEERS) == config


def test_lookup_helpers() -> None:
    config = parse(PEERS)
    assert config.peer("operator").role == "carrier"
    assert [p.name for p in config.peers_by_role("pbx")] == ["pbx"]
    with pytest.raises(KeyError, match="no peer named 'nope'"):
        config.peer("nope")


# --- errors, each at its YAML path ---------------------------------------------------------------


def test_unset_environment_variable_names_the_path() -> None:
    errors = errors_of(
        with_peers(
            """
            tenant-acme:
              role: pbx
              hosts: [10.0.0.20]
              match: {username: acme}
              password: ${ACME_SIP_PASSWORD}
            """
        )
    )
    assert errors == [
        "peers.tenant-acme.password: environment variable ACME_SIP_PASSWORD is not set"
    ]


def test_bad_host_addresses() -> None:
    errors = errors_of(
        with_peers(
            """
            pbx:
              role: pbx
              hosts: [10.0.0.1:5060, {address: "10.0.0.2:99999"}, {address: "10.0.0.3:x"}, "a b"]
            """
        )
    )
    assert errors == [
        "peers.pbx.hosts[1].address: not a host:port",
        "peers.pbx.hosts[2].address: not a host:port",
        "peers.pbx.hosts[3]: not a host:port",
    ]


def test_bad_listen_entries() -> None:
    errors = errors_of("sbc: {listen: [udp:0.0.0.0:5060, sctp:0.0.0.0:5060, udp:example.com:5060]}")
    assert errors == [
        "sbc.listen[1]: not transport:ip:port (e.g. udp:0.0.0.0:5060)",
        "sbc.listen[2]: not transport:ip:port (e.g. udp:0.0.0.0:5060)",
    ]


def test_tls_listener_needs_tls_section() -> None:
    assert errors_of("sbc: {listen: [udp:0.0.0.0:5060, tls:0.0.0.0:5061]}") == [
        "sbc.listen[1]: tls needs sbc.tls (cert and key)"
    ]


def test_misspelt_key_and_wrong_types() -> None:
    errors = errors_of(
        with_peers(
            """
            pbx:
              role: pbx
              hots: [10.0.0.1]
              dids: [+33555000111]
              setup_timeout: soon
            """,
            "security: {max_message_bytes: 512, unknown_sources: ignore}",
        )
    )
    assert errors == [
        "peers.pbx.hosts: required",
        "peers.pbx.setup_timeout: must be a number, not a string",
        "peers.pbx.dids[0]: must be a string, not a number (put it in quotes)",
        "peers.pbx.hots: unknown key (did you mean hosts?)",
        "security.unknown_sources: must be drop or reject, not 'ignore'",
        "security.max_message_bytes: must be at least 1024",
    ]


def test_wrong_role_and_empty_section() -> None:
    assert errors_of("peers:\n  x: {role: carier, hosts: [10.0.0.1]}\n") == [
        "peers.x.role: must be carrier or pbx, not 'carier'"
    ]
    assert errors_of("peers:\n") == ["peers: must be a mapping, not empty"]


def test_bad_dids() -> None:
    errors = errors_of(
        with_peers(
            'pbx: {role: pbx, hosts: [10.0.0.1], dids: ["+331-+3399", "+3399-+3310", "12a"]}'
        )
    )
    assert errors == [
        "peers.pbx.dids[0]: both ends of a range must have the same number of digits",
        "peers.pbx.dids[1]: a range must start at or below its end",
        "peers.pbx.dids[2]: not a DID: +33555000111 (exact), +3398765* (prefix)"
        " or +33100-+33199 (range)",
    ]


def test_did_owned_by_two_peers() -> None:
    errors = errors_of(
        with_peers(
            """
            a: {role: pbx, hosts: [10.0.0.1], dids: ["+33555000111", "+33100-+33199"]}
            b: {role: pbx, hosts: [10.0.0.2], dids: ["+33555000111", "+33150-+33250", "+3320*"]}
            """
        )
    )
    assert errors == [
        "peers.b.dids[0]: +33555000111 is already a DID of peer a",
        "peers.b.dids[1]: +33150-+33250 overlaps +33100-+33199 of peer a",
    ]


def test_bad_rewrite_rules() -> None:
    errors = errors_of(
        with_peers(
            r"""
            op:
              role: carrier
              hosts: [10.0.0.1]
              rewrite:
                inbound: [{match: '^0(\d{9}$', replace: '+33\1'}]
                outbound: [{match: '^0(\d{9})$', replace: '+33\2'}]
            """
        )
    )
    assert errors == [
        "peers.op.rewrite.inbound[0].match: not a valid regular expression:"
        " missing ), unterminated subpattern at position 2",
        "peers.op.rewrite.outbound[0].replace: not a valid replacement:"
        " invalid group reference 2 at position 4",
    ]


def test_route_needs_exactly_one_of_via_or_reject() -> None:
    errors = errors_of(
        PEERS
        + """
routes:
  - {prefix: "+33", via: [operator], reject: 403}
  - {prefix: "+44"}
  - {prefix: "+1", reject: 700}
  - {prefix: 44, via: [operator]}
"""
    )
    assert errors == [
        "routes[0]: needs exactly one of via (carrier names) or reject (a status code)",
        "routes[1]: needs exactly one of via (carrier names) or reject (a status code)",
        "routes[2].reject: must be at most 699",
        "routes[3].prefix: must be a string, not a number (put it in quotes)",
    ]


def test_via_must_name_carriers() -> None:
    errors = errors_of(
        PEERS
        + """
routes:
  - {prefix: "+33", via: [operator, nobody, pbx]}
  - {prefix: "+33", reject: 403}
"""
    )
    assert errors == [
        "routes[0].via[1]: no peer named nobody",
        "routes[0].via[2]: pbx is a pbx, not a carrier",
        "routes[1].prefix: '+33' already at routes[0]",
    ]


def test_keys_that_belong_to_the_other_role() -> None:
    errors = errors_of(
        with_peers(
            """
            op:
              role: carrier
              hosts: [10.0.0.1]
              dids: ["+331"]
              routes: [{prefix: "", reject: 403}]
              caller_id: enforce
            pbx:
              role: pbx
              hosts: [10.0.0.2]
              auth: {username: u, password: p}
              register: {username: u, password: p}
              routes: [{prefix: "", via: [pbx]}]
            """
        )
    )
    assert errors == [
        "peers.op.dids: only for pbx peers",
        "peers.op.routes: only for pbx peers",
        "peers.op.caller_id: only for pbx peers",
        "peers.pbx.register: only for carrier peers",
        "peers.pbx.auth.username: only for carrier peers",
        "peers.pbx.routes[0].via[0]: pbx is a pbx, not a carrier",
    ]


def test_username_password_and_registered_hosts() -> None:
    errors = errors_of(
        with_peers(
            """
            a: {role: pbx, hosts: [10.0.0.1], match: {username: a}}
            b: {role: pbx, hosts: [10.0.0.2], password: x}
            c: {role: carrier, hosts: registered, match: {username: c}, password: x}
            d: {role: pbx, hosts: registered}
            e: {role: pbx, hosts: []}
            """
        )
    )
    assert errors == [
        "peers.a.password: required with match.username",
        "peers.b.password: only used with match.username",
        "peers.c.hosts: registered is only for pbx peers",
        "peers.d.hosts: registered needs match.username (who registers)",
        "peers.e.hosts: must list at least one host",
    ]


def test_peers_that_cannot_be_told_apart() -> None:
    errors = errors_of(
        with_peers(
            """
            a: {role: pbx, hosts: [10.0.0.20]}
            b: {role: pbx, hosts: [10.0.0.20:5070]}
            c: {role: pbx, hosts: [10.0.0.30], match: {source: [10.0.0.0/24]}}
            r1: {role: pbx, hosts: registered, match: {username: r}, password: x}
            r2: {role: pbx, hosts: registered, match: {username: r}, password: y}
            """
        )
    )
    assert errors == [
        "peers.b.match: cannot be told apart from peer a"
        " (same source; give a different port, username, domain or header)",
        "peers.c.match: cannot be told apart from peer a"
        " (same source; give a different port, username, domain or header)",
        "peers.r2.match: cannot be told apart from peer r1"
        " (same source; give a different port, username, domain or header)",
    ]


def test_health_timeout_below_interval() -> None:
    errors = errors_of(
        with_peers(
            """
            a: {role: pbx, hosts: [10.0.0.1], health: {interval: 5, timeout: 5}}
            b: {role: pbx, hosts: [10.0.0.2], health: {interval: 1}}
            """
        )
    )
    assert errors == [
        "peers.a.health.timeout: must be less than health.interval (5 s)",
        "peers.b.health.timeout: must be less than health.interval (1 s)",
    ]


def test_empty_source_list() -> None:
    assert errors_of(with_peers("a: {role: pbx, hosts: [10.0.0.1], match: {source: []}}")) == [
        "peers.a.match.source: must not be empty (leave it out to match the peer's hosts)"
    ]


def test_host_names_need_explicit_sources() -> None:
    errors = errors_of(with_peers("op: {role: carrier, hosts: [sip.operator.example]}"))
    assert errors == [
        "peers.op.match.source: required, since hosts[0] is a name, not an IP address"
    ]


def test_source_with_host_bits_and_admin_without_token() -> None:
    errors = errors_of(
        with_peers(
            "op: {role: carrier, hosts: [10.0.0.1], match: {source: [10.0.0.5/24]}}",
            "admin: {listen: 0.0.0.0:8080}",
        )
    )
    assert errors == [
        "peers.op.match.source[0]: 10.0.0.5/24 has host bits set (did you mean 10.0.0.0/24?)"
    ]
    assert errors_of("admin: {listen: 0.0.0.0:8080}") == [
        "admin.token: required when admin.listen is not a loopback address"
    ]


def test_yaml_syntax_errors_give_line_and_column() -> None:
    assert errors_of("peers:\n  a: {role: pbx\n  b: 1\n") == [
        "test.yaml:3:4: expected ',' or '}', but got ':'"
    ]
    assert errors_of("peers:\n  a: {role: pbx, hosts: [10.0.0.1]}\n  a: {}\n") == [
        "test.yaml:3:3: duplicate key a"
    ]


def test_file_must_be_a_mapping() -> None:
    assert errors_of("- a\n- b\n") == ["test.yaml: must be a mapping of sections (sbc, peers, ...)"]
    assert errors_of("# nothing\n") == ["test.yaml: the file is empty"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")
    assert caught.value.errors == [
        f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    ]


def test_urls_in_logs_keep_no_password() -> None:
    from pkiss.config.urls import redacted

    assert (
        redacted("postgresql://cdr:s3cret@db.example/pkiss")
        == "postgresql://cdr:***@db.example/pkiss"
    )
    assert redacted("redis://:s3cret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("postgresql://pkiss@127.0.0.1/db") == "postgresql://pkiss@127.0.0.1/db"
    assert redacted("sqlite:///pkiss-cdr.sqlite") == "sqlite:///pkiss-cdr.sqlite"


@pytest.mark.parametrize(
    ("yaml_text", "error"),
    [
        ('state: "redis://127.0.0.1:notaport/0"', "state: not a valid URL (port)"),
        ('state: "redis:///0"', "state: a redis:// URL needs a host"),
        ('state: "redis://127.0.0.1/zero"', "state: the database of a redis:// URL is a number"),
        ('storage: {cdr: "postgresql://u:p@db:99x/pkiss"}', "storage.cdr: not a valid URL (port)"),
        ('storage: {cdr: "postgresql:///pkiss"}', "storage.cdr: a postgresql:// URL needs a host"),
    ],
)
def test_state_and_storage_urls_are_checked_before_the_node_starts(
    yaml_text: str, error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text + "\n")
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors


def test_good_state_and_storage_urls_pass() -> None:
    config = parse_config(
        'state: "redis://:secret@10.0.0.5:6379/2"\n'
        'storage: {cdr: "postgresql://cdr:pw@db.example:5432/pkiss"}\n'
    )
    assert config.state.endswith("/2") and config.storage.cdr.startswith("postgresql://")


# --- media.learn ---------------------------------------------------------------------------------


def test_media_learn_defaults_to_signalled_and_takes_first_packet() -> None:
    assert parse(PEERS).media.learn == "signalled"
    assert parse(PEERS + "media: {learn: first-packet}\n").media.learn == "first-packet"
    assert parse(PEERS + "media: {learn: signalled}\n").media.learn == "signalled"


@pytest.mark.parametrize(
    ("value", "shown"), [("always", "'always'"), ("first_packet", "'first_packet'"), ("1", "1")]
)
def test_a_bad_media_learn_names_the_field(value: str, shown: str) -> None:
    assert errors_of(PEERS + f"media: {{learn: {value}}}\n") == [
        f"media.learn: must be signalled or first-packet, not {shown}"
    ]


def test_auth_algorithms() -> None:
    errors = errors_of(
        with_peers(
            """
            c: {role: pbx, hosts: [10.0.0.3], match: {username: c}, password: x,
                auth: {algorithms: [SHA1]}}
            d: {role: carrier, hosts: [10.0.0.4], auth: {username: u}}
            """
        )
    )
    assert errors == [
        "peers.c.auth.algorithms[0]: must be MD5 or SHA-256, not 'SHA1'",
        "peers.d.auth: username and password go together (the answer to a carrier's challenge)",
    ]
    errors = errors_of(
        with_peers(
            """
            a: {role: pbx, hosts: [10.0.0.1], match: {username: a}, password: x,
                auth: {algorithms: [SHA-256, MD5]}}
            b: {role: pbx, hosts: [10.0.0.2], auth: {algorithms: [SHA-256]}}
            """
        )
    )
    assert errors == [
        "peers.b.auth.algorithms: only used with match.username (the peers the SBC challenges)"
    ]
