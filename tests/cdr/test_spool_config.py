"""``storage.cdr_spool``: where the spool is by default, and its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkiss.config import ConfigError, parse_config


def storage(text: str) -> str:
    return f"peers: {{}}\nstorage:\n{text}"


def test_the_spool_is_next_to_the_sqlite_file_by_default() -> None:
    config = parse_config(storage("  cdr: sqlite:////var/lib/pkiss/cdr.sqlite\n"))
    assert config.storage.cdr_spool_path() == Path("/var/lib/pkiss/cdr.sqlite.spool")
    assert config.storage.cdr_spool.max_bytes == 256 * 1024 * 1024


def test_with_postgresql_the_spool_is_in_the_working_directory_unless_named() -> None:
    config = parse_config(storage("  cdr: postgresql://pkiss@db.example/cdr\n"))
    assert config.storage.cdr_spool_path() == Path("pkiss-cdr.spool")
    spool = "  cdr_spool: {path: /var/spool/pkiss/cdr, max_bytes: 1048576}\n"
    named = parse_config(storage("  cdr: postgresql://pkiss@db.example/cdr\n" + spool))
    assert named.storage.cdr_spool_path() == Path("/var/spool/pkiss/cdr")
    assert named.storage.cdr_spool.max_bytes == 1048576


def test_a_bad_spool_setting_is_refused_with_its_yaml_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(storage("  cdr_spool: {max_bytes: 10, size: 5}\n"))
    assert caught.value.errors == [
        "storage.cdr_spool.max_bytes: must be at least 4096",
        "storage.cdr_spool.size: unknown key",
    ]
