"""State shared by several nodes: bans and per-peer call counts, through Redis.

``state: memory`` (the default) keeps everything in the node; ``state: redis://...`` adds a
``SharedState`` that mirrors this node's figures to Redis and brings the other nodes' back,
off the call path."""

from .redis import SharedState

__all__ = ["SharedState"]
