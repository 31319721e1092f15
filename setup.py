"""Build script: compiles the hot modules with mypyc, unless PKISS_PURE=1.

The metadata lives in pyproject.toml; this file only adds the C extensions. The build backend
(tools/build_backend.py) puts mypy among the build requirements unless PKISS_PURE=1. Each
compiled module keeps its .py beside its .so: Python imports the .so when there is one, so
deleting the .so files (``make clean``) gives the pure-Python package back.

    PKISS_PURE=1          build nothing: the pure-Python package
    PKISS_MYPYC=sip,...   the groups to compile (default: all of GROUPS)
    PKISS_MYPYC_OPT=3     the C compiler's optimisation level
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

SRC = Path(__file__).resolve().parent / "src"

# Groups of modules compiled with mypyc, in the order they were brought in. PKISS_MYPYC picks
# the groups (comma-separated, default: all of them).
GROUPS: dict[str, list[str]] = {
    "sip": ["pkiss/sip"],
    "b2bua": ["pkiss/b2bua", "pkiss/core"],
    "routing": ["pkiss/routing", "pkiss/sdp"],
    "driver": ["pkiss/engine", "pkiss/security"],
}

# Modules that stay pure Python inside a compiled group (see docs/mypyc.md).
EXCLUDE: set[str] = {"pkiss/security/connections.py"}


def _modules(groups: list[str]) -> list[str]:
    files: list[str] = []
    for group in groups:
        for entry in GROUPS[group]:
            path = SRC / entry
            found = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
            for file in found:
                rel = file.relative_to(SRC).as_posix()
                if rel not in EXCLUDE:
                    files.append(str(Path("src") / rel))
    return files


def _ext_modules() -> list[object]:
    if os.environ.get("PKISS_PURE", "") not in ("", "0"):
        return []
    if {"egg_info", "dist_info"} & set(sys.argv) and "build_ext" not in sys.argv:
        return []  # the metadata step of pip: mypyc would type-check and write the C for nothing
    from mypyc.build import mypycify

    wanted = os.environ.get("PKISS_MYPYC", "") or ",".join(GROUPS)
    groups = [g.strip() for g in wanted.split(",") if g.strip()]
    return mypycify(
        ["--config-file", "pyproject.toml", *_modules(groups)],
        opt_level=os.environ.get("PKISS_MYPYC_OPT", "3"),
        multi_file=False,
    )


setup(ext_modules=_ext_modules())
