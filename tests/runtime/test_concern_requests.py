"""A Concern alone, handling what the Receiver tells it: requests answered,
replies heard, handlers that raise or return the wrong thing. Its Scheduler
is a Recorder (no intake: replies go to it as ``Enqueue``), its clock a
ManualClock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from broken_mapping import BrokenMapping

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.message import Kind, Message, Priority
from p2p0mq_actors.runtime.intake import Intake
from p2p0mq_actors.runtime.messages import FLUSH, Dropped, Enqueue, Received
from p2p0mq_actors.testing.clock import ManualClock
from p2p0mq_actors.testing.recorder import MessageLog, Recorder

PEER, ME = b"peer", b"me"
WAIT = 5.0


class Answering(Concern):
    """Answers ``{"n": ...}`` with ``{"twice": 2n}``; raises for n == 0;
    returns a string (a wrong answer) for n == -1; no reply for n == 1."""

    command = b"calc"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replies_heard: list[Message] = []

    def on_request(self, message: Message) -> Any:
        n = message.payload["n"]
        if n == 0:
            raise ValueError("boom")
        if n == -1:
            return "not a mapping"
        if n == 1:
            return None
        if n == -2:
            return BrokenMapping()  # a mapping of its own whose reading raises
        if n == -3:
            raise SystemExit(1)  # in an actor's thread Pykka would stop every actor
        if n == -4:
            return message  # the request itself: it would go to this node, for ever
        if n == -5:
            return Message.create(ME, b"elsewhere", b"calc", {}, now=self.clock.now())
        if n == 6:
            return message.reply({"six": True}, now=self.clock.now(), ttl=5.0)
        return {"twice": 2 * n}

    def on_reply(self, message: Message) -> None:
        self.replies_heard.append(message)


class Rig:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.log = MessageLog()
        self.scheduler = Recorder.start(self.log)
        self.concern = Answering.start(scheduler=self.scheduler, clock=self.clock)

    def request(self, n: int, kind: Kind = Kind.REQUEST) -> Message:
        return Message.create(
            PEER, ME, b"calc", {"n": n}, now=self.clock.now(), kind=kind, priority=Priority.SLOW
        )

    def told_scheduler(self) -> list[Any]:
        """What the Concern told its Scheduler so far (a marker asked after
        them comes last, so none is still on its way)."""
        self.scheduler.ask("mark", timeout=WAIT)
        items = self.log.items()
        assert items[-1] == "mark"
        return items[:-1]

    def tell(self, *messages: Message) -> dict[str, int]:
        self.concern.tell(Received(tuple(messages)))
        stats: dict[str, int] = self.concern.proxy().stats().get(timeout=WAIT)
        return stats


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.concern.stop()
    r.scheduler.stop()


def test_answers_go_out_as_one_batch_of_fast_replies_in_order(rig: Rig) -> None:
    a, b = rig.request(2), rig.request(3)
    rig.tell(a, b)
    (sent,) = rig.log.wait_for(1)
    assert isinstance(sent, Enqueue)
    assert [m.payload for m in sent.messages] == [{"twice": 4}, {"twice": 6}]
    for reply, request in zip(sent.messages, (a, b), strict=True):
        assert (reply.source, reply.destination) == (ME, PEER)
        assert reply.kind is Kind.REPLY and reply.priority is Priority.FAST
        assert reply.message_id == request.message_id


def test_a_handler_that_raises_costs_only_its_own_reply(rig: Rig) -> None:
    stats = rig.tell(rig.request(0), rig.request(-3), rig.request(5))
    (sent,) = rig.log.wait_for(1)
    assert [m.payload for m in sent.messages] == [{"twice": 10}]
    assert stats["errors"] == 2  # SystemExit too: it used to stop every actor of the process
    assert stats["received"] == 3
    assert rig.concern.is_alive() and rig.scheduler.is_alive()


def test_a_wrong_answer_is_counted_and_sends_nothing(rig: Rig) -> None:
    stats = rig.tell(rig.request(-1), rig.request(1), rig.request(-2))
    assert stats["errors"] == 2  # the mapping whose reading raised used to stop the Concern
    assert rig.told_scheduler() == []
    assert rig.concern.is_alive()


def test_a_message_returned_that_is_no_reply_to_the_request_is_counted_and_not_sent(
    rig: Rig,
) -> None:
    stats = rig.tell(rig.request(-4), rig.request(-5), rig.request(6))
    assert stats["errors"] == 2  # both used to be sent, unchecked
    (sent,) = rig.log.wait_for(1)
    assert [m.payload for m in sent.messages] == [{"six": True}]  # a reply Message is one


def test_a_reply_that_cannot_be_encoded_counts_as_the_handlers_error(rig: Rig) -> None:
    request = rig.request(2)
    reply = request.reply({"n": 1}, now=rig.clock.now())
    rig.concern.tell(Dropped(((reply, "unencodable"), (request, "unencodable"))))
    stats: dict[str, int] = rig.concern.proxy().stats().get(timeout=WAIT)
    assert stats["dropped"] == 2
    assert stats["errors"] == 1  # the reply the handler built; a request is the sender's


def test_replies_go_to_on_reply_and_are_not_answered(rig: Rig) -> None:
    reply = rig.request(7, kind=Kind.REPLY)
    stats = rig.tell(reply)
    assert stats["received"] == 1
    assert rig.concern.proxy().replies_heard.get(timeout=WAIT) == [reply]
    assert rig.told_scheduler() == []


class Noting(Concern):
    """Notes each request's n; raises for n == 0."""

    command = b"calc"

    def __init__(self, *, seen: list[object], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen = seen

    def on_request(self, message: Message) -> None:
        self.seen.append(message.payload["n"])
        if message.payload["n"] == 0:
            raise ValueError("boom")


def test_a_batch_counts_as_handled_once_after_its_handlers_ran_even_when_one_raised(
    rig: Rig,
) -> None:
    seen: list[object] = []
    concern = Noting.start(scheduler=rig.scheduler, clock=rig.clock, seen=seen)
    try:
        concern.tell(Received((rig.request(0), rig.request(5)), done=lambda: seen.append("done")))
        concern.tell(Received((rig.request(6),)))  # no count to keep: fine too
        stats = concern.proxy().stats().get(timeout=WAIT)
    finally:
        concern.stop()
    assert seen == [0, 5, "done", 6]
    assert stats["errors"] == 1 and stats["received"] == 3


def test_a_reply_that_finds_the_intake_full_waits_in_it_and_the_next_one_goes_behind(
    rig: Rig,
) -> None:
    # The test thread plays the Scheduler: it takes the intake between the
    # two replies. A reply told to the Scheduler instead would be taken
    # after the next one, which finds the intake empty and goes straight out.
    wakes: list[int] = []
    intake = Intake(2, lambda: wakes.append(1))
    connection_log = MessageLog()
    connection = Recorder.start(connection_log)  # the peer's PeerConnection
    intake.gate.open(PEER, connection)  # the peer is idle
    intake.put(
        [Message.create(ME, b"other", b"calc", {"n": n}, now=0.0) for n in (10, 11)]
    )  # full
    concern = Answering.start(scheduler=rig.scheduler, clock=rig.clock, intake=intake)
    try:
        concern.tell(Received((rig.request(2),)))
        concern.ask(FLUSH, timeout=WAIT)
        taken, gates_closed = intake.take(100)
        assert [m.payload for m in taken] == [{"n": 10}, {"n": 11}, {"twice": 4}]
        assert gates_closed == [PEER]
        concern.tell(Received((rig.request(3),)))
        concern.ask(FLUSH, timeout=WAIT)
        assert [m.payload for m in intake.take(100)[0]] == [{"twice": 6}]
        assert len(wakes) == 2  # for the first put, and for the second reply
        connection.ask(FLUSH, timeout=WAIT)
        assert connection_log.items() == [FLUSH]
        assert rig.told_scheduler() == []
    finally:
        concern.stop()
        connection.stop()
