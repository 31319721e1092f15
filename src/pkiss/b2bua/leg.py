"""One leg of a call: the SBC's side of one SIP dialog (RFC 3261 §12), with its own Call-ID,
tags, CSeq space, Contact and Via. Legs never share any of these: that is topology hiding.

A leg sends its in-dialog requests to the address the dialog was set up with (``dest``), not to
the peer's Contact: peers are known hosts, and latching keeps calls working behind NAT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..sip.headers import Via
from ..sip.ids import new_branch
from ..sip.message import Header, Request, Response
from ..sip.transaction import Addr
from ..sip.uri import format_host

__all__ = ["Leg", "LocalAddress"]


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """The SBC's own address on one transport, as written in Via and Contact."""

    transport: str
    host: str
    port: int

    def via(self, branch: str) -> Via:
        return Via(self.transport.upper(), format_host(self.host), self.port,
                   (("branch", branch), ("rport", None)))  # fmt: skip

    @property
    def contact(self) -> str:
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"<sip:{format_host(self.host)}:{self.port}{suffix}>"

    @property
    def hostport(self) -> str:
        return f"{format_host(self.host)}:{self.port}"


class Leg:
    """Dialog state of one side. ``local_party``/``remote_party`` are From/To values without
    tags, as this leg writes them in requests it sends."""

    __slots__ = (
        "call_id",
        "confirmed",
        "dest",
        "local",
        "local_cseq",
        "local_party",
        "local_tag",
        "peer",
        "remote_cseq",
        "remote_party",
        "remote_tag",
        "remote_target",
        "route_set",
        "side",
    )

    def __init__(
        self,
        side: str,
        peer: str,
        call_id: str,
        local_tag: str,
        local_party: str,
        remote_party: str,
        remote_target: str,
        dest: Addr,
        local: LocalAddress,
        local_cseq: int = 1,
    ) -> None:
        self.side = side
        self.peer = peer
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag: str | None = None
        self.local_party = local_party
        self.remote_party = remote_party
        self.remote_target = remote_target
        self.route_set: list[str] = []
        self.dest = dest
        self.local = local
        self.local_cseq = local_cseq
        self.remote_cseq: int | None = None
        self.confirmed = False

    def _from_to(self) -> tuple[str, str]:
        to = self.remote_party
        if self.remote_tag:
            to = f"{to};tag={self.remote_tag}"
        return f"{self.local_party};tag={self.local_tag}", to

    def request(
        self,
        method: str,
        *,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> Request:
        """A new request within this dialog (§12.2.1.1): next CSeq (unless given), route set,
        fresh branch, our Contact for target-refreshing methods."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        from_value, to_value = self._from_to()
        via = self.local.via(new_branch())
        out: list[Header] = [
            ("Via", str(via)),
            ("Max-Forwards", str(max_forwards)),
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        out.extend(("Route", r) for r in self.route_set)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            out.append(("Contact", self.local.contact))
        out.extend(headers)
        request = Request(method, self.remote_target, out, body)
        request.seed_via([via])
        return request

    def ack(self, invite_cseq: int, body: bytes = b"", headers: Sequence[Header] = ()) -> Request:
        """The ACK for a 2xx to our INVITE with that CSeq number (§13.2.2.4)."""
        return self.request("ACK", cseq=invite_cseq, body=body, headers=headers)

    def learn_from_response(self, response: Response) -> None:
        """Early or confirmed dialog state from a 1xx-with-tag or 2xx to our INVITE (§12.1.2)."""
        to = response.to
        if to is not None and to.tag:
            self.remote_tag = to.tag
        contact = response.contact
        if contact and contact[0].uri is not None:
            self.remote_target = str(contact[0].uri)
        rr = response.header_lines("record-route")
        if rr:
            self.route_set = list(reversed(response.values("record-route")))

    def learn_from_request(self, request: Request) -> None:
        """Target refresh from a request the peer sent in this dialog (§12.2.2)."""
        contact = request.contact
        if contact and contact[0].uri is not None:
            self.remote_target = str(contact[0].uri)
