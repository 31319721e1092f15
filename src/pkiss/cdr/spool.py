"""The CDR spool: records written to disk before the database has them, so that a node killed
while its database is down loses none of the calls that had ended before its last batch.

One append-only file of lines, each line one record as a JSON array (``COLUMNS`` order,
times as Unix time). A line an earlier version wrote has fewer values (``EARLIER_WIDTHS``:
the columns it knew, the first ones): it is read with None for the others. A batch is
appended and ``fsync``-ed once; once the database has its records, the spool is truncated
(everything inserted) or its committed offset moves (a long backlog replayed in parts), in
``<path>.done``. Lines at or past that offset are what
the database does not have yet; they are replayed when it answers. Inserts ignore a record
whose ``uid`` is there already, so replaying what was inserted just before a kill adds
nothing twice.

Bounded by size: a batch that would take the file beyond ``max_bytes`` is refused, whole or
in part (the caller counts and logs what was refused: never silent). A half-written last
line (a crash in the middle of a write) is cut off when the spool opens.

Everything here blocks: it runs in the CDR writer's worker thread, never on the event loop.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .table import COLUMNS, EARLIER_WIDTHS, TIMES

__all__ = ["Spool", "SpoolError"]

log = logging.getLogger("pkiss.cdr")

Row = tuple[Any, ...]


class SpoolError(OSError):
    """The spool cannot be used (another process holds it, a folder that cannot be made):
    the node does not start."""


class Spool:
    """One spool file, locked by this process while it is open."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.done_path = path.with_name(path.name + ".done")
        self.max_bytes = max_bytes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise SpoolError(f"CDR spool {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise SpoolError(f"CDR spool {path} is used by another process: give each node "
                             "its own storage.cdr_spool.path") from None  # fmt: skip
        self.size = self._cut_partial_tail()
        self.done = self._read_done()
        self.skipped = 0
        """Lines that could not be read back (not a record): left out of the replay."""

    def _cut_partial_tail(self) -> int:
        """The file's size once a last line without its end (a write cut short) is cut off."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        end = size
        step = 4096
        while end > 0:
            start = max(0, end - step)
            chunk = os.pread(self._fd, end - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep != size:
            log.warning("CDR spool %s: %d bytes of a record cut short by a stop ignored",
                        self.path, size - keep)  # fmt: skip
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
        return keep

    def _read_done(self) -> int:
        try:
            text = self.done_path.read_text().strip()
        except FileNotFoundError:
            return 0
        done = int(text) if text.isdigit() else 0
        # an offset beyond the file: the file was truncated after everything was inserted
        return done if done <= self.size else 0

    @property
    def backlog_bytes(self) -> int:
        """Bytes of records the database does not have yet."""
        return self.size - self.done

    def append(self, rows: Sequence[Row]) -> int:
        """Write ``rows`` (each ``COLUMNS`` values) and fsync once; how many were written (a
        prefix of ``rows``: those that fit under ``max_bytes``)."""
        lines = list(map(encode, rows))
        room = self.max_bytes - self.size
        taken = 0
        length = 0
        for line in lines:
            if length + len(line) > room:
                break
            length += len(line)
            taken += 1
        if taken:
            data = b"".join(lines[:taken])
            written = 0
            try:
                while written < len(data):
                    written += os.write(self._fd, data[written:])
                os.fsync(self._fd)
            except OSError:
                # a disk full: no piece of a line before the next batch's lines
                os.ftruncate(self._fd, self.size)
                raise
            self.size += length
        return taken

    def read(self, limit: int) -> tuple[list[Row], int]:
        """At most ``limit`` records the database does not have yet, oldest first, and the
        offset to ``commit`` once they are inserted."""
        rows: list[Row] = []
        offset = self.done
        chunk = 1 << 20
        while len(rows) < limit and offset < self.size:
            data = os.pread(self._fd, min(chunk, self.size - offset), offset)
            end = data.rfind(b"\n")
            if end < 0:  # one line longer than the chunk: read more of it at once
                chunk *= 2
                continue
            for line in data[: end + 1].splitlines(keepends=True):
                if len(rows) >= limit:
                    break
                offset += len(line)
                row = decode(line)
                if row is None:
                    self.skipped += 1
                    log.error("CDR spool %s: a line that is not a record, skipped", self.path)
                else:
                    rows.append(row)
        return rows, offset

    def commit(self, offset: int) -> None:
        """The database has every record before ``offset``: all of them, the file is emptied;
        else the offset is written (atomically: a new file renamed over the old)."""
        if offset >= self.size:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.size = 0
            if self.done:
                self._write_done(0)
            self.done = 0
            return
        self._write_done(offset)
        self.done = offset

    def _write_done(self, offset: int) -> None:
        temp = self.done_path.with_name(self.done_path.name + ".tmp")
        with temp.open("w") as f:
            f.write(f"{offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.done_path)
        folder = os.open(self.done_path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def close(self) -> None:
        os.close(self._fd)  # the lock goes with it


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""One encoder for every line: ``json.dumps`` with options builds one a call."""


def encode(row: Row) -> bytes:
    """One record as a spool line; times as Unix time (seconds, UTC): a third of the cost of
    ISO 8601 text, in a thread that shares the interpreter with the event loop."""
    values = list(row)
    for i in TIMES:
        at = values[i]
        if at is not None:
            values[i] = at.timestamp()
    return _encode(values).encode() + b"\n"


def decode(line: bytes) -> Row | None:
    """A spool line's record, times as ``datetime`` (UTC); None for a line that is not one."""
    try:
        values = json.loads(line)
    except ValueError:
        return None
    if not isinstance(values, list):
        return None
    if len(values) != len(COLUMNS):
        if len(values) not in EARLIER_WIDTHS:
            return None
        values += [None] * (len(COLUMNS) - len(values))
    try:
        for i in TIMES:
            if values[i] is not None:
                values[i] = datetime.fromtimestamp(values[i], UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return tuple(values)
