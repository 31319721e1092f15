"""What a node does with messages on the shared bans channel: a node's ban or unban is
applied; anything else is ignored, never raised (the listener must outlive bad input)."""

from __future__ import annotations

import asyncio
import json

import pytest

from pkiss.routing.limits import MemoryLimitStore
from pkiss.security.bans import BanList
from pkiss.state import SharedState


async def _apply(messages: list[bytes | str]) -> list[str]:
    bans = BanList()
    state = SharedState("redis://127.0.0.1:1/0", MemoryLimitStore(), bans, lambda: 100.0,
                        node_id="here")  # fmt: skip
    for message in messages:
        state._apply(message)
    await state.client.aclose()
    return [b.host for b in bans.active(100.0)]


def apply(messages: list[bytes | str]) -> list[str]:
    return asyncio.run(_apply(messages))


def ban(**fields: object) -> str:
    return json.dumps({"op": "ban", "host": "192.0.2.7", "left": 60, "reason": "flood",
                       "node": "there", **fields})  # fmt: skip


def test_another_nodes_ban_is_applied_and_its_unban_lifts_it() -> None:
    assert apply([ban()]) == ["192.0.2.7"]
    unban = json.dumps({"op": "unban", "host": "192.0.2.7", "node": "there"})
    assert apply([ban(), unban]) == []


def test_this_nodes_own_messages_are_not_applied_twice() -> None:
    assert apply([ban(node="here")]) == []


@pytest.mark.parametrize(
    "message",
    [b"\xff\xfe", "not json", "[1, 2]", "null", json.dumps({"op": "ban"}),
     ban(left="soon"), ban(left=None), ban(host=""), json.dumps({"op": "unban", "node": "x"})],
)  # fmt: skip
def test_anything_else_is_ignored(message: str | bytes) -> None:
    assert apply([message]) == []
