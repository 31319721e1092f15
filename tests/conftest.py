"""A module compiled by mypyc (setup.py) is imported from its .so, never from its .py: after an
edit, a checkout or a pull, the tests would run the old code. They refuse to."""

from __future__ import annotations

from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def pytest_configure(config: pytest.Config) -> None:
    stale = []
    for ext in SRC.rglob("*.so"):
        source = ext.with_name(ext.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
            stale.append(str(source.relative_to(SRC)))
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their source ({', '.join(sorted(stale)[:5])}...): "
            "rebuild them (make install-test), or delete them for the pure-Python code "
            "(find src -name '*.so' -delete)"
        )
