"""Rules that span several fields or sections of a configuration.

Each rule appends ``yaml.path: message`` lines; `check` returns them all, so a user sees every
problem of a file at once. The schema has already validated each field on its own.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pkiss.config.schema import is_ip

if TYPE_CHECKING:
    from pkiss.config.schema import Config, Peer, Route


def check(config: Config) -> list[str]:
    """Every cross-field problem of `config`, as ``yaml.path: message`` lines."""
    errors: list[str] = []
    _check_sbc(config, errors)
    for name, peer in config.peers.items():
        _check_peer(f"peers.{name}", peer, errors)
        if peer.routes is not None and peer.role == "pbx":
            _check_routes(f"peers.{name}.routes", peer.routes, config, errors)
    _check_routes("routes", config.routes, config, errors)
    _check_attribution(config, errors)
    _check_dids(config, errors)
    _check_admin(config, errors)
    return errors


def _check_sbc(config: Config, errors: list[str]) -> None:
    seen: set[str] = set()
    for i, endpoint in enumerate(config.sbc.listen):
        if endpoint.transport == "tls" and config.sbc.tls is None:
            errors.append(f"sbc.listen[{i}]: tls needs sbc.tls (cert and key)")
        if str(endpoint) in seen:
            errors.append(f"sbc.listen[{i}]: listed twice")
        seen.add(str(endpoint))


def _check_peer(path: str, peer: Peer, errors: list[str]) -> None:
    if peer.registered:
        if peer.role != "pbx":
            errors.append(f"{path}.hosts: registered is only for pbx peers")
        elif peer.match.username is None:
            errors.append(f"{path}.hosts: registered needs match.username (who registers)")
    elif not peer.hosts:
        errors.append(f"{path}.hosts: must list at least one host")
    if peer.match.source is None:
        for i, host in enumerate(peer.hosts):
            if not is_ip(host.host):
                errors.append(
                    f"{path}.match.source: required, since hosts[{i}] is a name, not an IP address"
                )
                break

    if peer.role == "pbx":
        misplaced = {
            "register": peer.registration is not None,
            "auth.username": peer.auth is not None and peer.auth.username is not None,
        }
    else:
        misplaced = {
            "dids": bool(peer.dids),
            "routes": peer.routes is not None,
            "caller_id": peer.caller_id == "enforce",
        }
    only = "carrier" if peer.role == "pbx" else "pbx"
    errors.extend(f"{path}.{key}: only for {only} peers" for key, bad in misplaced.items() if bad)

    if peer.match.username is not None and peer.password is None:
        errors.append(f"{path}.password: required with match.username")
    if peer.match.username is None and peer.password is not None:
        errors.append(f"{path}.password: only used with match.username")
    if peer.auth is not None and peer.auth.algorithms != ("MD5",) and not peer.match.username:
        errors.append(f"{path}.auth.algorithms: only used with match.username (the peers the "
                      "SBC challenges)")  # fmt: skip
    if peer.caller_id == "enforce" and not peer.dids and peer.role == "pbx":
        errors.append(f"{path}.caller_id: enforce needs dids")


def _check_routes(path: str, routes: tuple[Route, ...], config: Config, errors: list[str]) -> None:
    prefixes: dict[str, int] = {}
    for i, route in enumerate(routes):
        if route.prefix in prefixes:
            errors.append(
                f"{path}[{i}].prefix: {route.prefix!r} already at {path}[{prefixes[route.prefix]}]"
            )
        prefixes.setdefault(route.prefix, i)
        for j, name in enumerate(route.via):
            peer = config.peers.get(name)
            if peer is None:
                errors.append(f"{path}[{i}].via[{j}]: no peer named {name}")
            elif peer.role != "carrier":
                errors.append(f"{path}[{i}].via[{j}]: {name} is a {peer.role}, not a carrier")


def _check_attribution(config: Config, errors: list[str]) -> None:
    """Two peers must differ by source (address or port), username, domain or header."""
    # A peer with neither sources nor username has an error reported already.
    peers = [p for p in config.peers.values() if p.match_sources or p.match.username]
    for i, peer in enumerate(peers):
        for other in peers[:i]:
            same_source = (
                not peer.match_sources
                or not other.match_sources
                or any(a.overlaps(b) for a in peer.match_sources for b in other.match_sources)
            )
            if (
                same_source
                and peer.match.username == other.match.username
                and peer.match_domain == other.match_domain
                and dict(peer.match.header) == dict(other.match.header)
            ):
                errors.append(
                    f"peers.{peer.name}.match: cannot be told apart from peer {other.name}"
                    " (same source; give a different port, username, domain or header)"
                )
                break


def _check_dids(config: Config, errors: list[str]) -> None:
    """A number belongs to one PBX: no DID twice, no overlapping ranges."""
    owners: dict[str, str] = {}
    ranges: list[tuple[str, str, str, str]] = []  # low, high, owner, as written
    for name, peer in config.peers.items():
        for i, did in enumerate(peer.dids):
            path = f"peers.{name}.dids[{i}]"
            owner = owners.setdefault(did, name)
            if owner != name:
                errors.append(f"{path}: {did} is already a DID of peer {owner}")
            elif did in peer.dids[:i]:
                errors.append(f"{path}: {did} listed twice")
            low, dash, high = did.partition("-")
            if not dash or owner != name:
                continue
            for other_low, other_high, other, text in ranges:
                same_length = len(low) == len(other_low)
                if other != name and same_length and low <= other_high and other_low <= high:
                    errors.append(f"{path}: {did} overlaps {text} of peer {other}")
            ranges.append((low, high, name, did))


def _check_admin(config: Config, errors: list[str]) -> None:
    host = config.admin.listen.host
    loopback = host == "localhost" or (is_ip(host) and ipaddress.ip_address(host).is_loopback)
    if config.admin.token is None and not loopback:
        errors.append("admin.token: required when admin.listen is not a loopback address")
