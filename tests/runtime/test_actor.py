"""The node's actor kind: Pykka's contract on a C inbox."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pykka
import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.runtime.actor import Actor
from p2p0mq_actors.runtime.peer import PeerConnection
from p2p0mq_actors.runtime.receiver import Receiver
from p2p0mq_actors.runtime.scheduler import Scheduler

WAIT = 5.0


class Log(Actor):
    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "hold" and self.gate is not None:
            self.gate.wait(WAIT)
        if message == "seen":
            return list(self.seen)
        self.seen.append(message)
        return None


@pytest.mark.parametrize("cls", [Receiver, PeerConnection, Scheduler, Concern])
def test_every_node_actor_is_of_this_kind(cls: type) -> None:
    assert issubclass(cls, Actor)


def test_the_inbox_is_a_simple_queue() -> None:
    ref = Log.start()
    try:
        assert isinstance(ref.actor_inbox, queue.SimpleQueue)
    finally:
        ref.stop()


def test_tells_from_each_thread_are_handled_in_the_order_put() -> None:
    ref = Log.start()
    try:
        senders = [
            threading.Thread(target=lambda k=k: [ref.tell((k, i)) for i in range(500)])
            for k in range(4)
        ]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(WAIT)
        seen = ref.ask("seen", timeout=WAIT)
    finally:
        ref.stop()
    assert len(seen) == 2000
    for k in range(4):
        assert [i for kk, i in seen if kk == k] == list(range(500))


def test_ask_and_proxy_calls_answer() -> None:
    ref = Log.start()
    try:
        ref.tell("a")
        assert ref.ask("seen", timeout=WAIT) == ["a"]
        assert ref.proxy().seen.get(timeout=WAIT) == ["a"]
    finally:
        ref.stop()


def test_asks_left_in_the_inbox_at_stop_fail_with_actor_dead() -> None:
    gate = threading.Event()
    ref = Log.start(gate)
    try:
        ref.tell("hold")
        stopping = ref.stop(block=False)
        late = ref.ask("seen", block=False)
    finally:
        gate.set()
    stopping.get(timeout=WAIT)
    with pytest.raises(pykka.ActorDeadError):
        late.get(timeout=WAIT)
    assert not ref.is_alive()
