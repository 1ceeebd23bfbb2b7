"""``Node.add_peer`` for a peer it cannot connect, and a start whose
clean-up fails too: the caller sees the error that counts, and nothing is
left half done."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p0mq_actors import node as node_module
from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.message import Priority
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
