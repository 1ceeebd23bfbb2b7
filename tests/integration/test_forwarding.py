"""A Concern that answers a request with a request of its own, over real
CURVE sockets: it never waits on the future, which tells it when the
answer comes (``ReplyFuture.add_done_callback``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.errors import NodeStoppedError, RequestError
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.node import Node
from p2p0mq_actors.runtime.future import ReplyFuture
from p2p0mq_actors.transport.keystore import KeyStore

pytestmark = pytest.mark.integration


class Lookup(Concern):
    """Carol: doubles ``k``."""

    command = b"lookup"

    def on_request(self, message: Message) -> dict[str, Any]:
        return {"v": message.payload["k"] * 2}


class Forward(Concern):
    """Bob: asks Carol, and answers once she has (or with the error)."""

    command = b"fwd"

    def __init__(self, *, node: Node, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node = node

    def on_request(self, request: Message) -> None:
        future = self.node.request(b"carol", b"lookup", dict(request.payload), timeout=2)
        future.add_done_callback(lambda done: self.actor_ref.tell((request, done)))

    def on_other(self, message: tuple[Message, ReplyFuture[Message]]) -> None:
        request, future = message
        try:
            payload = dict(future.get(timeout=0).payload)
        except (RequestError, NodeStoppedError) as exc:  # as the README's example
            payload = {"error": exc.reason}
        self.node.send_message(request.reply(payload, now=self.clock.now()))  # type: ignore[union-attr]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[bytes, Node]]:
    names = (b"alice", b"bob", b"carol")
    stores = {name: KeyStore(tmp_path / name.decode()) for name in names}
    made: dict[bytes, Node] = {}
    try:
        for name in names:
            made[name] = Node(name, keys=stores[name])
        yield made
    finally:
        for node in made.values():
            node.stop()


def _link(nodes: dict[bytes, Node], a: bytes, b: bytes) -> None:
    nodes[a].add_peer(b, nodes[b].endpoint, nodes[b].keys.public_key(b))
    nodes[b].add_peer(a, nodes[a].endpoint, nodes[a].keys.public_key(a))


def test_a_concern_answers_with_the_answer_to_its_own_request(nodes: dict[bytes, Node]) -> None:
    nodes[b"carol"].add_concern(Lookup)
    nodes[b"bob"].add_concern(Forward, node=nodes[b"bob"])
    _link(nodes, b"alice", b"bob")
    _link(nodes, b"bob", b"carol")
    futures = [nodes[b"alice"].request(b"bob", b"fwd", {"k": k}, timeout=10) for k in range(50)]
    assert [f.get(timeout=15).payload for f in futures] == [{"v": 2 * k} for k in range(50)]


def test_its_answer_says_so_when_its_own_request_fails(nodes: dict[bytes, Node]) -> None:
    nodes[b"bob"].add_concern(Forward, node=nodes[b"bob"])
    _link(nodes, b"alice", b"bob")
    _link(nodes, b"bob", b"carol")  # Carol has no Concern for b"lookup": no answer
    reply = nodes[b"alice"].request(b"bob", b"fwd", {"k": 1}, timeout=10).get(timeout=15)
    assert reply.payload == {"error": "timeout"}
