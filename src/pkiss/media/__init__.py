"""Media anchoring: the engine interface the B2BUA uses, the built-in RTP relay, and rtpengine."""

from .engine import MediaEngine, MediaError
from .relay import BuiltinRelay
from .rtpengine import RtpEngine

__all__ = ["BuiltinRelay", "MediaEngine", "MediaError", "RtpEngine"]
