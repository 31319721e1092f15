"""The back-to-back user agent: calls made of two legs, and what may cross between them."""

from .anchoring import Anchoring
from .call import Call
from .calls import Calls
from .headers_policy import ALLOW
from .leg import Leg
from .table import CallState

__all__ = ["ALLOW", "Anchoring", "Call", "CallState", "Calls", "Leg"]
