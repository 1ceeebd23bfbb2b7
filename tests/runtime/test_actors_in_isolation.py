"""Each actor alone: its neighbours are Recorders, its socket a FakeSocket,
its clock a ManualClock."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from broken_mapping import BrokenMapping
from sendpath_kit import Kit, make

from p2p0mq_actors.core.codec import encode
from p2p0mq_actors.core.errors import (
    NoPeerError,
    PeerRefusedError,
    PeerUnreachableError,
    TransportError,
    UnexpectedSendError,
)
from p2p0mq_actors.core.fairness import Plan, PlanResult, SlowItem
from p2p0mq_actors.core.message import Kind, Message, Priority
from p2p0mq_actors.core.ports import PeerAddress, PeerSocket, SocketEvent
from p2p0mq_actors.runtime.bulk import EACH_CHUNK
from p2p0mq_actors.runtime.express import DirectLane, ExpressGate
from p2p0mq_actors.runtime.intake import Intake
from p2p0mq_actors.runtime.messages import (
    FLUSH,
    AddPeer,
    Enqueue,
    Failed,
    PeerFailed,
    PeerGone,
    PeerWritable,
    RemovePeer,
    Retry,
    Sent,
)
from p2p0mq_actors.runtime.peer import PeerConnection
from p2p0mq_actors.testing.fake_socket import FakeSocket
from p2p0mq_actors.testing.recorder import MessageLog, Recorder

FAST, MEDIUM, SLOW = Priority.FAST, Priority.MEDIUM, Priority.SLOW


@pytest.fixture
def kit() -> Iterator[Kit]:
    yield Kit()


# -- PeerConnection ---------------------------------------------------------------


def test_a_peer_connection_carries_out_a_plan_and_reports_to_scheduler_and_concern(
    kit: Kit,
) -> None:
    peer = kit.peer()
    f = make(kit.clock, b"x", prio=FAST)
    m1, m2, m3 = (make(kit.clock, b"x") for _ in range(3))
    s = make(kit.clock, b"x", prio=SLOW)
    peer.tell(
        Plan(
            peer=b"x",
            epoch=4,
            rounds=2,
            fast=(f,),
            new_medium=(m1, m2, m3),
            slow=(SlowItem(0, s, 1),),
        )
    )
    assert kit.log.wait_for(1) == [PlanResult(peer=b"x", epoch=4, medium_len=1)]
    kit.book.wait_for(lambda b: len(b.sent) == 4)
    assert kit.factory.sockets[b"x"].sent == [encode(m) for m in (f, m1, m2, s)]
    assert kit.book.sent == [f, m1, m2, s]


def test_a_plan_told_as_the_connection_stops_ends_dropped_and_its_result_still_goes_back(
    kit: Kit,
) -> None:
    """A plan that reaches the inbox after the stop request (the Scheduler
    had not yet heard of a ``remove_peer``) used to be thrown away by
    Pykka's teardown: its messages never ended, and the Scheduler never
    heard the plan's result."""
    sock = kit.factory.prepare(b"x")
    sending, release = threading.Event(), threading.Event()
    send_frames = sock.send_frames

    def held(frames: Any) -> None:
        sending.set()
        assert release.wait(5)
        send_frames(frames)

    sock.send_frames = held  # type: ignore[method-assign]
    peer = kit.peer()
    first = make(kit.clock, b"x", prio=FAST)
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, fast=(first,)))
    assert sending.wait(5)  # the connection is busy with the first plan
    stopped = peer.stop(block=False)  # waits behind it
    late = (make(kit.clock, b"x", prio=FAST), make(kit.clock, b"x"))
    peer.tell(Plan(peer=b"x", epoch=2, rounds=1, fast=late[:1], new_medium=late[1:]))
    release.set()
    stopped.get(timeout=5)
    kit.book.wait_for(lambda b: len(b.sent) + len(b.dropped) == 3)
    assert kit.book.sent == [first]
    assert kit.book.dropped == [(late[0], "stopped"), (late[1], "stopped")]
    results = [e for e in kit.log.wait_for(2) if isinstance(e, PlanResult)]
    assert [(r.epoch, r.unsent(), r.blocked) for r in results] == [(1, [], False), (2, [], False)]


def test_a_blocked_peer_returns_the_plan_and_says_when_it_is_writable_again(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()
    peer = kit.peer()
    f = make(kit.clock, b"x", prio=FAST)
    m = make(kit.clock, b"x")
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, fast=(f,), new_medium=(m,)))
    assert kit.log.wait_for(1) == [
        PlanResult(peer=b"x", epoch=1, medium_len=1, unsent_fast=(f,), blocked=True)
    ]
    sock.unblock()
    assert kit.log.wait_for(2)[1] == PeerWritable(b"x", 1)
    assert sock.sent == [] and kit.book.failed == []


def test_a_plans_fast_messages_go_to_the_socket_a_chunk_at_a_time_until_it_blocks(
    kit: Kit,
) -> None:
    """p2p0mq's wire: one ``send_each`` for each ``EACH_CHUNK`` of the plan's
    fast messages, not a send each; where the socket blocks, the rest go
    back unsent, in order, and nothing past that chunk was encoded."""
    sock = kit.factory.prepare(b"x")
    passes: list[int] = []
    send_each = sock.send_each

    def counted(messages: Any) -> int:
        passes.append(len(messages))
        return send_each(messages)

    sock.send_each = counted  # type: ignore[method-assign]
    sock.block()
    taken = EACH_CHUNK + 36
    sock.accept(taken)
    peer = kit.peer()
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(3 * EACH_CHUNK))
    peer.tell(Plan(peer=b"x", epoch=2, rounds=0, fast=fast))
    assert kit.log.wait_for(1) == [
        PlanResult(peer=b"x", epoch=2, medium_len=0, unsent_fast=fast[taken:], blocked=True)
    ]
    kit.book.wait_for(lambda b: len(b.sent) == taken)
    assert passes == [EACH_CHUNK, EACH_CHUNK]
    assert sock.sent == [encode(m) for m in fast[:taken]]
    assert kit.book.sent == list(fast[:taken]) and kit.book.failed == []


def _peer_on(kit: Kit, socket: Any) -> Any:
    """A PeerConnection whose factory hands out ``socket``."""

    class Factory:
        def connect(self, peer: PeerAddress) -> Any:
            return socket

    return PeerConnection.start(
        PeerAddress(b"x", "tcp://127.0.0.1:1", b"k" * 40),
        scheduler=kit.recorder,
        concerns=kit.registry,
        sockets=Factory(),
        clock=kit.clock,
    )


class _SocketWithoutSendEach:
    """An application's PeerSocket written without ``send_each``: a
    FakeSocket's other methods, nothing more."""

    def __init__(self, inner: FakeSocket) -> None:
        self.send_frames = inner.send_frames
        self.writable = inner.writable
        self.wait_writable = inner.wait_writable
        self.events = inner.events
        self.close = inner.close


class _SubclassWithoutSendEach(PeerSocket):
    """An application's socket that subclasses ``PeerSocket`` (as PEP 544
    allows) and defines no ``send_each``: it inherits the protocol's."""

    def __init__(self, inner: FakeSocket) -> None:
        self.inner = inner

    def send_frames(self, frames: Sequence[bytes]) -> None:
        self.inner.send_frames(frames)

    def writable(self) -> bool:
        return self.inner.writable()

    def wait_writable(self, timeout: float) -> bool:
        return self.inner.wait_writable(timeout)

    def events(self) -> list[SocketEvent]:
        return self.inner.events()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("wrapper", [_SocketWithoutSendEach, _SubclassWithoutSendEach])
def test_a_socket_without_send_each_of_its_own_gets_a_plans_messages_one_call_each(
    kit: Kit, wrapper: Any
) -> None:
    # Neither a socket with no send_each at all nor one that subclasses
    # PeerSocket and inherits the protocol's fails a plan.
    inner = FakeSocket()
    peer = _peer_on(kit, wrapper(inner))
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(3))
    peer.tell(Plan(peer=b"x", epoch=1, rounds=0, fast=fast))
    kit.book.wait_for(lambda b: len(b.sent) == 3)
    assert inner.sent == [encode(m) for m in fast]
    assert kit.book.failed == []


def test_a_failure_in_a_plans_fast_messages_fails_that_message_only(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    peer = kit.peer()
    first = make(kit.clock, b"x", prio=FAST)
    peer.tell(Plan(peer=b"x", epoch=1, rounds=0, fast=(first,)))
    kit.book.wait_for(lambda b: len(b.sent) == 1)
    sock.fail_next(1, errno.EHOSTUNREACH)
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(4))
    peer.tell(Plan(peer=b"x", epoch=2, rounds=0, fast=fast))
    kit.book.wait_for(lambda b: len(b.sent) == 4 and len(b.failed) == 1)
    assert [m for m, _ in kit.book.failed] == [fast[0]]
    assert isinstance(kit.book.failed[0][1], TransportError)
    assert kit.book.sent == [first, *fast[1:]]
    assert sock.sent == [encode(m) for m in (first, *fast[1:])]


def test_a_failure_injected_through_send_frames_fails_that_fast_message_once(
    kit: Kit,
) -> None:
    """A test's replaced ``send_frames`` that fails one message: the
    message fails (it is not tried again) and the rest of its chunk goes
    on in one more ``send_each``."""
    sock = kit.factory.prepare(b"x")
    send, send_each = sock.send_frames, sock.send_each
    tried: list[bytes] = []
    passes: list[int] = []
    injected = TransportError("injected", errno=errno.EHOSTUNREACH, peer=b"x")

    def fails_the_third(frames: Sequence[bytes]) -> None:
        tried.append(frames[4])  # the message-id frame
        if len(tried) == 3:
            raise injected
        send(frames)

    def counted(messages: Any) -> Any:
        passes.append(len(messages))
        return send_each(messages)

    sock.send_frames = fails_the_third  # type: ignore[method-assign]
    sock.send_each = counted  # type: ignore[method-assign]
    peer = kit.peer()
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(6))
    peer.tell(Plan(peer=b"x", epoch=1, rounds=0, fast=fast))
    kit.book.wait_for(lambda b: len(b.sent) == 5 and len(b.failed) == 1)
    assert tried == [encode(m)[4] for m in fast]
    assert passes == [6, 3]
    assert kit.book.failed == [(fast[2], injected)]
    assert kit.book.sent == [*fast[:2], *fast[3:]]
    assert sock.sent == [encode(m) for m in (*fast[:2], *fast[3:])]


def test_a_payload_whose_packing_raises_a_bug_fails_that_fast_message_only(kit: Kit) -> None:
    """Past the first chunk, too: what was sent before it stays sent, and
    what comes after it is sent."""
    sock = kit.factory.prepare(b"x")
    peer = kit.peer()
    fast = [make(kit.clock, b"x", prio=FAST) for _ in range(EACH_CHUNK + 6)]
    bad = fast[EACH_CHUNK + 2] = Message.create(
        b"me", b"x", b"t", {"v": BrokenMapping()}, now=kit.clock.now(), priority=FAST
    )
    good = [m for m in fast if m is not bad]
    peer.tell(Plan(peer=b"x", epoch=1, rounds=0, fast=tuple(fast)))
    kit.book.wait_for(lambda b: len(b.sent) == len(good) and len(b.dropped) == 1)
    assert kit.book.sent == good
    assert kit.book.dropped == [(bad, "error")]
    assert sock.sent == [encode(m) for m in good]


def test_a_refused_handshake_fails_what_the_peer_holds(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()
    peer = kit.peer()
    m = make(kit.clock, b"x")
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=(m,)))
    kit.log.wait_for(1)
    kit.factory.prepare(b"x").block()  # the new socket it opens is refused too
    sock.emit(SocketEvent.HANDSHAKE_FAILED)
    _wait_state(peer, "REFUSED")
    kit.clock.advance(0.5)
    peer.ask(FLUSH)  # a poll step has run since
    assert len(kit.log) == 1  # within the grace period: nothing failed yet
    kit.clock.advance(0.5)
    failed = kit.log.wait_for(2)[1]
    assert isinstance(failed, PeerFailed) and isinstance(failed.error, PeerRefusedError)
    kit.book.wait_for(lambda b: len(b.failed) == 1)
    assert kit.book.failed == [(m, failed.error)]


def test_a_peer_unwritable_for_too_long_is_unreachable(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()
    peer = kit.peer(unreachable_after=10.0)
    m = make(kit.clock, b"x", ttl=60)
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=(m,)))
    kit.log.wait_for(1)
    kit.clock.advance(10.0)
    failed = kit.log.wait_for(2)[1]
    assert isinstance(failed, PeerFailed) and isinstance(failed.error, PeerUnreachableError)
    kit.book.wait_for(lambda b: len(b.failed) == 1)
    assert kit.book.failed[0][0] == m


def test_a_peer_connection_closes_its_socket_when_stopped(kit: Kit) -> None:
    peer = kit.peer()
    sock = kit.factory.wait_for_socket(b"x")
    peer.stop()
    assert sock.closed


# -- Scheduler --------------------------------------------------------------------


def test_the_scheduler_plans_an_epoch_then_grows_it_when_results_come_back(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x", b"y")
    xs = [make(kit.clock, b"x") for _ in range(3)]
    y = make(kit.clock, b"y")
    sched.tell(Enqueue((*xs, y)))
    (px,) = logs[b"x"].wait_for(1)
    (py,) = logs[b"y"].wait_for(1)
    assert (px.rounds, px.new_medium, py.new_medium) == (1, tuple(xs), (y,))
    sched.tell(PlanResult(peer=b"x", epoch=px.epoch, medium_len=2))
    sched.tell(PlanResult(peer=b"y", epoch=py.epoch, medium_len=0))
    px2 = logs[b"x"].wait_for(2)[1]
    assert (px2.rounds, px2.new_medium, px2.epoch) == (2, (), px.epoch + 1)
    assert len(logs[b"y"]) == 1


def test_a_result_from_a_peers_old_connection_does_not_end_the_new_ones_plan(kit: Kit) -> None:
    """A result the removed connection sent late (a plan given back at its
    stop, an express claim's end) used to count for the connection added
    since: the Scheduler took the new one's plan for done, and planned or
    opened its gate while that plan was still in flight."""
    sched, _ = kit.scheduler_with()
    old_log, new_log = MessageLog(), MessageLog()
    old, new = Recorder.start(old_log), Recorder.start(new_log)
    try:
        sched.tell(AddPeer(b"x", old))
        sched.tell(RemovePeer(b"x"))
        sched.tell(AddPeer(b"x", new))
        sched.tell(Enqueue(tuple(make(kit.clock, b"x") for _ in range(3))))
        (plan,) = new_log.wait_for(1)
        late = make(kit.clock, b"x", prio=FAST)
        sched.tell(PlanResult(b"x", 0, 0, unsent_fast=(late,), source=old.actor_urn))
        sched.tell(Enqueue((make(kit.clock, b"x", prio=FAST),)))
        assert sched.ask(FLUSH, timeout=5) is FLUSH
        assert len(new_log) == 1  # its plan is still in flight: nothing more yet
        kit.book.wait_for(lambda b: [m for m, _ in b.failed] == [late])  # its Concern decides
        sched.tell(PlanResult(b"x", plan.epoch, 2, source=new.actor_urn))
        assert new_log.wait_for(2)[1].fast  # then the fast message goes out
        assert old_log.items() == []
    finally:
        old.stop()
        new.stop()


def test_replies_a_peer_does_not_read_are_dropped_and_counted_past_its_backlog(
    kit: Kit,
) -> None:
    """A peer that sent requests and did not read the replies used to fill
    the node's room with them until their TTLs ran out: the application's
    sends to every other peer then found the intake full."""
    sched, logs = kit.scheduler_with(b"x", reply_backlog=2)
    replies = [replace(make(kit.clock, b"x", prio=FAST), kind=Kind.REPLY) for _ in range(5)]
    sched.tell(Enqueue(tuple(replies[:1])))  # it goes out; x never reports back
    logs[b"x"].wait_for(1)
    sched.tell(Enqueue(tuple(replies[1:])))
    kit.book.wait_for(lambda b: len(b.dropped) == 2)
    assert kit.book.dropped == [(m, "peer-backlog") for m in replies[3:]]
    assert sched.proxy().counters().get(timeout=5)["replies_overflowed"] == 2
    assert sched.proxy().depths().get(timeout=5)["fast"] == 2
    assert [plan.fast for plan in logs[b"x"].wait_for(1)] == [(replies[0],)]


def test_new_work_for_another_peer_preempts_the_epoch_in_flight(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x", b"y")
    sched.tell(Enqueue(tuple(make(kit.clock, b"x") for _ in range(100))))
    plan = logs[b"x"].wait_for(1)[0]
    sched.tell(PlanResult(peer=b"x", epoch=plan.epoch, medium_len=99))
    plan = logs[b"x"].wait_for(2)[1]
    assert plan.rounds == 2 and not plan.preemption.requested
    sched.tell(Enqueue((make(kit.clock, b"y"),)))
    sched.tell(PlanResult(peer=b"x", epoch=plan.epoch, medium_len=98))
    sync_x = logs[b"x"].wait_for(3)[2]
    sync_y = logs[b"y"].wait_for(1)[0]
    assert plan.preemption.requested
    assert (sync_x.rounds, sync_y.rounds) == (1, 1)


def test_a_fast_message_for_an_idle_peer_goes_out_at_once(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x", b"y")
    sched.tell(Enqueue(tuple(make(kit.clock, b"x") for _ in range(10))))
    logs[b"x"].wait_for(1)
    f = make(kit.clock, b"y", prio=FAST)
    sched.tell(Enqueue((f,)))
    assert logs[b"y"].wait_for(1) == [Plan(peer=b"y", epoch=0, rounds=0, fast=(f,))]


def test_a_told_batch_goes_behind_what_waits_in_the_intake(kit: Kit) -> None:
    # A Concern's replies go to the Scheduler as a tell when the intake is
    # full; they must not overtake the ones that went into the intake first.
    intake = Intake(2, lambda: None)  # never wakes the Scheduler by itself
    sched, logs = kit.scheduler_with(b"x", intake=intake)
    first = [make(kit.clock, b"x") for _ in range(2)]
    later = make(kit.clock, b"x")
    intake.put(first)
    sched.tell(Enqueue((later,)))
    assert told_back(sched, logs[b"x"], 3) == [*first, later]
    assert len(intake) == 0


def test_a_told_batch_waits_in_the_intake_while_older_work_has_no_room(kit: Kit) -> None:
    intake = Intake(4, lambda: None)
    sched, logs = kit.scheduler_with(b"x", intake=intake, max_held=1)
    first = [make(kit.clock, b"x") for _ in range(3)]
    later = make(kit.clock, b"x")
    intake.put(first)
    sched.ask(Enqueue((later,)))  # took one (its room), queued the rest behind
    assert len(intake) == 3
    assert told_back(sched, logs[b"x"], 4) == [*first, later]


def told_back(sched: Any, log: MessageLog, count: int) -> list[Any]:
    """The medium messages planned for one peer until ``count`` came, each
    plan's result told back to the Scheduler as it is seen."""
    sent: list[Any] = []
    seen = 0
    while len(sent) < count:
        plan = log.wait_for(seen + 1)[seen]
        seen += 1
        sent.extend(plan.new_medium)
        sched.tell(PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=0))
    return sent


def test_messages_for_an_unknown_peer_fail_to_their_concern(kit: Kit) -> None:
    sched, _ = kit.scheduler_with()
    m = make(kit.clock, b"ghost")
    sched.tell(Enqueue((m,)))
    kit.book.wait_for(lambda b: len(b.failed) == 1)
    ((failed, error),) = kit.book.failed
    assert failed == m and isinstance(error, NoPeerError)


def test_a_delayed_retry_waits_for_the_clock(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x")
    m = make(kit.clock, b"x")
    sched.tell(Retry(later=((m, kit.clock.now() + 1.0),)))
    kit.clock.advance(0.5)
    sched.ask(Enqueue(()))  # handled: nothing planned yet
    assert len(logs[b"x"]) == 0
    kit.clock.advance(0.5)
    assert logs[b"x"].wait_for(1)[0].new_medium == (m,)


def test_an_idle_scheduler_has_no_timer(kit: Kit) -> None:
    sched, _ = kit.scheduler_with(b"x")
    sched.ask(Enqueue(()))
    assert kit.clock.pending == 0


# -- Concern ----------------------------------------------------------------------


def test_a_concern_asks_for_a_retry_after_the_backoff(kit: Kit) -> None:
    m = make(kit.clock, b"x")
    kit.concern.tell(Failed(((m, TransportError("no", errno=errno.EHOSTUNREACH)),)))
    (retry,) = kit.log.wait_for(1)
    assert retry == Retry(later=((m.retried(), kit.clock.now() + 0.05),))


def test_a_concern_drops_an_expired_message_instead_of_retrying(kit: Kit) -> None:
    m = make(kit.clock, b"x", ttl=1)
    kit.clock.advance(2)
    kit.concern.tell(Failed(((m, TransportError("no", errno=errno.EHOSTUNREACH)),)))
    kit.book.wait_for(lambda b: len(b.dropped) == 1)
    assert kit.book.dropped == [(m, "ttl")]
    kit.concern.ask(Sent(()))
    assert len(kit.log) == 0


def test_after_a_refused_handshake_a_new_socket_is_opened(kit: Kit) -> None:
    first = kit.factory.prepare(b"x")
    first.block()
    peer = kit.peer()
    m = make(kit.clock, b"x")
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=(m,)))
    kit.log.wait_for(1)
    second = kit.factory.prepare(b"x")  # what the next connect hands out: writable
    first.emit(SocketEvent.HANDSHAKE_FAILED)
    _wait_state(peer, "REFUSED")
    kit.clock.advance(0.1)  # the first retry comes after 0.1 s
    assert kit.log.wait_for(2)[1] == PeerWritable(b"x", 1)  # nothing failed
    assert first.closed and not second.closed
    assert kit.factory.connected == [b"x", b"x"]
    assert peer.proxy().state.get(timeout=5) == "READY"


def test_a_pacing_interval_caps_the_rate_of_epochs(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x", pacing=1.0)
    sched.tell(Enqueue(tuple(make(kit.clock, b"x") for _ in range(5))))
    first = logs[b"x"].wait_for(1)[0]
    sched.ask(PlanResult(peer=b"x", epoch=first.epoch, medium_len=4))
    assert len(logs[b"x"]) == 1 and kit.clock.pending == 1  # waits for its turn
    kit.clock.advance(0.5)
    sched.ask(Enqueue(()))
    assert len(logs[b"x"]) == 1
    kit.clock.advance(0.5)
    assert logs[b"x"].wait_for(2)[1].epoch == first.epoch + 1


def test_a_peer_connection_survives_odd_messages_and_drops_what_a_closed_socket_refuses(
    kit: Kit,
) -> None:
    peer = kit.peer()
    sock = kit.factory.wait_for_socket(b"x")
    peer.tell("not a message it knows")  # logged, not fatal
    peer.ask(PeerWritable(b"x", 0))  # an unexpected message: logged, the actor lives on
    assert peer.is_alive() and not sock.closed
    sock.fail_next(1, errno.ENOTSOCK)
    f = make(kit.clock, b"x", prio=FAST)
    peer.tell(Plan(peer=b"x", epoch=0, rounds=0, fast=(f,)))
    kit.book.wait_for(lambda b: len(b.dropped) == 1)
    assert kit.book.dropped == [(f, "stopped")]  # socket gone: not retryable


@pytest.mark.parametrize("lane", ["medium", "fast"])
def test_a_send_that_raises_a_bug_fails_that_message_and_the_peer_goes_on(
    kit: Kit, lane: str
) -> None:
    # Fast messages go out a chunk at a time (send_each): the bug still
    # fails its message only, not the plan or what was sent before it.
    sock = kit.factory.prepare(b"x")
    send = sock.send_frames

    def explodes_once(frames: Sequence[bytes]) -> None:
        if len(sock.sent) == 1 and not getattr(sock, "exploded", False):
            sock.exploded = True  # type: ignore[attr-defined]
            raise RuntimeError("a bug, not a send failure")
        send(frames)

    sock.send_frames = explodes_once  # type: ignore[method-assign]
    peer = kit.peer()
    if lane == "fast":
        queued = [make(kit.clock, b"x", prio=FAST) for _ in range(3)]
        peer.tell(Plan(peer=b"x", epoch=1, rounds=0, fast=tuple(queued)))
    else:
        queued = [make(kit.clock, b"x") for _ in range(3)]
        peer.tell(Plan(peer=b"x", epoch=1, rounds=3, new_medium=tuple(queued)))
    kit.book.wait_for(lambda b: len(b.sent) == 2 and len(b.dropped) == 1)
    assert kit.book.sent == [queued[0], queued[2]]
    assert kit.book.dropped == [(queued[1], "error")]
    assert sock.sent == [encode(m) for m in (queued[0], queued[2])]
    assert peer.is_alive()


def test_a_peer_connection_that_crashes_closes_its_socket_fails_its_queue_and_says_so(
    kit: Kit,
) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()

    def broken(timeout: float) -> bool:
        raise RuntimeError("poll exploded")

    sock.wait_writable = broken  # type: ignore[method-assign]
    peer = kit.peer()
    queued = [make(kit.clock, b"x") for _ in range(3)]
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=tuple(queued)))
    kit.book.wait_for(lambda b: len(b.failed) == 3)
    assert [m for m, _ in kit.book.failed] == queued
    error = kit.book.failed[0][1]
    assert isinstance(error, UnexpectedSendError) and "poll exploded" in str(error)
    assert sock.closed
    assert peer.actor_stopped.wait(5)
    kit.recorder.ask(FLUSH, timeout=5)  # what it was told is recorded
    told = [e for e in kit.log.items() if isinstance(e, PeerGone)]
    assert told == [PeerGone(b"x", peer.actor_urn, error)]  # the Scheduler forgets the peer


class _GateSendingAsALaneGoes(ExpressGate):
    """An application thread's express send that comes just as a stopping
    connection removes its lane from the gate (done here, in the
    connection's thread, to be exact about the moment)."""

    def __init__(self, message: Message) -> None:
        self._claims = threading.Lock()
        super().__init__(self._claims)
        self._message = message
        self.delivered: bool | None = None

    def remove_lane(self, peer: bytes, lane: DirectLane) -> None:
        super().remove_lane(peer, lane)
        self.open(peer, "ref")
        with self._claims:
            self.claim_locked(peer)
        self.delivered = lane.deliver(self._message)


def test_an_express_send_as_a_connection_stops_is_counted_or_not_sent(kit: Kit) -> None:
    """A lane's sends no Concern listens to are counted once, when the
    lane is removed: none may go out after that."""
    sock = kit.factory.prepare(b"x")
    quiet = Message.create(b"me", b"x", b"quiet", {}, now=kit.clock.now(), priority=FAST)
    gate = _GateSendingAsALaneGoes(quiet)
    peer = kit.peer(gate=gate)
    peer.ask(FLUSH)  # started: its lane is the gate's
    peer.stop(timeout=5)
    assert gate.quiet_sent() == len(sock.sent)
    assert (gate.delivered, sock.sent) == (False, [])


def _wait_state(peer: Any, state: str, attempts: int = 500) -> None:
    """Ask the peer its state until it is ``state`` (each ask is a round trip
    through its inbox, so this waits for its poll steps, not for time)."""
    for _ in range(attempts):
        if peer.proxy().state.get(timeout=5) == state:
            return
    raise AssertionError(f"peer never reached {state}")


def test_a_peer_is_connecting_until_a_send_goes_through(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()
    peer = kit.peer()
    assert peer.proxy().state.get(timeout=5) == "CONNECTING"
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=(make(kit.clock, b"x"),)))
    kit.log.wait_for(1)
    assert peer.proxy().state.get(timeout=5) == "BLOCKED"
    sock.unblock()
    assert kit.log.wait_for(2)[1] == PeerWritable(b"x", 1)
    assert peer.proxy().state.get(timeout=5) == "READY"


class HoldingObserver:
    """An outcome observer whose first ``failed`` holds the reporting thread."""

    def __init__(self) -> None:
        self.holding, self.release = threading.Event(), threading.Event()

    def sent(self, messages: Any) -> None:
        pass

    def failed(self, items: Any) -> None:
        if not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(5)

    def dropped(self, items: Any) -> None:
        pass


def test_work_told_to_the_scheduler_as_it_stops_is_dropped_as_stopped(kit: Kit) -> None:
    """It used to be thrown away with Pykka's inbox: a Concern's retries and
    replies never ended."""
    observer = HoldingObserver()
    kit.registry.observer = observer
    sched, _ = kit.scheduler_with(b"x")
    sched.tell(Enqueue((make(kit.clock, b"nobody"),)))  # failed: holds the Scheduler
    assert observer.holding.wait(5)
    stopping = sched.stop(block=False)
    told = (make(kit.clock, b"x"), make(kit.clock, b"x", prio=FAST))
    sched.tell(Enqueue(told[:1]))
    sched.tell(Retry(now=told[1:]))
    observer.release.set()
    stopping.get(timeout=5)
    kit.book.wait_for(lambda b: len(b.dropped) == 2)
    assert sorted(kit.book.dropped, key=lambda d: d[0].message_id) == [
        (m, "stopped") for m in told
    ]
