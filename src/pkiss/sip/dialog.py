"""Dialog state (RFC 3261 §12): what one user agent remembers of a dialog, and the requests
it builds within it. Pure data and arithmetic: no clock, no I/O.

``local_party``/``remote_party`` are the From/To values (without tags) as this side writes
them in the requests it sends; the tags travel separately.

The route set is fixed when the dialog is created: from the Record-Route of the request on
the UAS side, of the response (reversed) on the UAC side (§12.1); target refreshes change the
remote target only (§12.2). Requests are routed per §12.2.1.1: with a loose router first
(``;lr``), the remote target is the Request-URI and the route set goes in Route; with a strict
router first, its URI is the Request-URI and the remote target ends the Route list.
``next_hop()`` is the URI the request goes to: the first Route, else the Request-URI.
"""

from __future__ import annotations

from collections.abc import Sequence

from mypy_extensions import mypyc_attr

from .errors import ParseError
from .headers import Via, parse_name_addr
from .message import Header, Request, Response
from .uri import SipURI

__all__ = ["TARGET_REFRESH", "Dialog"]

# Methods whose requests and 2xx carry a Contact that refreshes the remote target (§12.2).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


# Compiled with mypyc (setup.py), a class a pure-Python module subclasses must say so: the
# B2BUA's legs are dialogs, and pkiss.b2bua may be built pure while pkiss.sip is compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
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
        uri, routes = self.request_uri_and_routes()
        out.extend(("Route", r) for r in routes)
        if contact is not None and method in TARGET_REFRESH:
            out.append(("Contact", contact))
        out.extend(headers)
        request = Request(method, uri, out, body)
        request.seed_via([via])
        return request

    def request_uri_and_routes(self) -> tuple[str, list[str]]:
        """The Request-URI and Route values of a request in this dialog (§12.2.1.1)."""
        routes = self.route_set
        if not routes:
            return self.remote_target, []
        first = _route_uri(routes[0])
        if first is None or first[1]:
            return self.remote_target, list(routes)
        # a strict router: its URI (without the parameters a Request-URI may not carry) is
        # the Request-URI, and the remote target goes last in Route
        return first[0], [*routes[1:], f"<{self.remote_target}>"]

    def next_hop(self) -> str:
        """The URI the next request of this dialog is sent to (§8.1.2): the first route,
        whether a loose router (first Route header) or a strict one (the Request-URI); the
        remote target when there is no route set."""
        first = _route_uri(self.route_set[0]) if self.route_set else None
        return first[0] if first is not None else self.remote_target

    def learn_from_response(self, response: Response) -> None:
        """Early or confirmed state from a 1xx with a To tag or a 2xx to our INVITE (§12.1.2):
        the remote tag, the remote target (Contact) and the route set (Record-Route, in
        reverse order on the UAC side)."""
        to = response.to
        if to is not None and to.tag:
            self.remote_tag = to.tag
        self.refresh_target(response)
        if response.has("record-route"):
            self.route_set = list(reversed(response.values("record-route")))

    def refresh_target(self, message: Request | Response) -> None:
        """The remote target from the Contact of a target refresh (a re-INVITE or UPDATE,
        or its 2xx): the route set stays what it was (§12.2)."""
        contact = message.contact
        if contact and contact[0].uri is not None:
            self.remote_target = str(contact[0].uri)

    def learn_from_request(self, request: Request) -> None:
        """Target refresh from a request the peer sent within this dialog (§12.2.2)."""
        self.refresh_target(request)

    def accept_remote_cseq(self, cseq: int) -> bool:
        """§12.2.2: a request with a lower CSeq than the last one is out of order (500);
        otherwise it becomes the remote CSeq."""
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True


def _route_uri(value: str) -> tuple[str, bool] | None:
    """A Route value's URI as a Request-URI may carry it (no ``method`` parameter, no
    headers: RFC 3261 §19.1.1), and whether it names a loose router (``;lr``, whatever its
    value: ``;lr=on`` too). None when it does not parse."""
    try:
        uri = parse_name_addr(value).uri
    except ParseError:
        return None
    if not isinstance(uri, SipURI):
        return None
    loose = uri.param("lr") is not None
    if uri.param("method") is not None or uri.headers is not None:
        uri = uri.replace(params=tuple(p for p in uri.params if p[0].lower() != "method"),
                          headers=None)  # fmt: skip
    return str(uri), loose
