from pkiss.registration.bindings import Bindings, RegisteredContact
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


# ---------------------------------------------------------------- bindings of other nodes
TCP = Addr("tcp", "192.0.2.9", 40123)


def shared(source: Addr = B, registered_at: float = 10.0, life: float = 60.0,
           node: str = "sbc2") -> RegisteredContact:  # fmt: skip
    return RegisteredContact("sip:b@192.0.2.2", source, registered_at + life, node, registered_at)


def learning(*names: str) -> Bindings:
    r = Bindings()
    r.retain(names or {"pbx"})
    return r


def test_another_nodes_udp_binding_is_where_calls_go_and_whom_calls_come_from() -> None:
    r = learning()
    assert r.learn("pbx", shared())
    binding = r.lookup("pbx", 11.0)
    assert binding is not None and binding.source == B and binding.node == "sbc2"
    assert r.peer_at(B, 11.0) == "pbx"
    assert r.lookup("pbx", 70.0) is None and r.peer_at(B, 70.0) is None  # it expires here too


def test_another_nodes_tcp_binding_cannot_be_reached_from_here() -> None:
    r = learning()
    r.learn("pbx", shared(TCP))
    assert r.lookup("pbx", 11.0) is None  # its connection ends at the other node: 480
    # without its own binding; with one, the node sends on its own connection
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=5.0)
    binding = r.lookup("pbx", 11.0)
    assert binding is not None and binding.source == A and binding.node == ""


def test_the_newest_register_wins_across_nodes() -> None:
    r = learning()
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=5.0)
    r.learn("pbx", shared(registered_at=10.0))
    assert r.lookup("pbx", 11.0).source == B  # type: ignore[union-attr]
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=12.0)
    assert r.lookup("pbx", 13.0).source == A  # type: ignore[union-attr]
    # the PBX sends from either address: both are its
    assert r.peer_at(A, 13.0) == "pbx" and r.peer_at(B, 13.0) == "pbx"
    # an older one learned late changes nothing
    assert not r.learn("pbx", shared(Addr("udp", "192.0.2.3", 5060), registered_at=8.0))
    assert r.peer_at(B, 13.0) == "pbx"


def test_learning_is_bounded_by_the_registered_peers_of_the_config() -> None:
    assert not Bindings().learn("pbx", shared())  # no config yet: nothing learned
    r = learning("pbx")
    assert not r.learn("stranger", shared())
    assert not r.learn("pbx", shared(node=""))  # not another node's
    for n in range(100):
        r.learn("pbx", shared(Addr("udp", "192.0.2.50", 5000 + n), registered_at=10.0 + n))
    assert len(r._by_source) == 1 and r.peer_at(Addr("udp", "192.0.2.50", 5099), 111.0) == "pbx"


def test_a_removal_anywhere_removes_the_older_bindings_everywhere() -> None:
    r = learning()
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=5.0)
    r.learn("pbx", shared(registered_at=10.0))
    assert not r.forget("pbx", at=4.0)  # made before both: both stay
    assert r.forget("pbx", at=11.0)
    assert r.lookup("pbx", 12.0) is None and r.peer_at(A, 12.0) is None
    assert r.peer_at(B, 12.0) is None
    # one made after the removal stays
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=20.0)
    assert not r.forget("pbx", at=19.0) and r.lookup("pbx", 21.0) is not None


def test_a_removal_here_removes_another_nodes_binding_and_is_told() -> None:
    r = learning()
    told: list[str] = []
    r.on_change = told.append
    r.learn("pbx", shared())
    r.unregister("pbx")
    assert r.lookup("pbx", 11.0) is None and told == ["pbx"]
    r.register("pbx", "sip:a@192.0.2.1", A, 60, now=12.0)
    assert told == ["pbx", "pbx"] and r.mine(13.0) == ["pbx"] and r.mine(73.0) == []


def test_a_reload_forgets_learned_bindings_of_peers_gone() -> None:
    r = learning("pbx", "other")
    r.learn("other", shared())
    r.retain({"pbx"})
    assert r.lookup("other", 11.0) is None and r.peer_at(B, 11.0) is None
    assert not r.learn("other", shared(registered_at=12.0))


def test_two_peers_from_one_address_keep_their_own_index() -> None:
    r = learning("pbx", "other")
    r.register("pbx", "sip:a@192.0.2.2", B, 60, now=0.0)
    r.learn("other", shared(registered_at=1.0))  # the same source
    assert r.peer_at(B, 2.0) == "other"
    r.forget("pbx", at=3.0)
    assert r.peer_at(B, 2.0) == "other"
