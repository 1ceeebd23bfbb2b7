"""Outcome reports: sends wait in the Concern's box and cost a tell only
when the box was empty."""

from __future__ import annotations

from typing import Any

import pykka
import pytest
from sendpath_kit import Recording, make

from p2p0mq_actors.runtime.messages import SentBox, SentWaiting
from p2p0mq_actors.runtime.outcomes import ConcernRegistry, report_sent
from p2p0mq_actors.testing import ManualClock
from p2p0mq_actors.testing.recorder import OutcomeBook


class Ref:
    """A stand-in ActorRef that records what it is told (or is dead)."""

    def __init__(self, *, wants_sent: bool = True, dead: bool = False) -> None:
        self.actor_class = type("C", (), {"wants_sent": wants_sent})
        self.told: list[Any] = []
        self.dead = dead

    def tell(self, message: object) -> None:
        if self.dead:
            raise pykka.ActorDeadError("stopped")
        self.told.append(message)


def test_a_box_says_when_it_was_empty_and_gives_everything_in_order() -> None:
    clock = ManualClock()
    box = SentBox()
    a, b, c = (make(clock, b"x") for _ in range(3))
    assert box.add([a]) is True
    assert box.add([b, c]) is False
    assert len(box) == 3
    assert box.take() == (a, b, c)
    assert box.take() == ()
    assert box.add([a]) is True


def test_reports_that_arrive_before_the_concern_takes_cost_one_tell() -> None:
    clock = ManualClock()
    registry = ConcernRegistry()
    concern = Ref()
    registry.add(b"t", concern)
    first, second = make(clock, b"x"), make(clock, b"y")
    report_sent(registry, [first])
    report_sent(registry, [second])
    (told,) = concern.told
    assert isinstance(told, SentWaiting) and told.box is registry.sent_box(concern)
    assert told.box.take() == (first, second)
    third = make(clock, b"x")
    report_sent(registry, [third])  # taken: the next report tells again
    assert len(concern.told) == 2 and concern.told[1].box.take() == (third,)


def test_a_concern_that_does_not_listen_is_neither_told_nor_boxed() -> None:
    registry = ConcernRegistry()
    concern = Ref(wants_sent=False)
    registry.add(b"t", concern)
    report_sent(registry, [make(ManualClock(), b"x")])
    assert concern.told == [] and len(registry.sent_box(concern)) == 0


def test_sends_for_a_stopped_concern_do_not_pile_up() -> None:
    registry = ConcernRegistry()
    concern = Ref(dead=True)
    registry.add(b"t", concern)
    for _ in range(3):
        report_sent(registry, [make(ManualClock(), b"x")])
    assert len(registry.sent_box(concern)) == 0


def test_each_concern_has_its_own_box() -> None:
    registry = ConcernRegistry()
    one, two = Ref(), Ref()
    registry.add(b"t", one)
    registry.add(b"u", two)
    assert registry.sent_box(one) is registry.sent_box(one)
    assert registry.sent_box(one) is not registry.sent_box(two)


@pytest.fixture
def concern() -> Any:
    book = OutcomeBook()
    ref = Recording.start(book=book, scheduler=None, clock=ManualClock())
    yield ref, book
    ref.stop()


def test_a_concern_hears_of_everything_in_its_box_once(concern: Any) -> None:
    ref, book = concern
    clock = ManualClock()
    box = SentBox()
    sent = [make(clock, b"x") for _ in range(4)]
    box.add(sent[:2])
    box.add(sent[2:])
    ref.tell(SentWaiting(box))
    ref.tell(SentWaiting(box))  # already taken: nothing more to hear
    book.wait_for(lambda b: len(b.sent) == 4)
    stats = ref.proxy().stats().get(timeout=5)
    assert book.sent == sent and stats["sent"] == 4
