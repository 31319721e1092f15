from pkiss.registration.bindings import Bindings
from pkiss.sip.transaction import Addr

A = Addr("udp", "192.0.2.1", 5062)
B = Addr("udp", "192.0.2.2", 5070)


def test_register_lookup_and_expiry() -> None:
    r = Bindings()
    assert r.lookup("pbx", 0.0) is None
    r.register("pbx", "sip:remote1@192.0.2.1:5062", A, 60, now=100.0)
    binding = r.lookup("pbx", 159.0)
    assert binding is not None and binding.source == A
    assert binding.contact == "sip:remote1@192.0.2.1:5062"
    assert r.peer_at(A, 159.0) == "pbx"
    assert r.lookup("pbx", 160.0) is None
    assert r.peer_at(A, 160.0) is None


def test_last_register_wins_and_unregister() -> None:
    r = Bindings()
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=0.0)
    r.register("pbx", "sip:b@192.0.2.2", B, 60, now=1.0)
    binding = r.lookup("pbx", 2.0)
    assert binding is not None and binding.source == B
    assert r.peer_at(A, 2.0) is None and r.peer_at(B, 2.0) == "pbx"
    r.unregister("pbx")
    assert r.lookup("pbx", 2.0) is None and r.peer_at(B, 2.0) is None


def test_retain_forgets_removed_peers() -> None:
    r = Bindings()
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=0.0)
    r.retain({"other"})
    assert r.lookup("pbx", 1.0) is None
