"""Outcome reports: one tell per owning Concern, each with its own messages
in order; the observer sees everything first."""

from __future__ import annotations

from typing import Any

import pykka

from p2p0mq_actors.core.message import Message
from p2p0mq_actors.runtime.messages import Dropped, Sent
from p2p0mq_actors.runtime.outcomes import ConcernRegistry, report_dropped, report_sent


class _Wants:
    wants_sent = True


class _Deaf:
    wants_sent = False


class FakeRef:
    """What ``report_*`` needs of a Concern's ref: ``tell`` and its class."""

    def __init__(self, actor_class: type = _Wants) -> None:
        self.actor_class = actor_class
        self.told: list[Any] = []

    def tell(self, event: Any) -> None:
        self.told.append(event)


def msg(command: bytes, n: int) -> Message:
    return Message.create(b"me", b"x", command, {"n": n}, now=0.0)


def test_each_owner_gets_its_messages_in_order_in_one_tell() -> None:
    a, b, default = FakeRef(), FakeRef(), FakeRef()
    registry = ConcernRegistry(default=default)
    registry.add(b"a", a)
    registry.add(b"b", b)
    sent = [msg(b"a", 0), msg(b"a", 1), msg(b"b", 2), msg(b"a", 3), msg(b"zz", 4), msg(b"b", 5)]
    report_sent(registry, sent)
    assert a.told == [Sent((sent[0], sent[1], sent[3]))]
    assert b.told == [Sent((sent[2], sent[5]))]
    assert default.told == [Sent((sent[4],))]


def test_a_concern_that_does_not_listen_to_sends_is_not_told_but_hears_of_drops() -> None:
    deaf = FakeRef(_Deaf)
    registry = ConcernRegistry()
    registry.add(b"a", deaf)
    m = msg(b"a", 0)
    report_sent(registry, [m])
    report_dropped(registry, [(m, "ttl")])
    assert deaf.told == [Dropped(((m, "ttl"),))]


def test_the_observer_sees_every_outcome_first() -> None:
    seen: list[Any] = []

    class Observer:
        def sent(self, messages: list[Message]) -> None:
            seen.append(("sent", list(messages)))

        def failed(self, items: list[Any]) -> None:
            seen.append(("failed", list(items)))

        def dropped(self, items: list[Any]) -> None:
            seen.append(("dropped", list(items)))

    ref = FakeRef()
    registry = ConcernRegistry()
    registry.observer = Observer()
    registry.add(b"a", ref)
    ms = [msg(b"a", 0), msg(b"zz", 1)]  # one with no Concern at all
    report_sent(registry, ms)
    assert seen == [("sent", ms)]
    assert ref.told == [Sent((ms[0],))]


def test_the_owner_of_a_command_is_its_own_concern_never_the_default() -> None:
    # The Receiver reads this once per command: a command removed between a
    # "registered?" and a "get" used to reach the default Concern, which
    # answered nothing, instead of being counted unknown.
    registry = ConcernRegistry(default="the default")
    registry.add(b"cmd", "its concern")
    assert registry.owner(b"cmd") == "its concern"
    registry.remove(b"cmd")
    assert registry.owner(b"cmd") is None
    assert registry.get(b"cmd") == "the default"


class StoppedRef(FakeRef):
    """A Concern that stopped after the outcomes were routed to it."""

    def tell(self, event: Any) -> None:
        raise pykka.ActorDeadError("stopped")


def test_outcomes_for_a_concern_that_stopped_go_to_the_commands_next_owner() -> None:
    """They used to be logged and lost: a failed message never decided."""
    gone, default = StoppedRef(), FakeRef()
    registry = ConcernRegistry(default=default)
    registry.add(b"a", gone)  # still registered: it died
    a, z = msg(b"a", 0), msg(b"z", 1)
    report_dropped(registry, [(a, "ttl"), (z, "ttl")])
    assert default.told == [Dropped(((a, "ttl"),)), Dropped(((z, "ttl"),))]
