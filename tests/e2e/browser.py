"""A headless Chromium a test can click in: the DevTools protocol over a plain socket (one
WebSocket, RFC 6455, text frames only), so that no browser driver has to be installed.

    with Browser(CHROMIUM, "http://127.0.0.1:8080/") as page:
        page.until("document.querySelector('button') !== null")
        page.run("document.querySelector('button').click()")
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from typing import Any

__all__ = ["Browser"]


class Browser:
    """Chromium showing ``url``, started headless, stopped by PID on ``close``."""

    def __init__(self, chromium: str, url: str, timeout: float = 20.0) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="pkiss-browser-")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self._profile.name}", f"--remote-debugging-port={port}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._id = 0
        try:
            self.sock = self._connect(port, timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, port: int, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        pages: list[dict[str, Any]] = []
        while not pages:
            assert time.monotonic() < deadline, "chromium opened no page"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
            except OSError:
                time.sleep(0.1)
        target = str(pages[0]["webSocketDebuggerUrl"]).removeprefix("ws://")
        hostport, _, path = target.partition("/")
        host, _, ws_port = hostport.rpartition(":")
        sock = socket.create_connection((host, int(ws_port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode()
        )  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            assert chunk, "chromium closed the DevTools connection"
            head += chunk
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        return sock

    # ------------------------------------------------------------------ WebSocket frames
    def _send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        size = len(data)
        if size < 126:
            head = bytes([0x81, 0x80 | size])
        elif size < 65536:
            head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", size)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "chromium closed the DevTools connection"
            data += chunk
        return data

    def _receive(self) -> str:
        _, second = self._exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack(">H", self._exactly(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", self._exactly(8))[0]
        return self._exactly(size).decode(errors="replace")

    # ------------------------------------------------------------------------ the page
    def command(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command, its result."""
        self._id += 1
        self._send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._receive())
            if message.get("id") == self._id:
                result: dict[str, Any] = message.get("result", {})
                return result

    def run(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.command("Runtime.evaluate", expression=expression, awaitPromise=True,
                              returnByValue=True)  # fmt: skip
        return result.get("result", {}).get("value")

    def screenshot(
        self,
        path: str | os.PathLike[str],
        width: int = 1280,
        height: int = 900,
    ) -> None:
        """The page as a PNG file, ``width`` CSS pixels wide, the whole page high."""
        full = self.run("document.documentElement.scrollHeight") or height
        self.command("Emulation.setDeviceMetricsOverride", width=width,
                     height=max(height, int(full)), deviceScaleFactor=1, mobile=False)  # fmt: skip
        data = self.command("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as out:
            out.write(base64.b64decode(data["data"]))

    def until(self, expression: str, timeout: float = 10.0) -> bool:
        """Poll a JavaScript condition every 100 ms for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(expression) is True:
                return True
            time.sleep(0.1)
        return self.run(expression) is True

    def close(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
