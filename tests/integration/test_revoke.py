"""A key revoked while its connection is up: CURVE checked it at the
handshake, and libzmq keeps the connection, so the Receiver refuses what
comes on it from then on, under no identity at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_kit import Chat, Inbox
from receiver_rig import ALICE, Rig

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.message import Priority
from p2p0mq_actors.node import Node
from p2p0mq_actors.transport.keystore import KeyStore

pytestmark = pytest.mark.integration


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    yield rig
    rig.close()


@pytest.mark.parametrize("owned", [True, False], ids=["key-with-owner", "key-without"])
def test_what_comes_on_a_connection_after_its_key_is_revoked_is_refused(
    rig: Rig, owned: bool
) -> None:
    if owned:
        rig.allowed.add(rig.alice_keys.public, ALICE)
    client = rig.client()
    rig.send(client, rig.message(1))
    rig.wait_stats(lambda s: s["dispatched"] == 1)
    rig.proxy.deny(rig.alice_keys.public).get(timeout=5)
    rig.send(client, rig.message(2), rig.message(3, source=b"mallory"))
    stats = rig.wait_stats(lambda s: s["rejected"]["revoked"] == 2)
    assert stats["dispatched"] == 1
    assert [m.message_id for m in rig.delivered()] == [1]
    rig.allowed.add(rig.alice_keys.public, ALICE if owned else None)  # admitted again
    rig.send(client, rig.message(4))
    rig.wait_stats(lambda s: s["dispatched"] == 2)


def _stats_until(node: Node, done: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for _ in range(200):  # each stats() waits behind a Receiver step
        stats = node.stats()
        if done(stats):
            break
    return stats


@contextlib.contextmanager
def chatting(tmp_path: Path) -> Iterator[tuple[Node, Node, Inbox]]:
    """Alice and Bob, each the other's peer, once Bob's Chat has Alice's first message."""
    alice_keys, bob_keys = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    with Node(b"alice", keys=alice_keys) as alice, Node(b"bob", keys=bob_keys) as bob:
        inbox = Inbox()
        bob.add_concern(Chat, inbox=inbox)
        bob.add_peer(b"alice", alice.endpoint, alice_keys.public_key(b"alice"))
        alice.add_peer(b"bob", bob.endpoint, bob_keys.public_key(b"bob"))
        alice.send(b"bob", b"chat", {"n": 1}, priority=Priority.FAST)
        inbox.wait_for(1)
        yield alice, bob, inbox


@pytest.mark.parametrize("key_file", ["as stored", "unreadable"])
def test_a_peer_removed_with_revoke_is_heard_no_more_on_its_open_connection(
    tmp_path: Path, key_file: str
) -> None:
    """Its key file unreadable, revoking used to do nothing at all."""
    with chatting(tmp_path) as (alice, bob, inbox):
        stored = tmp_path / "b" / "public_keys" / "alice.key"
        if key_file == "unreadable":
            stored.write_text("junk\n")
        bob.remove_peer(b"alice", revoke=True)
        assert alice.keys.public_key(b"alice") not in bob.allowed and not stored.exists()
        alice.send(b"bob", b"chat", {"n": 2}, priority=Priority.FAST)
        stats = _stats_until(bob, lambda s: s["receiver"]["rejected"]["revoked"] == 1)
        assert stats["receiver"]["rejected"]["revoked"] == 1
        assert [m.payload["n"] for m in inbox.messages] == [1]


def test_a_peers_new_key_replaces_its_old_one_and_revoking_refuses_both(
    tmp_path: Path,
) -> None:
    bob_keys = KeyStore(tmp_path / "b")
    old_store = KeyStore(tmp_path / "a-old")
    with (
        Node(b"bob", keys=bob_keys) as bob,
        Node(b"alice", keys=old_store) as alice_old,
    ):
        inbox = Inbox()
        bob.add_concern(Chat, inbox=inbox)
        old = old_store.public_key(b"alice")
        bob.add_peer(b"alice", alice_old.endpoint, old)
        new = KeyStore(tmp_path / "a-new").create(b"alice").public
        with pytest.raises(ConfigurationError, match="remove_peer it first"):
            bob.add_peer(b"alice", alice_old.endpoint, new)  # known, with another key
        assert old in bob.allowed and new not in bob.allowed
        bob.remove_peer(b"alice")
        bob.add_peer(b"alice", alice_old.endpoint, new)  # the key rotated
        assert old not in bob.allowed and bob.allowed.keys_of(b"alice") == [new]
        alice_old.add_peer(b"bob", bob.endpoint, bob_keys.public_key(b"bob"))
        alice_old.send(b"bob", b"chat", {"n": 1}, priority=Priority.FAST)
        stats = _stats_until(bob, lambda s: s["receiver"]["zap_refused"] >= 1)
        assert stats["receiver"]["zap_refused"] >= 1  # the old key: refused
        bob.remove_peer(b"alice", revoke=True)
        assert bob.allowed.keys_of(b"alice") == [] and new not in bob.allowed
        assert inbox.messages == []


def test_a_key_given_for_a_second_peer_or_the_nodes_own_uuid_is_refused(
    tmp_path: Path,
) -> None:
    with Node(b"bob", keys=KeyStore(tmp_path / "b")) as bob:
        key = KeyStore(tmp_path / "a").create(b"alice").public
        bob.add_peer(b"alice", "tcp://127.0.0.1:1", key)
        with pytest.raises(ConfigurationError, match="is peer b'alice''s"):
            bob.add_peer(b"carol", "tcp://127.0.0.1:2", key)
        with pytest.raises(ConfigurationError, match="cannot add itself"):
            bob.add_peer(b"bob", "tcp://127.0.0.1:3", key)
        assert bob.allowed.owner(key) == b"alice"
        assert set(bob.keys.public_keys()) == {b"alice", b"bob"}
        assert bob.keys.public_key(b"bob") != key
        assert b"carol" not in bob.stats()["peers"]
        bob.add_peer(b"alice", "tcp://127.0.0.1:1", key)  # the same again: nothing changes


def test_a_store_with_one_key_under_two_uuids_is_refused_at_start(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "b")
    key = KeyStore(tmp_path / "a").create(b"alice").public
    keys.add_public_key(b"alice", key)
    keys.add_public_key(b"carol", key)
    with pytest.raises(ConfigurationError, match="a key belongs to one peer"):
        Node(b"bob", keys=keys)
