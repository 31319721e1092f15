"""The one exception of the config package."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """A configuration pkiss cannot run with.

    `errors` holds one line per problem, each ``yaml.path: message`` (for example
    ``peers.pbx.hosts[1].address: not a host:port``), or ``file:line:column: message`` for a
    YAML syntax error. ``str(error)`` is those lines joined by newlines.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))
