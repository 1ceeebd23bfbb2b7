"""A node stopped from one of its own threads (a Concern's handler): it
does not wait for the thread it runs in, and stops all the same."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.node import Node, running_nodes
from p2p0mq_actors.transport.keystore import KeyStore

pytestmark = pytest.mark.integration


class Stopper(Concern):
    """Stops its node from its handler."""

    command = b"stop"

    def __init__(self, *, node: Node, done: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node, self.done = node, done

    def on_request(self, message: Message) -> None:
        self.node.stop()
        self.done.set()


class InlineStopper(Stopper):
    """The same, run inline by the Receiver's thread."""

    inline = True


class InlineRemover(InlineStopper):
    """Removes itself from its inline handler."""

    def on_request(self, message: Message) -> None:
        self.node.remove_concern(self.command)
        self.done.set()


@pytest.mark.parametrize("kind", [Stopper, InlineStopper, InlineRemover])
def test_a_node_stopped_from_a_concerns_handler_waits_for_no_thread_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: type[Stopper]
) -> None:
    caplog.set_level(logging.WARNING)
    done = threading.Event()
    with Node(b"alice", keys=KeyStore(tmp_path / "a")) as alice:
        bob = Node(b"bob", keys=KeyStore(tmp_path / "b"), timeout=2.0)
        bob.add_concern(kind, node=bob, done=done)
        alice.add_peer(b"bob", bob.endpoint, bob.keys.public_key(b"bob"))
        bob.add_peer(b"alice", alice.endpoint, alice.keys.public_key(b"alice"))
        alice.send(b"bob", b"stop", {}, priority=Priority.FAST)
        assert done.wait(30)
        if kind is InlineRemover:
            bob.stop()  # (it removed its Concern only)
        assert bob not in running_nodes()
    waited = [r.getMessage() for r in caplog.records if "within" in r.getMessage()]
    assert waited == []  # no "did not stop within" / "did not answer ... within"
