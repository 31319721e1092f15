"""The configuration: the YAML schema, loading, and validation with errors naming YAML paths.

    load_config(path) / parse_config(text) -> Config   (frozen, fully validated)
    ConfigError(Exception)                              .errors: ["yaml.path: message", ...]

A reload builds a new `Config` and swaps it; calls in progress keep the one they started with.
"""

from pkiss.config.errors import ConfigError
from pkiss.config.loader import load_config, parse_config
from pkiss.config.schema import (
    Address,
    Admin,
    AuthFailures,
    Config,
    Connections,
    Credentials,
    Endpoint,
    Flood,
    Health,
    Host,
    Limits,
    Logging,
    Match,
    Media,
    MediaMode,
    Peer,
    PortRange,
    Registration,
    Rewrite,
    Rewrites,
    Role,
    Route,
    Sbc,
    Scanners,
    Security,
    SessionTimer,
    Source,
    Storage,
    Tls,
    Transport,
)

__all__ = [
    "Address",
    "Admin",
    "AuthFailures",
    "Config",
    "ConfigError",
    "Connections",
    "Credentials",
    "Endpoint",
    "Flood",
    "Health",
    "Host",
    "Limits",
    "Logging",
    "Match",
    "Media",
    "MediaMode",
    "Peer",
    "PortRange",
    "Registration",
    "Rewrite",
    "Rewrites",
    "Role",
    "Route",
    "Sbc",
    "Scanners",
    "Security",
    "SessionTimer",
    "Source",
    "Storage",
    "Tls",
    "Transport",
    "load_config",
    "parse_config",
]
