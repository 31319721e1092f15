"""The PROTOS c07-sip r2 test cases (University of Oulu, OUSPG; GPL-2), ready to send.

The corpus keeps the 4,527 cases in ``protos-c07-sip/c07-sip-r2-testcases.tar.gz`` (see the
corpus's SOURCES.md §3). Each case file holds two records, ``<decimal length><SP><bytes>``: the
INVITE under test, then the teardown request (CANCEL or ACK). Both are templates whose
placeholders (``<To>``, ``<From>``, ``<Call-ID>``...) the sender fills in, as the original Java
tool did: Content-Length from the body it actually sends, a Call-ID and a branch unique per case.

The archive is read in memory, never extracted. The parser tests and the end-to-end tests (which
send the same cases over UDP to a running SBC) share this module.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import NamedTuple

__all__ = ["ARCHIVE", "CASE_COUNT", "ProtosCase", "corpus_dir", "load_cases", "load_protos"]

ARCHIVE = "protos-c07-sip/c07-sip-r2-testcases.tar.gz"
CASE_COUNT = 4527
_REPO_ROOT = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    """The corpus folder: ``$PKISS_CORPUS``, else ``../shared/corpus`` next to the repository."""
    env = os.environ.get("PKISS_CORPUS")
    return Path(env) if env else (_REPO_ROOT.parent / "shared" / "corpus").resolve()


class ProtosCase(NamedTuple):
    number: int
    invite: bytes
    """The INVITE under test, placeholders substituted."""
    teardown: bytes
    """The request that ends the attempt (CANCEL or ACK), placeholders substituted."""


def _records(data: bytes, name: str) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        out.append(data[sp + 1 : sp + 1 + length])
        pos = sp + 1 + length
    if len(out) != 2 or pos != len(data):
        raise ValueError(f"{name}: expected two length-prefixed records")
    return out


def _body_length(message: bytes) -> int:
    end = message.find(b"\r\n\r\n")
    return 0 if end < 0 else len(message) - end - 4


def _fill(template: bytes, subst: dict[bytes, bytes]) -> bytes:
    for placeholder, value in subst.items():
        if placeholder in template:
            template = template.replace(placeholder, value)
    if b"<Content-Length>" in template:
        # Substituted last: the body is final by then, and the header is not part of it.
        length = _body_length(template.replace(b"<Content-Length>", b""))
        template = template.replace(b"<Content-Length>", str(length).encode())
    return template


def load_protos(
    corpus: str | os.PathLike[str] | None = None,
    *,
    to: str = "user@127.0.0.1",
    from_: str = "user@127.0.0.2",
    from_ip: str = "127.0.0.2",
    local_port: int = 5060,
    teardown_method: str = "CANCEL",
) -> list[ProtosCase]:
    """Every case, in number order, with its placeholders filled in.

    ``to`` is the Request-URI / To target without ``sip:`` (the SBC under test), ``from_`` the
    sender's AOR, ``from_ip``/``local_port`` where the sender listens (Via, Contact, SDP)."""
    path = Path(corpus_dir() if corpus is None else corpus) / ARCHIVE
    with open(path, "rb") as f:
        archive = f.read()
    common = {
        b"<To>": to.encode(),
        b"<From>": from_.encode(),
        b"<From-Address>": from_ip.encode(),
        b"<From-IP>": from_ip.encode(),
        b"<Local-Port>": str(local_port).encode(),
        b"<CSeq>": b"1",
        b"<Teardown-Method>": teardown_method.encode(),
    }
    cases = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            number = int(member.name.rsplit("/", 1)[-1])
            f = tar.extractfile(member)
            assert f is not None
            invite, teardown = _records(f.read(), member.name)
            subst = dict(common)
            # The original tool increments Call-ID and branch per case: make them unique.
            subst[b"<Call-ID>"] = f"protos{number:07d}".encode()
            subst[b"<Branch-ID>"] = f"x{number:07d}".encode()
            cases.append(ProtosCase(number, _fill(invite, subst), _fill(teardown, subst)))
    cases.sort()
    return cases


def load_cases(corpus: str | os.PathLike[str] | None = None) -> list[tuple[int, bytes]]:
    """``(case number, substituted INVITE)`` for every case; see ``load_protos`` for more."""
    return [(c.number, c.invite) for c in load_protos(corpus)]
