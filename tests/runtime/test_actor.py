"""The node's actor kind: Pykka's contract on a C inbox."""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

import pykka
import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.fairness import Plan
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.runtime.actor import Actor
from p2p0mq_actors.runtime.messages import Received
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


class _Token:
    """A payload value whose end a test can wait for (``weakref.finalize``)."""


class Kinds(Actor):
    """Keeps the kind of each message it gets, not the message."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    def on_receive(self, message: Any) -> Any:
        if message == "kinds":
            return list(self.kinds)
        self.kinds.append(type(message).__name__)
        return None


@pytest.mark.parametrize("carrier", ["received", "plan"])
def test_an_idle_actor_lets_go_of_the_last_messages_it_was_told(carrier: str) -> None:
    # Pykka's loop keeps the last message taken until the next comes: an
    # idle actor kept its last batch (a Concern's Received, a plan). It now
    # tells itself a release, which it takes at once and never sees.
    token, freed = _Token(), threading.Event()
    weakref.finalize(token, freed.set)
    message = Message.create(b"alice", b"bob", b"cmd", {"t": token}, now=0.0)
    told: Any = (
        Received((message,))
        if carrier == "received"
        else Plan(peer=b"bob", epoch=1, rounds=1, fast=(message,))
    )
    ref = Kinds.start()
    try:
        ref.tell(told)
        del token, message, told
        assert freed.wait(WAIT)  # with nothing more told to the actor
        kinds = ref.ask("kinds", timeout=WAIT)
        assert kinds == ["Received" if carrier == "received" else "Plan"]  # no release
    finally:
        ref.stop()


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


class Leaving(Log):
    """A ``Log`` that also records, in order, what it was left and its stop."""

    def on_left(self, messages: list[Any]) -> None:
        self.seen.append(("left", messages))

    def on_stop(self) -> None:
        self.seen.append(("stop", None))


class SlowPut:
    """An inbox whose put waits: a tell caught between its check that the
    actor is alive and its put."""

    def __init__(self, inbox: Any) -> None:
        self.inbox, self.inside, self.go = inbox, threading.Event(), threading.Event()

    def put(self, item: Any) -> None:
        self.inside.set()
        assert self.go.wait(WAIT)
        self.inbox.put(item)


def test_a_tell_caught_between_its_check_and_its_put_at_the_stop_is_still_handed_on() -> None:
    """Pykka's tell checks that the actor is alive, then puts: a put landing
    after the stopping actor emptied its inbox was lost (1 outcome in 200
    runs of a Concern removed while outcomes flowed)."""
    gate = threading.Event()
    actor_ref = Leaving.start(gate)
    actor = actor_ref._actor_weakref()
    actor_ref.tell("hold")
    stopping = actor_ref.stop(block=False)  # behind the hold
    slow_ref = type(actor_ref)(actor)  # another ref to it, its puts slowed
    slow = SlowPut(actor_ref.actor_inbox)
    slow_ref.actor_inbox = slow  # type: ignore[assignment]
    teller = threading.Thread(target=slow_ref.tell, args=("late",))
    teller.start()
    assert slow.inside.wait(WAIT)  # it found the actor alive
    gate.set()  # the actor goes on to its stop
    assert actor.actor_stopped.wait(WAIT)  # stopped: the tell is not yet put
    slow.go.set()
    teller.join(WAIT)
    stopping.get(timeout=WAIT)
    assert actor.seen == ["hold", ("left", ["late"]), ("stop", None)]


def test_what_is_left_is_handed_on_before_on_stop_and_before_the_stop_is_answered() -> None:
    gate = threading.Event()
    ref = Leaving.start(gate)
    actor = ref._actor_weakref()
    ref.tell("hold")
    stopping = ref.stop(block=False)
    ref.tell("after the stop")
    gate.set()
    stopping.get(timeout=WAIT)
    assert actor.seen == ["hold", ("left", ["after the stop"]), ("stop", None)]
