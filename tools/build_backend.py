"""The build backend: setuptools, plus mypy (for mypyc) among the build requirements unless
PKISS_PURE=1 asks for the plain Python package (setup.py then compiles nothing)."""

from __future__ import annotations

import os
from typing import Any

from setuptools.build_meta import *  # noqa: F403  (the PEP 517/660 hooks left as they are)

# The mypy that compiles the hot modules: one fixed version, so that every build of a given
# commit produces the same C code.
MYPYC = "mypy==2.4.1"
# mypyc type-checks what the compiled modules import, pkiss.config with it: the packages that
# give those imports their types (as in pyproject.toml's dependencies and test extra).
TYPED = ["pydantic>=2.6,<3", "types-PyYAML>=6,<7"]


def _pure() -> bool:
    return os.environ.get("PKISS_PURE", "") not in ("", "0")


def _mypyc() -> list[str]:
    return [] if _pure() else [MYPYC, *TYPED]


# setuptools' own hooks would run setup.py to find its setup_requires: setup.py needs mypyc,
# which is what these hooks ask for. pkiss has no setup_requires.
def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _mypyc()


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _mypyc()
