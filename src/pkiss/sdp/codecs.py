"""A peer's codec policy (``peers.*.codecs``): an offer sent to the peer keeps only the codecs
it names, in the order it names them (RFC 3264 §5.1: the order is the offerer's preference).

A codec is named by its ``a=rtpmap`` encoding name, or for a static payload type without one
by the name RFC 3551 gives it (0 PCMU, 8 PCMA, 9 G722, 18 G729...). ``telephone-event``
(RFC 4733 DTMF) and comfort noise are kept only when named too, and never count as a codec
left. An RTP stream with no codec left is disabled (port 0, RFC 3264 §6); an offer whose
audio streams are all disabled so is refused (``SdpError``: 488).
"""

from __future__ import annotations

from collections.abc import Sequence

from .session import Media, SdpError, Session

__all__ = ["STATIC_PAYLOADS", "keep_codecs"]

STATIC_PAYLOADS = {
    "0": "PCMU", "3": "GSM", "4": "G723", "5": "DVI4", "6": "DVI4", "7": "LPC", "8": "PCMA",
    "9": "G722", "10": "L16", "11": "L16", "12": "QCELP", "13": "CN", "14": "MPA",
    "15": "G728", "16": "DVI4", "17": "DVI4", "18": "G729",
}  # fmt: skip
"""RFC 3551's static payload types: the codec of a payload type without ``a=rtpmap``."""

_NOT_A_CODEC = frozenset({"telephone-event", "cn", "red", "ulpfec", "rtx"})

_BY_FORMAT = frozenset({"rtpmap", "fmtp", "rtcp-fb"})


def _names(media: Media) -> dict[str, str]:
    """Payload type -> encoding name (lower-case) of one m= section."""
    names = {pt: STATIC_PAYLOADS.get(pt, "").lower() for pt in media.formats.split()}
    for key, value in media.lines:
        if key == "a" and value.lower().startswith("rtpmap:"):
            pt, _, rest = value[7:].partition(" ")
            names[pt.strip()] = rest.split("/", 1)[0].strip().lower()
    return names


def keep_codecs(session: Session, allowed: Sequence[str]) -> Session:
    """A copy of the offer with only the ``allowed`` codecs (see the module)."""
    order = {name.lower(): i for i, name in reversed(list(enumerate(allowed)))}
    media: list[Media] = []
    audio = audio_left = False
    for m in session.media:
        if m.port == 0 or not m.proto.upper().startswith("RTP/"):
            media.append(m)  # disabled already, or not RTP (T.38 over UDPTL...)
            continue
        audio = audio or m.kind == "audio"
        names = _names(m)
        kept = sorted((pt for pt in m.formats.split() if names.get(pt, "") in order),
                      key=lambda pt: order[names[pt]])  # fmt: skip
        if not any(names[pt] not in _NOT_A_CODEC for pt in kept):
            first = m.formats.split()[0] if m.formats else "0"
            lines = [(k, v) for k, v in m.lines if not _per_format(k, v)]
            media.append(Media(m.kind, 0, "", m.proto, first, lines))
            continue
        audio_left = audio_left or m.kind == "audio"
        keep = set(kept)
        lines = [(k, v) for k, v in m.lines
                 if not _per_format(k, v) or _format(v) in keep or _format(v) == "*"]  # fmt: skip
        media.append(Media(m.kind, m.port, m.count, m.proto, " ".join(kept), lines))
    if audio and not audio_left:
        raise SdpError(f"no codec of {', '.join(allowed)} in the offer")
    return Session(list(session.lines), media)


def _per_format(key: str, value: str) -> bool:
    return key == "a" and value.split(":", 1)[0].strip().lower() in _BY_FORMAT


def _format(value: str) -> str:
    return value.split(":", 1)[1].split(" ", 1)[0].strip() if ":" in value else ""
