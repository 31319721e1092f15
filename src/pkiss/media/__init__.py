"""Media anchoring: the engine interface the B2BUA uses, and the built-in RTP relay."""

from .engine import MediaEngine, MediaError
from .relay import BuiltinRelay

__all__ = ["BuiltinRelay", "MediaEngine", "MediaError"]
