"""Protecting the PBX: real SIPVicious scanners (svmap, svwar, svcrack), a password-guessing
PBX played by SIPp, and a SIPp flood, each against a running node; then calls still work.

The node answers strangers here (``unknown_sources: reject``) and accepts REGISTERs from
anywhere (a PBX with ``hosts: registered``): the setup that exposes the most, so that the
filters, not the silent drop of unknown sources, are what stops the tools. ``never_ban`` is
emptied so that loopback can be banned.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX, REMOTE, INTRUDER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6"
SCANNER = "127.0.0.1"  # SIPVicious is only ever pointed at 127.0.0.1 (corpus TOOLS.md)
DID = "+33140000500"


def exposed_config(sbc_port: int, op_port: int, pbx_port: int, **security: Any) -> dict[str, Any]:
    return {
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}"]},
        "media": {"mode": "bypass"},
        "peers": {
            "operator": {"role": "carrier", "hosts": [f"{OPERATOR}:{op_port}"], "health": False},
            "pbx": {"role": "pbx", "hosts": [f"{PBX}:{pbx_port}"], "health": False,
                    "dids": ["+331*"]},
            "remote-pbx": {"role": "pbx", "hosts": "registered", "match": {"username": "remote1"},
                           "password": "secret", "dids": [DID]},
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
        "security": {"unknown_sources": "reject", "never_ban": [], **security},
    }  # fmt: skip


def call_still_works(make: Callable[..., Sipp], sbc_port: int, op_port: int, pbx_port: int) -> None:
    pbx = make("uas_basic", local_ip=PBX, local_port=pbx_port, calls=1).start()
    make("uac_basic", local_ip=OPERATOR, local_port=op_port, remote=("127.0.0.1", sbc_port),
         service="+33123456789", calls=1).start().check()  # fmt: skip
    pbx.check()


def sipvicious(tool: str, sbc_port: int, *args: str) -> str:
    """Run one SIPVicious tool against the node, bounded in time; its whole output."""
    src = str(free_port(SCANNER))
    cmd = [tool, SCANNER, f"-p{sbc_port}", "-x", SCANNER, "-b", SCANNER, "-P", src, *args]
    done = subprocess.run(["timeout", "60", *cmd], capture_output=True, text=True, timeout=70)
    return done.stdout + done.stderr


def received(peer: Sipp, status: int, method: str = r"\w+") -> int:
    """Responses ``status`` to ``method`` (any by default) that reached a SIPp peer, each
    reception counted once. SIPp answers an unexpected response with a BYE: with ``reject``,
    each OPTIONS of a stranger is followed by a BYE, also refused."""
    blocks = peer.messages().split("\n-----------------------------------------------")
    pattern = re.compile(rf"message received \[\d+\] bytes :\s+SIP/2\.0 {status} .*"
                         rf"^CSeq: \d+ {method}\s*$", re.S | re.M)  # fmt: skip
    return sum(1 for block in blocks if pattern.search(block))


needs_sipvicious = pytest.mark.skipif(
    shutil.which("svmap") is None, reason="SIPVicious is not on PATH (package sipvicious)"
)


@needs_sipvicious
@pytest.mark.parametrize(
    ("tool", "args", "found"),
    [
        ("svmap", [], "found nothing"),
        ("svmap", ["-c"], "found nothing"),  # compact: no User-Agent at all
        ("svmap", ["-m", "INVITE", "-e", "100"], "found nothing"),
        ("svwar", ["-e100-110", "-t", "0.05", "--maximumtime", "5"], "found nothing"),
        ("svcrack", ["-u", "remote1", "-r1000-1010", "-t", "0.05", "--maximumtime", "5"],
         "no server response"),
    ],
    ids=["svmap", "svmap-compact", "svmap-invite", "svwar", "svcrack"],
)  # fmt: skip
def test_scanners_find_nothing_and_are_banned(
    tool: str, args: list[str], found: str,
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss],
) -> None:  # fmt: skip
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    sbc = sbc_factory(exposed_config(sbc_port, op_port, pbx_port))
    output = sipvicious(tool, sbc_port, *args)
    assert found in output, output
    assert "remote1" not in output.split(found)[-1]  # no password or extension listed
    assert f"banned {SCANNER} for 86400 s: scanner" in sbc.log()
    call_still_works(sipp_factory, sbc_port, op_port, pbx_port)


def test_password_guessing_bans_the_source_and_only_it(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    """A SIPp PBX REGISTERs with a wrong password: each attempt is challenged again (401)
    until ``auth_failures.max``; then nothing answers that source, even the right password,
    while the same account from another address registers."""
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    guarded = exposed_config(sbc_port, op_port, pbx_port,
                             auth_failures={"max": 3, "window": 60, "ban": 3600})  # fmt: skip
    sbc = sbc_factory(guarded)
    guess = sipp_factory("uac_register", local_ip=REMOTE, remote=("127.0.0.1", sbc_port),
                         service="remote1", calls=5, rate=10, timeout=8,
                         extra_args=["-au", "remote1", "-ap", "guess"]).start()  # fmt: skip
    guess.wait(timeout=15)
    # 3 guesses: challenge then refusal each; the 4th and 5th REGISTERs meet silence
    assert received(guess, 401, "REGISTER") == 6, guess.messages()[-3000:]
    assert f"banned {REMOTE} for 3600 s: 3 failed authentications" in sbc.log()
    right = sipp_factory("uac_register", local_ip=REMOTE, remote=("127.0.0.1", sbc_port),
                         service="remote1", calls=1, timeout=3,
                         extra_args=["-au", "remote1", "-ap", "secret"]).start()  # fmt: skip
    right.wait(timeout=8)
    assert "message received" not in right.messages()  # no answer at all
    sipp_factory("uac_register", local_ip="127.0.0.5", remote=("127.0.0.1", sbc_port),
                 service="remote1", calls=1, timeout=8,
                 extra_args=["-au", "remote1", "-ap", "secret"]).start().check()  # fmt: skip
    assert "peer remote-pbx registered from" in sbc.log()


def test_a_flood_from_a_stranger_is_cut_short_by_a_ban(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    """200 OPTIONS at 200/s from an address no peer matches: the first ones get 403
    (``reject``), then the source is banned and the rest meet silence; peers go on."""
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    sbc = sbc_factory(exposed_config(sbc_port, op_port, pbx_port,
                                     flood={"window": 2, "max": 40, "ban": 600}))  # fmt: skip
    flood = sipp_factory("uac_options", local_ip=INTRUDER, remote=("127.0.0.1", sbc_port),
                         calls=200, rate=200, timeout=6).start()  # fmt: skip
    flood.wait(timeout=12)
    answered = received(flood, 403)  # to OPTIONS and to SIPp's BYEs: 2 messages per call
    assert 40 <= answered <= 80, answered  # a window boundary may let up to twice max through
    assert f"banned {INTRUDER} for 600 s: more than 40 messages in 2 s" in sbc.log()
    call_still_works(sipp_factory, sbc_port, op_port, pbx_port)


def test_never_ban_addresses_are_only_logged(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    sbc = sbc_factory(exposed_config(sbc_port, op_port, pbx_port, never_ban=[INTRUDER],
                                     flood={"window": 2, "max": 10, "ban": 600}))  # fmt: skip
    flood = sipp_factory("uac_options", local_ip=INTRUDER, remote=("127.0.0.1", sbc_port),
                         calls=40, rate=100, timeout=6).start()  # fmt: skip
    flood.wait(timeout=12)
    assert received(flood, 403, "OPTIONS") == 40
    assert f"{INTRUDER} not banned (never_ban)" in sbc.log()


def test_a_method_outside_security_methods_gets_405_with_the_allowed_ones(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    """The operator is a peer, but OPTIONS is not in its SBC's ``security.methods``."""
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config = exposed_config(sbc_port, op_port, pbx_port,
                            methods=["INVITE", "ACK", "BYE", "CANCEL", "PRACK"])  # fmt: skip
    sbc_factory(config)
    probe = sipp_factory("uac_options", local_ip=OPERATOR, local_port=op_port,
                         remote=("127.0.0.1", sbc_port), calls=1, timeout=3).start()  # fmt: skip
    probe.wait(timeout=8)  # it wanted a 200
    assert received(probe, 405, "OPTIONS") == 1
    answer = probe.messages().split("SIP/2.0 405", 1)[1].split("\n\n", 1)[0]
    assert "Allow: INVITE, BYE, CANCEL, PRACK" in answer
