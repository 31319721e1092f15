"""Dialog state (RFC 3261 §12): what one user agent remembers of a dialog, and the requests
it builds within it. Pure data and arithmetic: no clock, no I/O.

``local_party``/``remote_party`` are the From/To values (without tags) as this side writes
them in the requests it sends; the tags travel separately.
"""

from __future__ import annotations

from collections.abc import Sequence

from .headers import Via
from .message import Header, Request, Response

__all__ = ["TARGET_REFRESH", "Dialog"]

# Methods whose requests and 2xx carry a Contact that refreshes the remote target (§12.2).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class Dialog:
    __slots__ = (
        "call_id",
        "local_cseq",
        "local_party",
        "local_tag",
        "remote_cseq",
        "remote_party",
        "remote_tag",
        "remote_target",
        "route_set",
    )

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        local_party: str,
        remote_party: str,
        remote_target: str,
        local_cseq: int = 1,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag: str | None = None
        self.local_party = local_party
        self.remote_party = remote_party
        self.remote_target = remote_target
        self.route_set: list[str] = []
        self.local_cseq = local_cseq
        self.remote_cseq: int | None = None

    def build(
        self,
        method: str,
        via: Via,
        *,
        contact: str | None = None,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        cseq: int | None = None,
        max_forwards: int = 70,
    ) -> Request:
        """A request within this dialog (§12.2.1.1): the next local CSeq unless ``cseq`` is
        given (ACK and CANCEL reuse the INVITE's), the remote target as Request-URI, the route
        set as Route, ``contact`` for target-refreshing methods."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        to = self.remote_party
        if self.remote_tag:
            to = f"{to};tag={self.remote_tag}"
        out: list[Header] = [
            ("Via", str(via)),
            ("Max-Forwards", str(max_forwards)),
            ("From", f"{self.local_party};tag={self.local_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        out.extend(("Route", r) for r in self.route_set)
        if contact is not None and method in TARGET_REFRESH:
            out.append(("Contact", contact))
        out.extend(headers)
        request = Request(method, self.remote_target, out, body)
        request.seed_via([via])
        return request

    def learn_from_response(self, response: Response) -> None:
        """Early or confirmed state from a 1xx with a To tag or a 2xx to our INVITE (§12.1.2):
        the remote tag, the remote target (Contact) and the route set (Record-Route, in
        reverse order on the UAC side)."""
        to = response.to
        if to is not None and to.tag:
            self.remote_tag = to.tag
        contact = response.contact
        if contact and contact[0].uri is not None:
            self.remote_target = str(contact[0].uri)
        if response.has("record-route"):
            self.route_set = list(reversed(response.values("record-route")))

    def learn_from_request(self, request: Request) -> None:
        """Target refresh from a request the peer sent within this dialog (§12.2.2)."""
        contact = request.contact
        if contact and contact[0].uri is not None:
            self.remote_target = str(contact[0].uri)

    def accept_remote_cseq(self, cseq: int) -> bool:
        """§12.2.2: a request with a lower CSeq than the last one is out of order (500);
        otherwise it becomes the remote CSeq."""
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True
