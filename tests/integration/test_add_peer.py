"""``Node.add_peer`` for a peer it cannot connect, and a start whose
clean-up fails too: the caller sees the error that counts, and nothing is
left half done."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from p2p0mq_actors import node as node_module
from p2p0mq_actors.core.errors import ConfigurationError, TransportError
from p2p0mq_actors.core.message import Priority
from p2p0mq_actors.core.ports import PeerAddress
from p2p0mq_actors.node import Node, running_nodes
from p2p0mq_actors.transport.keystore import KeyStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("endpoint", ["bogus", "tcp://", "tcp://127.0.0.1:notaport"])
def test_a_peer_at_an_endpoint_it_cannot_connect_to_is_an_error_and_leaves_no_trace(
    tmp_path: Path, endpoint: str
) -> None:
    with (
        Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice,
        Node(b"bob", keys=KeyStore(tmp_path / "b")) as bob,
    ):
        key = bob.keys.public_key(b"bob")
        with pytest.raises(ConfigurationError, match=f"peer b'bob' at {endpoint!r}"):
            alice.add_peer(b"bob", endpoint, key)
        assert b"bob" not in alice.keys.public_keys()
        assert key not in alice.allowed
        assert b"bob" not in alice.stats()["peers"]
        alice.add_peer(b"bob", bob.endpoint, key)  # then where it is
        bob.add_peer(b"alice", alice.endpoint, alice.keys.public_key(b"alice"))
        alice.send(b"bob", b"chat", {"n": 1}, priority=Priority.FAST)
        assert alice.stats()["peers"][b"bob"]["state"] != "GONE"


def test_a_peer_re_added_at_a_wrong_endpoint_keeps_its_stored_key(tmp_path: Path) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        old, new = (KeyStore(tmp_path / n).create(b"bob").public for n in ("k1", "k2"))
        alice.keys.add_public_key(b"bob", old)
        alice.allowed.add(old, b"bob")
        with pytest.raises(ConfigurationError):
            alice.add_peer(b"bob", "bogus", new)
        assert alice.keys.public_key(b"bob") == old
        assert old in alice.allowed and new not in alice.allowed


def test_a_start_that_fails_raises_its_own_error_even_if_stopping_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> bool:
        raise RuntimeError("ending the context failed too")

    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        monkeypatch.setattr(node_module, "end_context", broken)
        with pytest.raises(ConfigurationError, match="cannot listen"):
            Node(b"bob", keys=KeyStore(tmp_path / "b"), listen=alice.endpoint)
        monkeypatch.undo()
    assert running_nodes() == []


def test_a_peer_added_while_another_peers_connection_cannot_be_made_again_is_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        kx, ky = (KeyStore(tmp_path / n).create(n.encode()).public for n in ("x", "y"))
        alice.add_peer(b"x", "tcp://127.0.0.1:1", kx)
        sender = alice._sender
        assert sender is not None
        sender.connections()[b"x"].stop(timeout=5)  # x's connection died
        factory, real = sender._sockets, sender._sockets.connect

        def connect(address: PeerAddress) -> Any:
            if address.uuid == b"x":
                raise TransportError("too many sockets (x)")
            return real(address)

        monkeypatch.setattr(factory, "connect", connect)
        alice.add_peer(b"y", "tcp://127.0.0.1:2", ky)  # x's failure is not y's
        assert b"y" in sender.connections() and ky in alice.allowed
        assert b"y" in alice.keys.public_keys()
        assert "too many sockets (x)" in caplog.text


def test_a_failed_add_peer_leaves_the_admitted_keys_exactly_as_they_were(tmp_path: Path) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        stored = KeyStore(tmp_path / "s").create(b"bob").public
        alice.keys.add_public_key(b"bob", stored)  # in the store, not admitted
        carols = KeyStore(tmp_path / "c").create(b"carol").public
        alice.allowed.add(carols, b"carol")  # admitted, as carol's
        with pytest.raises(ConfigurationError):
            alice.add_peer(b"bob", "bogus")
        with pytest.raises(ConfigurationError):
            alice.add_peer(b"dave", "bogus", carols)
        assert stored not in alice.allowed
        assert alice.allowed.owner(carols) == b"carol"
        assert alice.keys.public_key(b"bob") == stored
        assert b"dave" not in alice.keys.public_keys()


@pytest.mark.parametrize("endpoint", [None, 5, b"tcp://127.0.0.1:1", ""])
def test_an_endpoint_that_is_not_a_str_is_a_configuration_error_before_anything_is_stored(
    tmp_path: Path, endpoint: object
) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        key = KeyStore(tmp_path / "b").create(b"bob").public
        with pytest.raises(ConfigurationError, match="endpoint of peer b'bob'"):
            alice.add_peer(b"bob", endpoint, key)  # type: ignore[arg-type]
        assert b"bob" not in alice.keys.public_keys() and key not in alice.allowed


def _at_once(*calls: Any) -> list[BaseException | None]:
    """Run ``calls`` in threads released together; what each raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(5)
        try:
            calls[i]()
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return outcomes


def test_two_threads_adding_one_peer_with_two_keys_leave_the_winners_key_alone(
    tmp_path: Path,
) -> None:
    """The loser's key used to stay admitted, and often in the key store,
    while the connection used the winner's (20 trials of 20)."""
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        for trial in range(10):
            uuid = f"bob{trial}".encode()
            keys = [KeyStore(tmp_path / f"k{trial}{i}").create(uuid).public for i in (0, 1)]
            outcomes = _at_once(
                *(lambda k=k, u=uuid: alice.add_peer(u, "tcp://127.0.0.1:1", k) for k in keys)
            )
            assert sum(o is None for o in outcomes) == 1
            assert all(isinstance(o, (ConfigurationError, type(None))) for o in outcomes)
            winner = keys[outcomes.index(None)]
            assert alice.keys.public_key(uuid) == winner
            assert alice.allowed.keys_of(uuid) == [winner]


def test_one_key_added_for_two_peers_at_once_leaves_a_store_the_node_starts_on(
    tmp_path: Path,
) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        key = KeyStore(tmp_path / "k").create(b"x").public
        outcomes = _at_once(
            lambda: alice.add_peer(b"x", "tcp://127.0.0.1:1", key),
            lambda: alice.add_peer(b"y", "tcp://127.0.0.1:2", key),
        )
        assert sum(o is None for o in outcomes) == 1
        assert list(alice.keys.public_keys().values()).count(key) == 1
    with Node(b"alice", keys=KeyStore(tmp_path / "a")):
        pass  # it used to refuse: the key was stored under both uuids


def test_a_revoke_racing_the_peers_re_add_ends_in_one_order_or_the_other(tmp_path: Path) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        key = KeyStore(tmp_path / "k").create(b"x").public
        for _ in range(10):
            alice.add_peer(b"x", "tcp://127.0.0.1:1", key)
            _at_once(
                lambda: alice.add_peer(b"x", "tcp://127.0.0.1:1", key),
                lambda: alice.remove_peer(b"x", revoke=True),
            )
            known = b"x" in alice.stats()["peers"]
            assert (key in alice.allowed) is known  # connected only with its key admitted
            assert (b"x" in alice.keys.public_keys()) is known


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:\u00b2", "tcp://127.0.0.1:99999"])
def test_an_endpoint_refused_by_its_check_leaves_no_key_behind(
    tmp_path: Path, endpoint: str
) -> None:
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        key = KeyStore(tmp_path / "k").create(b"x").public
        with pytest.raises(ConfigurationError):
            alice.add_peer(b"x", endpoint, key)
        assert key not in alice.allowed and b"x" not in alice.keys.public_keys()
        with pytest.raises(ConfigurationError, match="revoke its own key"):
            alice.remove_peer(b"alice", revoke=True)
