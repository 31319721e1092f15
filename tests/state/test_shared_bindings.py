"""Registered PBXs' bindings shared by two nodes through a real redis-server: made at one
node, a binding is where the other sends calls (over UDP), gone at both when removed; a node
starting later loads it; one made while Redis was away is written when it is back; an entry
no node wrote is logged and ignored; the last REGISTER wins in Redis too."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from pkiss.registration.bindings import Bindings
from pkiss.routing.limits import MemoryLimitStore
from pkiss.security.bans import BanList
from pkiss.sip.transaction import Addr
from pkiss.state import SharedState
from pkiss.state.redis import _WRITE, BINDINGS

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not on PATH (package redis-server)",
)

PBX = Addr("udp", "192.0.2.7", 5062)


class Server:
    """A redis-server on a free loopback port, no persistence; stopped and started again on
    the same port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="pkiss-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def redis() -> Iterator[Server]:
    server = Server()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def node(url: str, name: str) -> tuple[SharedState, Bindings]:
    bindings = Bindings()
    bindings.retain({"pbx"})
    loop = asyncio.get_running_loop()
    state = SharedState(url, MemoryLimitStore(), BanList(), loop.time, node_id=name,
                        bindings=bindings)  # fmt: skip
    return state, bindings


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def now() -> float:
    return asyncio.get_running_loop().time()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_a_binding_made_at_one_node_is_known_at_the_other_until_removed(redis: Server) -> None:
    async def test() -> None:
        (one, here), (two, there) = node(redis.url, "one"), node(redis.url, "two")
        await one.start()
        await two.start()
        try:
            await until(lambda: one.connected and two.connected, "never connected")
            await asyncio.sleep(0.3)  # both subscribed
            here.register("pbx", "sip:remote1@192.0.2.7:5062", PBX, 600, now())
            await until(lambda: there.lookup("pbx", now()) is not None, "two never learned it")
            binding = there.lookup("pbx", now())
            assert binding is not None and binding.source == PBX and binding.node == "one"
            assert binding.contact == "sip:remote1@192.0.2.7:5062"
            assert 598 < binding.expires_at - now() <= 600
            assert there.peer_at(PBX, now()) == "pbx"
            ttl = await one.client.pttl("pkiss:binding:pbx")
            assert 598_000 < ttl <= 600_000  # expires with the registration
            here.unregister("pbx")
            await until(lambda: there.lookup("pbx", now()) is None, "two kept it")
            assert await one.client.exists("pkiss:binding:pbx") == 0
        finally:
            await one.stop()
            await two.stop()

    run(test)


def test_a_node_starting_later_loads_the_bindings_and_ignores_bad_ones(
    redis: Server, caplog: pytest.LogCaptureFixture
) -> None:
    async def test() -> None:
        one, here = node(redis.url, "one")
        here.retain({"pbx", "other"})
        await one.start()
        try:
            await until(lambda: one.connected, "never connected")
            here.register("pbx", "sip:remote1@192.0.2.7:5062", PBX, 600, now())
            await until(lambda: bool(one._dirty) is False, "never written")
            await one.client.set("pkiss:binding:other", '{"op": "register", "peer": "other"}')
            # a removal where a binding is kept, made after the binding: not applied
            removal = {"op": "unregister", "peer": "third", "node": "x", "at": time.time()}
            await one.client.set("pkiss:binding:third", json.dumps(removal))
            two, there = node(redis.url, "two")
            there.retain({"pbx", "other", "third"})
            with caplog.at_level(logging.WARNING, logger="pkiss.state"):
                await two.start()
                try:
                    await until(lambda: there.lookup("pbx", now()) is not None, "never loaded")
                    await until(lambda: "pkiss:binding:other holds no binding" in caplog.text,
                                "the bad entry was not told")  # fmt: skip
                    assert "pkiss:binding:third holds no binding" in caplog.text
                    assert there.lookup("other", now()) is None
                finally:
                    await two.stop()
        finally:
            await one.stop()

    run(test)


def test_a_peer_a_reload_adds_has_its_binding_loaded(redis: Server) -> None:
    async def test() -> None:
        (one, here), (two, there) = node(redis.url, "one"), node(redis.url, "two")
        here.retain({"pbx", "other"})
        await one.start()
        await two.start()
        try:
            await until(lambda: one.connected and two.connected, "never connected")
            await asyncio.sleep(0.3)  # both subscribed
            here.register("other", "sip:other@192.0.2.7:5062", PBX, 600, now())
            await until(lambda: not one._dirty, "never written")
            await asyncio.sleep(0.3)
            assert there.lookup("other", now()) is None  # not a registered peer there yet
            there.retain({"pbx", "other"})
            await until(lambda: there.lookup("other", now()) is not None, "never loaded")
        finally:
            await one.stop()
            await two.stop()

    run(test)


def test_the_bindings_held_are_written_again_when_redis_is_back(redis: Server) -> None:
    """Redis comes back empty: the binding written before it went, and the one made while it
    was away, are both written again."""

    async def test() -> None:
        one, here = node(redis.url, "one")
        here.retain({"pbx", "other"})
        await one.start()
        try:
            await until(lambda: one.connected, "never connected")
            here.register("pbx", "sip:remote1@192.0.2.7:5062", PBX, 600, now())
            await until(lambda: not one._dirty, "never written")
            redis.stop()
            here.register("other", "sip:other@192.0.2.8:5062", Addr("udp", "192.0.2.8", 5062),
                          600, now())  # fmt: skip
            assert here.lookup("other", now()) is not None  # the node goes on alone
            await until(lambda: not one.connected, "never noticed")
            redis.start()  # empty: what it held before is gone
            two, there = node(redis.url, "two")
            there.retain({"pbx", "other"})
            await two.start()
            try:
                await until(lambda: there.lookup("pbx", now()) is not None
                            and there.lookup("other", now()) is not None,
                            "never written again", timeout=10)  # fmt: skip
            finally:
                await two.stop()
        finally:
            await one.stop()

    run(test)


def test_an_older_register_loses_to_a_newer_one_held(redis: Server) -> None:
    async def test() -> None:
        one, _ = node(redis.url, "one")
        try:
            key = "pkiss:binding:pbx"
            newer = json.dumps({"op": "register", "at": 200.5, "node": "two"})
            assert await one.client.eval(_WRITE, 1, key, newer, "200.5", 60_000, BINDINGS) == 1
            older = json.dumps({"op": "register", "at": 100.0, "node": "one"})
            assert await one.client.eval(_WRITE, 1, key, older, "100.0", 60_000, BINDINGS) == 0
            assert await one.client.get(key) == newer.encode()
            await one.client.set(key, "not json")  # garbage is overwritten
            assert await one.client.eval(_WRITE, 1, key, older, "100.0", 60_000, BINDINGS) == 1
        finally:
            await one.client.aclose()

    run(test)
