"""Every use-case config in docs/configuration.md loads: the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pkiss.config import parse_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_SECTION = DOCS.read_text(encoding="utf-8").split("## Use cases, ready to paste", 1)[1]
_SECTION = _SECTION.split("## A complete example", 1)[0]
BLOCKS = re.findall(r"^### (.+?)\n.*?```yaml\n(.*?)```", _SECTION, re.S | re.M)


def test_all_six_use_cases_are_shown() -> None:
    assert len(BLOCKS) == 6


@pytest.mark.parametrize(("title", "text"), BLOCKS, ids=[t for t, _ in BLOCKS])
def test_use_case_config_is_valid(title: str, text: str) -> None:
    config = parse_config(text, source=title, environ={})
    assert config.peers
