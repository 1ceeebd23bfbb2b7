"""A key revoked while its connection is up: CURVE checked it at the
handshake, and libzmq keeps the connection, so the Receiver refuses what
comes on it from then on, under no identity at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_kit import Chat, Inbox
from receiver_rig import ALICE, Rig

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


def test_a_peer_removed_with_revoke_is_heard_no_more_on_its_open_connection(
    tmp_path: Path,
) -> None:
    alice_keys, bob_keys = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    with Node(b"alice", keys=alice_keys) as alice, Node(b"bob", keys=bob_keys) as bob:
        inbox = Inbox()
        bob.add_concern(Chat, inbox=inbox)
        bob.add_peer(b"alice", alice.endpoint, alice_keys.public_key(b"alice"))
        alice.add_peer(b"bob", bob.endpoint, bob_keys.public_key(b"bob"))
        alice.send(b"bob", b"chat", {"n": 1}, priority=Priority.FAST)
        inbox.wait_for(1)
        bob.remove_peer(b"alice", revoke=True)
        alice.send(b"bob", b"chat", {"n": 2}, priority=Priority.FAST)
        stats: dict[str, Any] = {}
        for _ in range(200):  # each stats() waits behind a Receiver step
            stats = bob.stats()
            if stats["receiver"]["rejected"]["revoked"] == 1:
                break
        assert stats["receiver"]["rejected"]["revoked"] == 1
        assert [m.payload["n"] for m in inbox.messages] == [1]
