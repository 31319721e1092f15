"""What a node does with messages on the shared bindings channel (no Redis needed): another
node's binding is learned and its removal applied; this node's own messages, other configs'
peers and anything a node would not write are ignored, never raised (the listener must
outlive bad input); what a node would not write is logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from pkiss.registration.bindings import Bindings
from pkiss.routing.limits import MemoryLimitStore
from pkiss.security.bans import BanList
from pkiss.sip.transaction import Addr
from pkiss.state import SharedState

SOURCE = Addr("udp", "198.51.100.7", 5060)


def message(**fields: Any) -> str:
    wall = time.time()
    return json.dumps({"op": "register", "peer": "pbx", "node": "there",
                       "contact": "sip:remote1@198.51.100.7:5060",
                       "source": ["udp", "198.51.100.7", 5060], "at": wall - 1.0,
                       "expires": wall + 599.0, **fields})  # fmt: skip


async def _apply(messages: list[bytes | str]) -> Bindings:
    bindings = Bindings()
    bindings.retain({"pbx"})
    state = SharedState("redis://127.0.0.1:1/0", MemoryLimitStore(), BanList(), lambda: 100.0,
                        node_id="here", bindings=bindings)  # fmt: skip
    for raw in messages:
        state._apply_binding(raw)
    await state.client.aclose()
    return bindings


def apply(messages: list[bytes | str]) -> Bindings:
    return asyncio.run(_apply(messages))


def test_another_nodes_binding_is_learned_on_this_nodes_clock() -> None:
    binding = apply([message()]).lookup("pbx", 100.0)
    assert binding is not None and binding.source == SOURCE and binding.node == "there"
    assert binding.expires_at == pytest.approx(699.0, abs=1.0)
    assert binding.registered_at == pytest.approx(99.0, abs=1.0)


def test_its_removal_removes_it() -> None:
    removal = json.dumps({"op": "unregister", "peer": "pbx", "node": "there", "at": time.time()})
    assert apply([message(), removal]).lookup("pbx", 100.0) is None
    # a removal older than the binding leaves it
    old = json.dumps({"op": "unregister", "peer": "pbx", "node": "there", "at": time.time() - 5})
    assert apply([message(), old]).lookup("pbx", 100.0) is not None


def test_this_nodes_own_messages_and_other_configs_peers_are_not_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pkiss.state"):
        bindings = apply([message(node="here"), message(peer="other")])
    assert bindings.lookup("pbx", 100.0) is None and bindings.lookup("other", 100.0) is None
    assert caplog.text == ""


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", "not json", "[1, 2]", "null", json.dumps({"op": "register"}),
     message(contact="sip:a@b\r\nX: y"), message(source=["udp", "host", 5060]),
     message(expires="never"), message(at=None), message(op="ban")],
)  # fmt: skip
def test_anything_else_is_ignored_and_told(
    raw: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pkiss.state"):
        assert apply([raw]).lookup("pbx", 100.0) is None
    assert "holds no binding a node wrote" in caplog.text
