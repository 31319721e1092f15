"""Session descriptions: read, rewrite toward the SBC's media relay, write back."""

from .codecs import keep_codecs
from .session import Media, SdpError, Session, parse_sdp

__all__ = ["Media", "SdpError", "Session", "keep_codecs", "parse_sdp"]
