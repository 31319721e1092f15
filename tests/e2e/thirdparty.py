"""Real third-party SIP software for interoperability tests, from Debian's packages: Kamailio
as an edge proxy (a carrier's or a PBX's), baresip as a phone, linphonec as a PBX that
registers, tcpdump capturing what crosses the loopback interface, and a tone detector for the
audio baresip records. Each runs in a folder of the
test's (its config and logs stay there for the failure report), on its own loopback address,
and is stopped by the PID it was started with: SIGTERM, then SIGKILL to its own process group
after a timeout.

    proxy = Kamailio(tmp_path / "edge", "127.0.4.1", routes={"127.0.4.2": "127.0.0.1:5070",
                                                             "127.0.0.1": "127.0.4.2:5060"})
    proxy.start()                      # returns once it answers SIP
    phone = Baresip(tmp_path / "a", "127.0.3.2", user="+33987654321", tone=440).start()
    phone.dial("sip:+33123456789@127.0.0.1:5070")
    phone.wait_event("CALL_ESTABLISHED")
    phone.hangup(); phone.wait_event("CALL_CLOSED")
    tone_seconds(phone.received_audio(), 1000)       # seconds of a 1 kHz tone it heard

A class whose program is missing skips the test (``pytest.skip``) when it is built.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
from sipp import free_port

__all__ = [
    "Baresip",
    "Datagram",
    "Kamailio",
    "Linphonec",
    "Tcpdump",
    "rtcp_packets",
    "tone_seconds",
]

KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")


def _require(binary: str, package: str) -> str:
    """The program's path; skips the test when it is not installed."""
    path = shutil.which(binary, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package {package}; make deps)")
    return path


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class _Process:
    """A program started in its own session, its output in ``log_path``; stopped by PID."""

    name = "process"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _spawn(self, args: list[str], **kwargs: Any) -> None:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        if "stdout" not in kwargs:
            self._log = self.log_path.open("ab")
            kwargs.update(stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.proc = subprocess.Popen(args, cwd=self.workdir, start_new_session=True, **kwargs)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _check_alive(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited ({self.proc.returncode}) {what}:\n{self.log()[-3000:]}"
            )

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM to the PID, SIGKILL to its process group after ``timeout``. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session (see _spawn)
                self.proc.wait(5)
        self._closed()
        return self.proc.returncode

    def _closed(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ Kamailio

_KAMAILIO_CFG = """#!KAMAILIO
# A carrier's edge proxy: record-routes what it forwards, routes in-dialog requests by
# their Route set only; an in-dialog request without one gets a 404 (an ACK is dropped).
debug=2
log_stderror=yes
log_prefix="edge: "
memdbg=5
memlog=5
children=2
auto_aliases=no
dns=no
rev_dns=no
listen=udp:{ip}:{port}
alias=udp:{ip}:{port}

mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"

request_route {{
    xlog("L_NOTICE", "request $rm $ru from $si:$sp route=[$hdr(Route)]\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "in-dialog $rm by its route set to $ru\\n");
            route(RELAY);
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                route(RELAY);
            }}
            xlog("L_NOTICE", "in-dialog ACK without Route from $si:$sp dropped\\n");
            exit;
        }}
        xlog("L_NOTICE", "in-dialog $rm without Route from $si:$sp: 404\\n");
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            route(RELAY);
        }}
        exit;
    }}
    if (is_present_hf("Route")) {{
        xlog("L_NOTICE", "initial $rm with a Route from $si:$sp: 403\\n");
        sl_send_reply("403", "Preloaded Route Refused");
        exit;
    }}
    t_check_trans();
{routes}
    xlog("L_NOTICE", "initial $rm from unknown source $si:$sp: 403\\n");
    sl_send_reply("403", "Forbidden");
    exit;
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

onreply_route {{
    xlog("L_NOTICE", "reply $rs $rr for $rm from $si:$sp\\n");
}}
"""

_KAMAILIO_ROUTE = """    if ($si == "{source}") {{
        record_route();
        rewritehostport("{hop}");
        xlog("L_NOTICE", "initial $rm record-routed to $ru\\n");
        route(RELAY);
    }}
"""


class Kamailio(_Process):
    """Kamailio 5.6 as an edge proxy on ``ip:port`` (UDP): a carrier's in front of its
    network, or a PBX's in front of the PBX, by the ``routes`` it is given.

    ``routes`` maps the source address of an initial request to its next hop ``"ip:port"``:
    the proxy record-routes it (``record_route()``) and rewrites the Request-URI's host and
    port to that hop, as an edge forwards to the SBC by its address. In-dialog requests go
    by their Route set (``loose_route()``); without one they get a 404 (an ACK is dropped),
    which is what a real carrier's edge does. Initial requests from other sources get a 403.

    ``log()`` holds one ``edge: ...`` line per request and reply (``requests(method)``
    lists the request lines).
    """

    name = "kamailio"

    def __init__(
        self, workdir: Path, ip: str, port: int | None = None, *, routes: Mapping[str, str]
    ) -> None:
        self.binary = _require("kamailio", "kamailio")
        super().__init__(workdir)
        self.ip = ip
        self.port = port if port is not None else free_port(ip)
        self.routes = dict(routes)
        self.cfg_path = workdir / "kamailio.cfg"
        self.pid_path = workdir / "kamailio.pid"

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def config_text(self) -> str:
        routes = "".join(
            _KAMAILIO_ROUTE.format(source=source, hop=hop) for source, hop in self.routes.items()
        )
        return _KAMAILIO_CFG.format(
            ip=self.ip, port=self.port, modules=KAMAILIO_MODULES, routes=routes
        )

    def start(self, timeout: float = 10.0) -> Kamailio:
        self.cfg_path.write_text(self.config_text())
        run = self.workdir / "run"
        run.mkdir(exist_ok=True)
        check = subprocess.run([self.binary, "-c", "-f", str(self.cfg_path)],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(f"kamailio refuses its config:\n{check.stderr[-3000:]}")
        self._spawn([self.binary, "-DD", "-E", "-f", str(self.cfg_path), "-w", str(self.workdir),
                     "-Y", str(run), "-P", str(self.pid_path), "-m", "32", "-M", "4"])  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("while starting")
            if self._answers():
                return self
        self.stop()
        raise RuntimeError(f"kamailio not answering on {self.ip}:{self.port}:\n{self.log()}")

    def _answers(self) -> bool:
        """Whether the proxy answers an OPTIONS (a 403: from no known source)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.ip, 0))  # its own address: a source no route names
            port = s.getsockname()[1]
            s.settimeout(0.2)
            probe = (
                f"OPTIONS sip:{self.ip}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.ip}:{port};branch=z9hG4bK-probe-{time.monotonic_ns()}\r\n"
                f"From: <sip:probe@{self.ip}>;tag=probe\r\nTo: <sip:{self.ip}>\r\n"
                f"Call-ID: probe-{time.monotonic_ns()}@{self.ip}\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                s.sendto(probe.encode(), self.address)
                return s.recv(65535).startswith(b"SIP/2.0 ")
            except OSError:
                return False

    def requests(self, method: str) -> list[str]:
        """The proxy's log lines of the ``method`` requests it received."""
        return [ln for ln in self.log().splitlines() if f"request {method} " in ln]


# ------------------------------------------------------------------------------- baresip


class Baresip(_Process):
    """baresip 1.0.0 as a phone on ``ip:port`` (UDP), driven over ctrl_tcp.

    Its account is ``<sip:user@ip:port>`` (no registration); ``answer="auto"`` answers
    incoming calls at once. Its microphone is a sine of ``tone`` Hz (ausine), its speaker a
    null device; the sndfile module writes each call's received audio to a WAV
    (``received_audio()``) and what it sent to another. ``uuid=False`` leaves the uuid module
    out: baresip then sends an empty ``Supported:`` header. ``auth`` (user, password) and
    ``registrar`` (``"ip:port"``) make it register there instead (``regint``).

    ``srtp`` makes SDES-keyed SRTP mandatory (RTP/SAVP, ``a=crypto``), ``dtls_srtp``
    DTLS-SRTP (UDP/TLS/RTP/SAVP, ``a=fingerprint``, ``a=setup``); ``rtcp_mux`` offers and
    accepts RTCP on the RTP port (``a=rtcp-mux``, RFC 5761).

    ``dial(uri)``, ``hangup()``, ``send_dtmf(digits)``, ``transfer(uri)`` (a blind transfer:
    REFER), ``wait_event("CALL_ESTABLISHED")``; ``events`` lists every ctrl_tcp event
    received; ``log()`` is its output with the SIP trace (``-s``).
    """

    name = "baresip"
    _rtp_next = 31000

    def __init__(
        self,
        workdir: Path,
        ip: str,
        port: int | None = None,
        *,
        user: str = "phone",
        tone: int = 440,
        answer: str = "auto",
        uuid: bool = True,
        registrar: str | None = None,
        auth: tuple[str, str] | None = None,
        regint: int = 600,
        lifetime: int = 120,
        srtp: bool = False,
        dtls_srtp: bool = False,
        rtcp_mux: bool = False,
    ) -> None:
        self.binary = _require("baresip", "baresip")
        if srtp and dtls_srtp:
            raise ValueError("one media encryption at a time: srtp or dtls_srtp")
        self.srtp = srtp  # SDES-keyed SRTP (RTP/SAVP with a=crypto), mandatory
        self.dtls_srtp = dtls_srtp  # DTLS-SRTP (UDP/TLS/RTP/SAVP, a=fingerprint, a=setup)
        self.rtcp_mux = rtcp_mux  # offers and accepts a=rtcp-mux (RFC 5761)
        super().__init__(workdir)
        self.ip = ip
        self.port = port if port is not None else free_port(ip)
        self.ctrl_port = free_port(ip)
        self.user = user
        self.tone = tone
        self.answer = answer
        self.uuid = uuid
        self.registrar = registrar
        self.auth = auth
        self.regint = regint
        self.lifetime = lifetime
        self.audio_dir = workdir / "audio"
        # baresip binds RTP on the wildcard address: each phone gets ports of its own
        self.rtp_ports = (Baresip._rtp_next, Baresip._rtp_next + 99)
        Baresip._rtp_next = 31000 + (Baresip._rtp_next - 31000 + 100) % 4000
        self.events: list[dict[str, Any]] = []
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._responses: dict[str, dict[str, Any]] = {}
        self._token = 0

    @property
    def aor(self) -> str:
        """Its address of record: at the registrar when it registers, else at itself."""
        return f"sip:{self.user}@{self.registrar or f'{self.ip}:{self.port}'}"

    def config_text(self) -> str:
        lines = [
            "poll_method epoll",
            f"sip_listen {self.ip}:{self.port}",
            f"net_interface {self.ip}",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtp_timeout 0",
            # ausine makes 48 kHz stereo only; baresip resamples it for G.711
            "ausrc_srate 48000",
            "ausrc_channels 2",
            f"audio_source ausine,{self.tone}",
            "audio_player aubridge,nil",
            "audio_alert aubridge,nil",
            f"module_path {BARESIP_MODULES}",
            "module g711.so",
            "module ausine.so",
            "module aubridge.so",
            "module sndfile.so",
            f"snd_path {self.audio_dir}",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {self.ip}:{self.ctrl_port}",
            "call_local_timeout 30",
        ]
        if self.uuid:
            lines.insert(lines.index("module_tmp account.so"), "module_tmp uuid.so")
        if self.srtp:
            lines.insert(lines.index("module sndfile.so"), "module srtp.so")
        if self.dtls_srtp:
            lines.insert(lines.index("module sndfile.so"), "module dtls_srtp.so")
        if self.rtcp_mux:
            lines.append("rtcp_mux yes")
        return "\n".join(lines) + "\n"

    def account_text(self) -> str:
        params = [f"answermode={self.answer}", "audio_codecs=PCMU,PCMA"]
        if self.srtp:
            params.append("mediaenc=srtp-mand")
        if self.dtls_srtp:
            params.append("mediaenc=dtls_srtp")
        if self.auth is not None:
            params += [f"auth_user={self.auth[0]}", f"auth_pass={self.auth[1]}"]
        if self.registrar is not None:
            params.append(f"regint={self.regint}")
            host = self.registrar
        else:
            params.append("regint=0")
            host = f"{self.ip}:{self.port}"
        return f"<sip:{self.user}@{host}>;" + ";".join(params) + "\n"

    def start(self, timeout: float = 10.0) -> Baresip:
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "config").write_text(self.config_text())
        (conf / "accounts").write_text(self.account_text())
        (conf / "contacts").write_text("")
        self._spawn([self.binary, "-f", str(conf), "-s", "-t", str(self.lifetime)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("while starting")
            try:
                self._sock = socket.create_connection((self.ip, self.ctrl_port), timeout=0.2)
            except OSError:
                time.sleep(0.05)
                continue
            self._sock.settimeout(None)
            self._reader = threading.Thread(target=self._read, args=(self._sock,), daemon=True)
            self._reader.start()
            return self
        self.stop()
        raise RuntimeError(f"baresip's ctrl_tcp not listening:\n{self.log()[-3000:]}")

    # ctrl_tcp: JSON objects in netstrings ("<len>:<json>,"), both ways
    def _read(self, sock: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                head, colon, rest = buf.partition(b":")
                if not colon or not head.isdigit() or len(rest) < int(head) + 1:
                    break
                size = int(head)
                try:
                    message = json.loads(rest[:size])
                except ValueError:
                    message = {"unparsed": rest[:size].decode(errors="replace")}
                buf = rest[size + 1 :]
                with self._cond:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    else:
                        self.events.append(message)
                    self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """One ctrl_tcp command; its response (``ok``, ``data``)."""
        assert self._sock is not None, "start() first"
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise AssertionError(f"baresip: no response to {command} {params}")
            return self._responses.pop(token)

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def send_dtmf(self, digits: str) -> dict[str, Any]:
        """Send ``digits`` (0-9, *, #, A-D) in the current call, then the key release:
        baresip's ``sndcode`` command. With ``telephone-event`` negotiated they go as RFC 4733
        events in the RTP stream; the other phone reports each as a ``CALL_DTMF_START`` event
        (and ``call: received DTMF`` in its log)."""
        return self.command("sndcode", digits)

    def transfer(self, uri: str) -> dict[str, Any]:
        """Blind transfer of the current call to ``uri``: baresip's ``transfer`` command,
        which sends a REFER with ``Refer-To: uri`` (RFC 3515) in the call's dialog."""
        return self.command("transfer", uri)

    def dtmf_received(self) -> str:
        """The digits received so far, in order, from ``CALL_DTMF_START`` events."""
        with self._cond:
            return "".join(str(e.get("param", ""))[:1] for e in self.events
                           if e.get("type") == "CALL_DTMF_START")  # fmt: skip

    def event_types(self) -> list[str]:
        with self._cond:
            return [str(e.get("type")) for e in self.events]

    def wait_event(self, kind: str, timeout: float = 10.0, after: int = 0) -> dict[str, Any]:
        """The first event of type ``kind`` (from index ``after`` of ``events``), waiting for
        it; AssertionError with the events and log tail when none comes."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") == kind), None)

        with self._cond:
            if self._cond.wait_for(lambda: found() is not None, timeout):
                event = found()
                assert event is not None
                return event
        raise AssertionError(
            f"baresip {self.aor}: no {kind} in {timeout}s; events {self.event_types()}\n"
            f"{self.log()[-4000:]}"
        )

    def registration(self) -> str:
        """What the ``reginfo`` command says of its account, colours removed: ``OK`` once
        registered, ``ERR`` when refused."""
        return re.sub(r"\x1b\[[0-9;]*m", "", str(self.command("reginfo").get("data", "")))

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Wait until ``reginfo`` shows the account registered (an event would be lost when
        the registration ends before ctrl_tcp is connected)."""
        deadline = time.monotonic() + timeout
        while not re.search(r"\sOK\s", self.registration()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"baresip {self.aor} not registered in {timeout}s: {self.registration()!r}\n"
                    f"{self.log()[-4000:]}"
                )
            time.sleep(0.2)

    def sip_messages(self) -> list[tuple[str, str]]:
        """Every SIP message of its trace (``-s``), in order: (``sent`` or ``received``, the
        message with LF line ends)."""
        out: list[tuple[str, str]] = []
        trace = re.finditer(r"\x1b\[36;1m#\r?\n(\S+) (\S+) -> (\S+)\r?\n(.*?)\x1b\[;m",
                            self.log(), re.S)  # fmt: skip
        for found in trace:
            mine = _hostport(found.group(2))[0] == self.ip
            out.append(("sent" if mine else "received", found.group(4).replace("\r", "")))
        return out

    def received_audio(self) -> Path:
        """The WAV of what the last call received (sndfile's ``dump-*-dec.wav``)."""
        found = sorted(self.audio_dir.glob("dump-*-dec.wav"))
        assert found, f"baresip {self.aor} recorded no call in {self.audio_dir}"
        return found[-1]

    def sent_audio(self) -> Path:
        found = sorted(self.audio_dir.glob("dump-*-enc.wav"))
        assert found, f"baresip {self.aor} recorded no call in {self.audio_dir}"
        return found[-1]

    def stop(self, timeout: float = 5.0) -> int | None:
        code = super().stop(timeout)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        return code


# ------------------------------------------------------------------------------ linphonec


class Linphonec(_Process):
    """linphonec (liblinphone 5.1) as a PBX that registers, on ``ip:port`` (UDP).

    It registers ``<sip:user@domain>`` to ``proxy`` (``"ip:port"``) with digest
    credentials ``user``/``password`` and answers every call (``-a``). It runs with
    ``HOME`` in its folder and its console on a pseudo-terminal (it only runs its loop with
    a terminal on stdin); ``command(text)`` types a console command. ``log()`` is
    liblinphone's log (``-d 6``: every SIP message sent and received); ``console()``
    what it printed. ``wait_registered()``, ``wait_log(pattern)``.
    """

    name = "linphonec"

    def __init__(
        self,
        workdir: Path,
        ip: str,
        port: int | None = None,
        *,
        proxy: str,
        user: str,
        password: str,
        domain: str | None = None,
        expires: int = 600,
    ) -> None:
        self.binary = _require("linphonec", "linphone-cli")
        super().__init__(workdir)
        self.ip = ip
        self.port = port if port is not None else free_port(ip)
        self.proxy = proxy
        self.user = user
        self.password = password
        self.domain = domain or _hostport(proxy)[0]
        self.expires = expires
        self.home = workdir / "home"
        self.rc_path = workdir / "linphonerc"
        self.console_path = workdir / "console.log"
        self._master: int | None = None
        self._pump: threading.Thread | None = None

    def rc_text(self) -> str:
        return "\n".join([
            "[sip]",
            f"sip_port={self.port}",
            "sip_tcp_port=-1",
            f"bind_address={self.ip}",
            "guess_hostname=0",
            "default_proxy=0",
            "[rtp]",
            "audio_rtp_port=35000-35099",  # baresip's are 31000-34999
            "[proxy_0]",
            f"reg_proxy=<sip:{self.proxy};transport=udp>",
            f"reg_identity=<sip:{self.user}@{self.domain}>",
            f"reg_expires={self.expires}",
            "reg_sendregister=1",
            "[auth_info_0]",
            f"username={self.user}",
            f"userid={self.user}",
            f"passwd={self.password}",
            "",
        ])  # fmt: skip

    def start(self, timeout: float = 10.0) -> Linphonec:
        # without its data folder liblinphone never brings its SIP transports up
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.rc_path.write_text(self.rc_text())
        master, slave = pty.openpty()
        self._master = master
        env = dict(os.environ, HOME=str(self.home), TERM="dumb")
        try:
            self._spawn([self.binary, "-c", str(self.rc_path), "-a", "-d", "6", "-l",
                         str(self.log_path)], stdin=slave, stdout=slave, stderr=slave,
                        env=env)  # fmt: skip
        finally:
            os.close(slave)
        self._pump = threading.Thread(target=self._drain, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("while starting")
            if "Creating listening point" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"linphonec did not listen:\n{self.log()[-3000:]}")

    def _drain(self) -> None:
        """Copy the console to console.log; a full pty would block linphonec."""
        assert self._master is not None
        with self.console_path.open("ab") as out:
            while True:
                try:
                    ready, _, _ = select.select([self._master], [], [], 0.5)
                    if not ready:
                        if self.proc is not None and self.proc.poll() is not None:
                            return
                        continue
                    data = os.read(self._master, 4096)
                except (OSError, ValueError):
                    return
                if not data:
                    return
                out.write(data)
                out.flush()

    def command(self, text: str) -> None:
        assert self._master is not None, "start() first"
        os.write(self._master, text.encode() + b"\n")

    def console(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log())
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"linphonec: no {pattern!r} in {timeout}s\n"
                                     f"{self.log()[-4000:]}")  # fmt: skip
            self._check_alive(f"waiting for {pattern!r}")
            time.sleep(0.1)

    def wait_registered(self, timeout: float = 10.0) -> None:
        self.wait_log(r"to \[LinphoneRegistrationOk\]", timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.alive():
            with contextlib.suppress(OSError):
                self.command("quit")
            assert self.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(3)
        code = super().stop(timeout)
        if self._pump is not None:
            self._pump.join(2)
            self._pump = None
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        return code


# ------------------------------------------------------------------------------- tcpdump


class Datagram(NamedTuple):
    """One UDP datagram of a capture."""

    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class Tcpdump(_Process):
    """tcpdump writing what crosses the loopback interface and matches ``bpf`` (a capture
    filter: ``"udp and dst portrange 31000-31199"``) to a pcap in its folder; ``start()``
    returns once it listens, ``stop()`` flushes the file, ``datagrams()`` reads it back (UDP
    over IPv4)."""

    name = "tcpdump"

    def __init__(self, workdir: Path, bpf: str) -> None:
        self.binary = _require("tcpdump", "tcpdump")
        super().__init__(workdir)
        self.bpf = bpf
        self.pcap_path = workdir / "capture.pcap"

    def start(self, timeout: float = 10.0) -> Tcpdump:
        # -U: each packet written when it comes, -s 0: whole packets, -n: no name look-ups
        self._spawn([self.binary, "-i", "lo", "-n", "-U", "-s", "0", "-w", str(self.pcap_path),
                     self.bpf])  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive("while starting")
            if "listening on" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tcpdump not listening:\n{self.log()[-3000:]}")

    def datagrams(self) -> list[Datagram]:
        """The UDP datagrams captured so far, in order."""
        data = self.pcap_path.read_bytes() if self.pcap_path.exists() else b""
        if len(data) < 24:
            return []
        endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        link = struct.unpack_from(f"{endian}I", data, 20)[0]
        skip = {0: 4, 1: 14, 113: 16, 276: 20}.get(link)  # null, Ethernet, SLL, SLL2
        if skip is None:
            raise ValueError(f"{self.pcap_path}: link type {link} not read here")
        out: list[Datagram] = []
        offset = 24
        while offset + 16 <= len(data):
            captured = struct.unpack_from(f"{endian}I", data, offset + 8)[0]
            frame = data[offset + 16 : offset + 16 + captured]
            offset += 16 + captured
            ip = frame[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            udp = ip[(ip[0] & 0x0F) * 4 :]
            if len(udp) < 8:
                continue
            sport, dport, length = struct.unpack_from("!HHH", udp)
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            out.append(Datagram((src, sport), (dst, dport), udp[8:length]))
        return out


def rtcp_packets(payload: bytes) -> list[tuple[int, bytes]] | None:
    """(packet type, whole packet) of each packet of a compound RTCP datagram (RFC 3550
    §6.1: version 2, types 192-223, lengths adding up); None when it is not RTCP."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(payload):
        if len(payload) - offset < 4 or payload[offset] >> 6 != 2:
            return None
        kind = payload[offset + 1]
        end = offset + (int.from_bytes(payload[offset + 2 : offset + 4], "big") + 1) * 4
        if not 192 <= kind <= 223 or end > len(payload):
            return None
        out.append((kind, payload[offset:end]))
        offset = end
    return out or None


# ----------------------------------------------------------------------------- tone detection


def _goertzel_power(samples: list[float], rate: int, frequency: float) -> float:
    """|X(f)|^2 of ``samples`` at ``frequency`` (the Goertzel recurrence, one DFT bin)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_seconds(
    path: Path, frequency: float, *, block_ms: int = 100, min_share: float = 0.5,
    min_level: float = 100.0,
) -> float:  # fmt: skip
    """Seconds of the WAV (16-bit PCM, first channel) in which a ``frequency`` Hz tone
    carries at least ``min_share`` of the energy, in blocks of ``block_ms``; blocks quieter
    than ``min_level`` (RMS, of 32767) count as silence, never as the tone."""
    with wave.open(str(path), "rb") as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    values = struct.unpack(f"<{len(frames) // 2}h", frames)[::channels]
    size = max(1, rate * block_ms // 1000)
    found = 0
    for start in range(0, len(values) - size + 1, size):
        block = [float(v) for v in values[start : start + size]]
        energy = sum(v * v for v in block)
        if math.sqrt(energy / size) < min_level:
            continue
        # a sine of amplitude A: energy A^2 N/2, Goertzel power (A N/2)^2
        share = _goertzel_power(block, rate, frequency) / (energy * size / 2)
        if share >= min_share:
            found += 1
    return found * size / rate
