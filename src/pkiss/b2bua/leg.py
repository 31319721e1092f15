"""One leg of a call: the SBC's side of one SIP dialog (RFC 3261 §12), with its own Call-ID,
tags, CSeq space, Contact and Via. Legs never share any of these: that is topology hiding.

A leg sends its in-dialog requests to the address the dialog was set up with (``dest``), not to
the peer's Contact: peers are known hosts, and latching keeps calls working behind NAT.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..sip.dialog import Dialog
from ..sip.ids import new_branch
from ..sip.message import Header, Request
from ..sip.transaction import Addr
from ..transport.listeners import LocalAddress

__all__ = ["Leg", "LocalAddress"]


class Leg(Dialog):
    """One side of a call: its dialog, the peer it belongs to, where its requests go
    (``dest``) and the SBC's own address on that side (``local``)."""

    __slots__ = ("confirmed", "dest", "local", "peer", "reinvite_pending", "side")

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
        super().__init__(call_id, local_tag, local_party, remote_party, remote_target, local_cseq)
        self.side = side
        self.peer = peer
        self.dest = dest
        self.local = local
        self.confirmed = False
        self.reinvite_pending = False  # a re-INVITE from this leg awaits its answer (§14.1)

    def request(
        self,
        method: str,
        *,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> Request:
        """A request within this leg's dialog, with the SBC's Via (fresh branch) and Contact."""
        return self.build(
            method, self.local.via(new_branch()), contact=self.local.contact, headers=headers,
            body=body, cseq=cseq, max_forwards=max_forwards,
        )  # fmt: skip

    def ack(self, invite_cseq: int, body: bytes = b"", headers: Sequence[Header] = ()) -> Request:
        """The ACK for a 2xx to our INVITE with that CSeq number (§13.2.2.4)."""
        return self.request("ACK", cseq=invite_cseq, body=body, headers=headers)
