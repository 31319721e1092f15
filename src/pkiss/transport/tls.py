"""SSL contexts for SIP over TLS, from ``sbc.tls``.

- Server side (``tls:`` listeners): the SBC's certificate and key; with ``verify_peer`` a
  client certificate is required and checked against ``ca`` (mutual TLS with a carrier).
- Client side (connections the SBC opens to peers whose host says ``transport: tls``): the same
  certificate is offered (carriers that want mutual TLS get it); the peer's certificate is
  verified against ``ca`` when one is given. Peers are configured by address, and carriers'
  certificates often name a domain, not that address: the chain is checked, the name is not.
  Without ``ca`` the connection is encrypted but the peer is not authenticated (logged at
  start).

TLS 1.2 is the least accepted on both sides (RFC 8996 retired 1.0 and 1.1).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

__all__ = ["tls_contexts"]

log = logging.getLogger("pkiss.transport")


def tls_contexts(tls: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context); OSError/ssl.SSLError name the file at fault."""
    if tls is None:
        raise OSError("a tls listener needs sbc.tls (cert and key)")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(tls.cert), str(tls.key))
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"sbc.tls: cannot load {tls.cert} / {tls.key}: {exc}") from None
    client.check_hostname = False
    if tls.ca is not None:
        try:
            server.load_verify_locations(str(tls.ca))
            client.load_verify_locations(str(tls.ca))
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"sbc.tls.ca: cannot load {tls.ca}: {exc}") from None
        client.verify_mode = ssl.CERT_REQUIRED
    else:
        client.verify_mode = ssl.CERT_NONE
        log.warning("sbc.tls.ca is not set: peers reached over TLS are not authenticated")
    if tls.verify_peer:
        server.verify_mode = ssl.CERT_REQUIRED
    return server, client
