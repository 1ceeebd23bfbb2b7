"""Concerns and helpers shared by the node tests (also run in child processes)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.node import Node
from p2p0mq_actors.transport.keystore import KeyStore


class Inbox:
    """What a Concern received, readable from the test thread with a bounded wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.messages: list[Message] = []

    def add(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"expected {count} messages, got {len(self.messages)}")
            return list(self.messages)


class Echo(Concern):
    """Replies to every request with its payload; records what it got."""

    command = b"echo"

    def __init__(self, *, inbox: Inbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inbox = inbox

    def on_request(self, message: Message) -> Mapping[str, Any]:
        self.inbox.add(message)
        return dict(message.payload)

    def on_reply(self, message: Message) -> None:
        self.inbox.add(message)


class Chat(Concern):
    """Records requests; never replies."""

    command = b"chat"

    def __init__(self, *, inbox: Inbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inbox = inbox

    def on_request(self, message: Message) -> None:
        self.inbox.add(message)


LANES = ("FAST", "MEDIUM", "SLOW")
PER_LANE = 50
REQUESTS = 20


def exchange(node: Any, peer: bytes, chat: Inbox, conn: Any) -> dict[str, Any]:
    """One side of the two-process exchange: send on every lane, make
    requests, then report what arrived from the other side."""
    for i in range(PER_LANE):
        for lane in LANES:
            node.send(peer, b"chat", {"lane": lane, "i": i}, priority=Priority[lane])
    replies = [
        node.request(peer, b"echo", {"r": r}, timeout=10).get(timeout=20).payload
        for r in range(REQUESTS)
    ]
    got = chat.wait_for(PER_LANE * len(LANES), timeout=20)
    return {
        "replies": replies,
        "chat": [(m.source, m.payload["lane"], m.payload["i"]) for m in got],
    }


def run_peer(uuid: bytes, store_dir: str, peer: bytes, conn: Any) -> None:
    """A child process: one node that talks to ``peer`` (whose key is in the store)."""
    chat = Inbox()
    with Node(uuid, keys=KeyStore(store_dir)) as node:
        node.add_concern(Echo, inbox=Inbox())
        node.add_concern(Chat, inbox=chat)
        conn.send(node.endpoint)
        if not conn.poll(20):
            return
        node.add_peer(peer, conn.recv())
        conn.send(exchange(node, peer, chat, conn))
        conn.poll(20)  # the parent says when it is done with us
