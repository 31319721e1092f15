"""Pure routing decisions: (request, source peer, config) -> ordered candidates or a rejection."""

from .numbers import DidTable, called_number, rewrite
from .router import Decision, Router, Target

__all__ = ["Decision", "DidTable", "Router", "Target", "called_number", "rewrite"]
