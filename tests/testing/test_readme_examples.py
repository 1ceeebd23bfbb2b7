"""The README's test-kit examples, run as written (with a concrete Concern)."""

from __future__ import annotations

from p2p0mq_actors import Concern, Message, Sender, TransportError
from p2p0mq_actors.testing import (
    Failed,
    FakeSocketFactory,
    ManualClock,
    MessageLog,
    OutcomeBook,
    Recorder,
    RecordingConcern,
    Retry,
)


class MyConcern(Concern):
    command = b"mine"


class MyRecordingConcern(RecordingConcern):
    command = b"mine"


def test_my_concern_retries_after_its_backoff() -> None:
    clock, log = ManualClock(), MessageLog()
    concern = MyConcern.start(scheduler=Recorder.start(log), clock=clock)
    m = Message.create(b"me", b"bob", MyConcern.command, now=clock.now())
    concern.tell(Failed(((m, TransportError("down", errno=113)),)))
    assert log.wait_for(1) == [Retry(later=((m.retried(), clock.now() + 0.05),))]


def test_a_blocked_peer_loses_nothing() -> None:
    sockets, clock, book = FakeSocketFactory(), ManualClock(), OutcomeBook()
    with Sender(b"me", sockets=sockets, clock=clock) as sender:
        sender.add_concern(MyRecordingConcern, book=book)
        sender.add_peer(b"bob", "tcp://127.0.0.1:1", b"k" * 40)
        sockets.prepare(b"bob").accept(3)
        sender.connect_peers()
        batch = [Message.create(b"me", b"bob", b"mine", now=clock.now()) for _ in range(10)]
        sender.enqueue_medium(batch)
        sockets.wait_for_socket(b"bob").wait_for_sent(3)
        sockets.wait_for_socket(b"bob").unblock()
        book.wait_for(lambda b: len(b.sent) == 10)
    assert book.sent == batch
