"""A multi-tenant PBX behind one operator trunk: two tenants on one host, told apart by the
X-Tenant header their PBX sends, each with its own domain, numbers and caller-ID rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sbc import Pkiss, free_port
from sipp import Sipp, sipp_available

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sipp_available(), reason="sipp is not on PATH (package sip-tester)"),
]

OPERATOR, PBX = "127.0.0.2", "127.0.0.3"


def _tenant(name: str, pbx_port: int, dids: str) -> dict[str, Any]:
    return {
        "role": "pbx",
        "hosts": [f"{PBX}:{pbx_port}"],
        "domain": f"{name}.pbx.local",
        "match": {"source": [PBX], "header": {"X-Tenant": name}},
        "dids": [dids],
        "caller_id": "enforce",
        "health": False,
    }


@pytest.fixture
def tenants(
    sbc_factory: Callable[..., Pkiss],
) -> tuple[Pkiss, int, int, int]:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)
    config = {
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}"]},
        "media": {"mode": "bypass"},
        "peers": {
            "operator": {
                "role": "carrier",
                "hosts": [f"{OPERATOR}:{op_port}"],
                "health": False,
            },
            "acme": _tenant("acme", pbx_port, "+3314*"),
            "globex": _tenant("globex", pbx_port, "+3315*"),
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
    }
    return sbc_factory(config), sbc_port, op_port, pbx_port


def test_inbound_calls_reach_each_tenant_with_its_domain(
    sipp_factory: Callable[..., Sipp], tenants: tuple[Pkiss, int, int, int]
) -> None:
    _, sbc_port, op_port, pbx_port = tenants
    pbx = sipp_factory("uas_basic", local_ip=PBX, local_port=pbx_port, calls=2).start()
    for called in ("+33140000001", "+33150000001"):
        sipp_factory("uac_basic", local_ip=OPERATOR, local_port=op_port,
                     remote=("127.0.0.1", sbc_port), service=called, caller="+4420123",
                     calls=1).start().check()  # fmt: skip
    pbx.check()
    log = pbx.messages()
    assert "INVITE sip:+33140000001@acme.pbx.local SIP/2.0" in log
    assert "INVITE sip:+33150000001@globex.pbx.local SIP/2.0" in log


def test_outbound_calls_are_attributed_by_tenant_header_and_sealed(
    sipp_factory: Callable[..., Sipp], tenants: tuple[Pkiss, int, int, int]
) -> None:
    _, sbc_port, op_port, pbx_port = tenants
    operator = sipp_factory("uas_basic", local_ip=OPERATOR, local_port=op_port, calls=2).start()

    def call(tenant: str, caller: str) -> Sipp:
        return sipp_factory(
            "uac_tenant", local_ip=PBX, local_port=pbx_port, remote=("127.0.0.1", sbc_port),
            service="+442071234567", caller=caller, keys={"tenant": tenant}, calls=1,
            extra_args=["-nr"],
        ).start()  # fmt: skip

    call("acme", "+33140000001").check()
    call("globex", "+33150000007").check()
    spoof = call("acme", "+33150000007")  # acme presenting globex's number
    assert spoof.wait() != 0
    assert "SIP/2.0 403 " in spoof.messages()
    operator.check()
    assert "X-Tenant" not in operator.messages(), "the tenant header never reaches a carrier"


def test_tenants_told_apart_by_digest_username(
    sipp_factory: Callable[..., Sipp], sbc_factory: Callable[..., Pkiss]
) -> None:
    sbc_port, op_port, pbx_port = free_port(), free_port(OPERATOR), free_port(PBX)

    def tenant(name: str, dids: str) -> dict[str, Any]:
        peer = _tenant(name, pbx_port, dids)
        peer["match"] = {"source": [PBX], "username": name}
        peer["password"] = f"pw-{name}"
        return peer

    sbc_factory({
        "sbc": {"listen": [f"udp:127.0.0.1:{sbc_port}"]},
        "peers": {
            "operator": {"role": "carrier", "hosts": [f"{OPERATOR}:{op_port}"], "health": False},
            "acme": tenant("acme", "+3314*"),
            "globex": tenant("globex", "+3315*"),
        },
        "routes": [{"prefix": "", "via": ["operator"]}],
    })  # fmt: skip
    operator = sipp_factory("uas_basic", local_ip=OPERATOR, local_port=op_port, calls=2).start()

    def call(user: str, password: str, caller: str) -> Sipp:
        return sipp_factory(
            "uac_auth407", local_ip=PBX, local_port=pbx_port, remote=("127.0.0.1", sbc_port),
            service="+442071234567", caller=caller, calls=1,
            extra_args=["-au", user, "-ap", password, "-nr"],
        ).start()  # fmt: skip

    call("acme", "pw-acme", "+33140000001").check()  # 407, then acme's credentials: through
    call("globex", "pw-globex", "+33150000002").check()
    wrong = call("acme", "not-the-password", "+33140000001")
    assert wrong.wait() != 0, "wrong credentials are challenged again, never let through"
    spoof = call("acme", "pw-acme", "+33150000002")  # acme presenting globex's number
    assert spoof.wait() != 0
    assert "SIP/2.0 403 " in spoof.messages()
    operator.check()
    operator_log = operator.messages()
    assert "Proxy-Authorization" not in operator_log and "acme" not in operator_log
