"""The A-leg: the node as UAS toward the caller. It answers the caller's INVITE (one final
response, ever), relays provisionals to it, reliably when the caller supports 100rel (RFC
3262: the A-leg's own RSeq space, retransmitted from T1 doubling until PRACKed, given up after
64*T1), and maps the caller's PRACKs back to the callee side's RSeq."""

from __future__ import annotations

from dataclasses import dataclass

from ..outbox import Outbox
from ..sip.headers import parse_name_addr
from ..sip.ids import new_tag
from ..sip.message import Header, Request, Response, make_response, reason_phrase
from ..sip.transaction import Addr
from ..transport.listeners import LocalAddress
from .leg import Leg

__all__ = ["UasLeg", "Unacked"]


@dataclass(slots=True)
class Unacked:
    """A reliable provisional sent to the caller, not PRACKed yet."""

    response: Response
    interval: float
    due: float
    give_up: float


class UasLeg(Leg):
    __slots__ = ("final_sent", "final_status", "invite", "key", "reliable", "rseq", "rseq_map",
                 "unacked")  # fmt: skip

    def __init__(self, peer: str, invite: Request, key: str | None, local_tag: str,
                 remote_target: str, dest: Addr, local: LocalAddress, remote_party: str,
                 reliable: bool) -> None:  # fmt: skip
        super().__init__(
            "A", peer, invite.call_id or "", local_tag,
            local_party=invite.header("to") or "", remote_party=remote_party,
            remote_target=remote_target, dest=dest, local=local,
        )  # fmt: skip
        self.invite = invite
        self.key = key  # the caller's INVITE server transaction
        self.reliable = reliable  # the caller supports 100rel
        self.final_sent = False
        self.final_status = 0  # the final response the caller got (0: none yet)
        self.rseq = 0
        self.rseq_map: dict[int, int] = {}  # A-leg RSeq -> the callee side's
        self.unacked: dict[int, Unacked] = {}

    @classmethod
    def of_invite(cls, peer: str, invite: Request, key: str | None, source: Addr,
                  local: LocalAddress) -> UasLeg:  # fmt: skip
        """The A-leg of a new INVITE from ``source``: the caller's party, tag, CSeq, route
        set and Contact as it sent them, a new tag of the node's."""
        frm = invite.from_
        assert frm is not None and invite.to is not None
        contact = invite.contact
        a = cls(
            peer, invite, key, new_tag(),
            remote_target=str(contact[0].uri) if contact and contact[0].uri else str(frm.uri),
            dest=source, local=local, remote_party=_strip_tag(invite.header("from") or ""),
            reliable=_has_option(invite, "supported", "100rel")
            or _has_option(invite, "require", "100rel"),
        )  # fmt: skip
        a.remote_tag = frm.tag
        a.remote_cseq = invite.cseq.seq if invite.cseq else None
        a.route_set = invite.values("record-route")
        return a

    def final(
        self, status: int, now: float, out: Outbox, *, reason: str | None = None,
        headers: list[Header] | None = None, body: bytes = b"",
    ) -> bool:  # fmt: skip
        """The caller's one final response; False when it already had one."""
        if self.final_sent:
            return False
        self.final_sent = True
        self.final_status = status
        headers = headers or []
        if status < 300:
            headers = [*self._record_route(), *headers]
        response = make_response(self.invite, status, reason, to_tag=self.local_tag,
                                 headers=headers, body=body)  # fmt: skip
        if body:
            self.sdp = body
        out.respond(self.key, response, now)
        return True

    def provisional(
        self, status: int, headers: list[Header], body: bytes, b_rseq: int | None, now: float,
        out: Outbox,
    ) -> bool:  # fmt: skip
        """Relay a provisional; reliably when the callee side's was (``b_rseq``) and the
        caller supports it. True when it waits for a PRACK (retransmissions to schedule)."""
        if self.key is None:
            return False
        reliable = b_rseq is not None and self.reliable
        if reliable:
            assert b_rseq is not None
            self.rseq += 1
            self.rseq_map[self.rseq] = b_rseq
            headers = [*headers, ("Require", "100rel"), ("RSeq", str(self.rseq))]
        response = make_response(self.invite, status, reason_phrase(status),
                                 to_tag=self.local_tag, headers=[*self._record_route(), *headers],
                                 body=body)  # fmt: skip
        if body:
            self.sdp = body
        if reliable:
            t1 = out.t1
            self.unacked[self.rseq] = Unacked(response, t1, now + t1, now + 64 * t1)
        out.respond(self.key, response, now)
        return reliable

    def _record_route(self) -> list[Header]:
        """§12.1.1: a response that creates the dialog (18x with a tag, 2xx) carries the
        INVITE's Record-Route, so the caller's proxies stay on the path of its requests."""
        return [("Record-Route", value) for value in self.route_set]

    def retransmit(self, now: float, out: Outbox) -> float | None:
        """Send again the reliable provisionals that are due; when to come back (None:
        nothing left to retransmit)."""
        if self.final_sent or self.key is None:
            self.unacked.clear()
            return None
        for rseq, entry in list(self.unacked.items()):
            if entry.due > now:
                continue
            if now >= entry.give_up:
                del self.unacked[rseq]
                continue
            out.respond(self.key, entry.response, now)
            entry.interval *= 2
            entry.due = now + entry.interval
        return min((e.due for e in self.unacked.values()), default=None)

    def pracked(self, request: Request) -> int | None:
        """The callee side's RSeq that the caller's PRACK acknowledges (None: unknown)."""
        rack = (request.header("rack") or "").split()
        a_rseq = int(rack[0]) if rack and rack[0].isdigit() and len(rack[0]) < 11 else -1
        self.unacked.pop(a_rseq, None)
        return self.rseq_map.get(a_rseq)


def _has_option(message: Request, name: str, option: str) -> bool:
    return any(v.lower() == option for v in message.values(name))


def _strip_tag(value: str) -> str:
    """A From/To header value without its tag parameter (the leg adds its own)."""
    na = parse_name_addr(value)
    params = "".join(
        f";{k}" if v is None else f";{k}={v}" for k, v in na.params if k.lower() != "tag"
    )
    disp = f"{na.display} " if na.display else ""
    return f"{disp}<{na.uri}>{params}"
