"""The admin API served by uvicorn on the node's own event loop.

The listening socket is bound here first, so that a busy port is a clear start-up error
naming ``admin.listen``; uvicorn's signal handling is left out (the node owns its signals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

__all__ = ["AdminServer"]

log = logging.getLogger("pkiss.admin")


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class AdminServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            server_header=False, date_header=False,
        )  # fmt: skip
        self._server = _Embedded(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"admin.listen {self.host}:{self.port}: {exc.strerror}") from exc
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        log.info("admin API on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
