"""The back-to-back user agent: calls made of two legs, and what may cross between them."""

from .call import Call
from .core import ALLOW, B2BUA
from .leg import Leg, LocalAddress

__all__ = ["ALLOW", "B2BUA", "Call", "Leg", "LocalAddress"]
