"""The intake: one wake per batch, bounded, nothing lost."""

from __future__ import annotations

import threading

import pytest
from sendpath_kit import Path, make

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.fairness import Preemption
from p2p0mq_actors.core.message import Priority
from p2p0mq_actors.runtime.intake import HANDOFF, Intake, IntakeFullError
from p2p0mq_actors.runtime.sender import Sender
from p2p0mq_actors.testing.clock import ManualClock
from p2p0mq_actors.testing.fake_socket import FakeSocketFactory

CLOCK = ManualClock()


def msgs(n: int) -> list:  # type: ignore[type-arg]
    return [make(CLOCK, b"x") for _ in range(n)]


def test_the_scheduler_is_woken_once_until_it_takes() -> None:
    wakes: list[int] = []
    intake = Intake(100, lambda: wakes.append(1))
    a, b, c = msgs(3)
    intake.put([a])
    intake.put([b])
    assert len(wakes) == 1
    assert intake.take(100)[0] == [a, b]
    intake.put([c])
    assert len(wakes) == 2
    assert intake.take(100)[0] == [c]


def test_take_respects_its_limit_and_keeps_the_rest_in_order() -> None:
    intake = Intake(100, lambda: None)
    batch = msgs(5)
    intake.put(batch)
    assert intake.take(2)[0] == batch[:2]
    assert intake.take(0)[0] == []
    assert intake.take(10)[0] == batch[2:]


def test_a_full_intake_raises_after_its_timeout() -> None:
    intake = Intake(3, lambda: None, timeout=0.05)
    intake.put(msgs(3))
    with pytest.raises(IntakeFullError, match="stayed full"):
        intake.put(msgs(1))
    assert len(intake) == 3


def test_a_full_intake_waits_until_the_scheduler_takes() -> None:
    intake = Intake(2, lambda: None, timeout=5.0)
    first, late = msgs(2), msgs(1)
    intake.put(first)
    taken: list[object] = []
    started = threading.Event()

    def producer() -> None:
        started.set()
        intake.put(late)

    thread = threading.Thread(target=producer)
    thread.start()
    started.wait(5)
    taken.extend(intake.take(10)[0])
    thread.join(5)
    taken.extend(intake.take(10)[0])
    assert taken == [*first, *late]


def test_a_batch_larger_than_the_capacity_goes_in_when_the_intake_is_empty() -> None:
    intake = Intake(2, lambda: None, timeout=0.05)
    batch = msgs(5)
    intake.put(batch)
    assert intake.take(10)[0] == batch


def test_append_behind_queues_past_the_capacity_in_order_until_closed() -> None:
    intake = Intake(2, lambda: None)
    first, later = msgs(2), msgs(3)
    intake.put(first)
    assert intake.append_behind(later)  # no wait, although full
    assert intake.take(10)[0] == [*first, *later]
    intake.close()
    assert not intake.append_behind(msgs(1))
    assert len(intake) == 0


def test_put_now_queues_past_the_capacity_in_order_and_wakes_as_put_does() -> None:
    wakes: list[int] = []
    intake = Intake(2, lambda: wakes.append(1), timeout=0.05)
    first, replies, more = msgs(2), msgs(2), msgs(1)
    intake.put(first)
    assert intake.put_now(replies)  # no wait, although full
    assert len(wakes) == 1  # the Scheduler was already woken
    assert intake.take(10)[0] == [*first, *replies]
    assert intake.put_now(more)
    assert len(wakes) == 2
    intake.close()
    assert not intake.put_now(msgs(1))
    assert len(intake) == 0


def test_submit_queues_one_message_as_put_does() -> None:
    wakes: list[int] = []
    intake = Intake(2, lambda: wakes.append(1), timeout=0.05)
    a, b, c = msgs(3)
    intake.submit(a)  # not fast: no express, wakes the Scheduler once
    intake.submit(b)
    assert len(wakes) == 1
    with pytest.raises(IntakeFullError):
        intake.submit(c)
    assert intake.take(10)[0] == [a, b]
    intake.close()
    with pytest.raises(ConfigurationError, match="stopped"):
        intake.submit(c)


def test_a_closed_intake_refuses_and_hands_back_what_waited() -> None:
    intake = Intake(10, lambda: None)
    batch = msgs(2)
    intake.put(batch)
    assert intake.close() == batch
    with pytest.raises(ConfigurationError, match="stopped"):
        intake.put(msgs(1))


def test_backpressure_reaches_the_caller_when_a_peer_cannot_keep_up(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"], intake_capacity=50, intake_timeout=0.05)
    p.sock(b"x").block()
    with pytest.raises(IntakeFullError):
        for _ in range(200):
            p.sender.enqueue_medium(p.msg(b"x"))
    p.sender.flush()
    held = p.sender.scheduler.proxy().depths().get(timeout=5)
    assert held["medium"] <= 50  # the Scheduler took no more than it may hold


def test_a_small_hand_off_still_lets_the_scheduler_hold_the_backlog(path_factory) -> None:  # type: ignore[no-untyped-def]
    # The intake holds 4; a sender waits for the Scheduler's take every 4
    # messages, and the Scheduler holds the backlog of a blocked peer.
    p: Path = path_factory([b"x"], intake_capacity=1000, intake_handoff=4, intake_timeout=5.0)
    assert p.sender.intake.capacity == 4
    sock = p.sock(b"x")
    sock.block()
    sent = [p.msg(b"x") for _ in range(200)]
    for message in sent:
        p.sender.enqueue_medium(message)  # would raise IntakeFullError after 5 s
    p.sender.flush()
    assert len(p.sender.intake) <= 4
    assert p.book.failed == [] and p.book.dropped == []
    sock.unblock()
    p.book.wait_for(lambda bk: len(bk.sent) == 200)
    assert p.book.sent == sent  # in order, nothing lost


def test_the_hand_off_is_never_larger_than_the_capacity(path_factory) -> None:  # type: ignore[no-untyped-def]
    p: Path = path_factory([b"x"], intake_capacity=50)
    assert p.sender.intake.capacity == 50
    assert path_factory([b"y"]).sender.intake.capacity == HANDOFF


@pytest.mark.parametrize("bad", [0, -1, 1.5, "8", None])
@pytest.mark.parametrize("name", ["intake_capacity", "intake_handoff"])
def test_bad_intake_bounds_are_clear_errors(name: str, bad: object) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Sender(b"me", sockets=FakeSocketFactory(), **{name: bad})  # type: ignore[arg-type]


def watched_intake(planned: frozenset[bytes]) -> tuple[Intake, Preemption]:
    intake = Intake(100, lambda: None)
    preemption = Preemption()
    intake.watch((preemption, planned))
    return intake, preemption


def test_medium_work_for_a_planned_peer_leaves_the_watched_epoch_alone() -> None:
    intake, preemption = watched_intake(frozenset({b"x"}))
    intake.put([make(CLOCK, b"x"), make(CLOCK, b"x")])
    assert not preemption.requested and intake.preemptions == 0


@pytest.mark.parametrize(
    ("peer", "prio"),
    [(b"y", Priority.MEDIUM), (b"x", Priority.FAST), (b"x", Priority.SLOW), (b"y", Priority.SLOW)],
)
def test_other_work_preempts_the_watched_epoch_at_the_put(peer: bytes, prio: Priority) -> None:
    intake, preemption = watched_intake(frozenset({b"x"}))
    intake.put([make(CLOCK, b"x"), make(CLOCK, peer, prio=prio)])
    assert preemption.requested and intake.preemptions == 1
    intake.put([make(CLOCK, b"z")])  # once is enough
    assert intake.preemptions == 1


def test_an_epoch_the_scheduler_preempted_first_is_not_counted_again() -> None:
    intake, preemption = watched_intake(frozenset({b"x"}))
    preemption.requested = True
    intake.put([make(CLOCK, b"y")])
    assert intake.preemptions == 0


def test_nothing_watched_nothing_preempted() -> None:
    intake, preemption = watched_intake(frozenset({b"x"}))
    intake.watch(None)
    intake.put([make(CLOCK, b"y")])
    assert not preemption.requested


def test_work_put_before_an_epoch_is_watched_is_held_to_the_rule_too() -> None:
    intake = Intake(100, lambda: None)
    intake.put([make(CLOCK, b"y")])  # lands after the Scheduler took, before it watches
    preemption = Preemption()
    intake.watch((preemption, frozenset({b"x"})))
    assert preemption.requested and intake.preemptions == 1


def test_at_a_watch_only_work_put_since_the_last_take_is_read() -> None:
    # A backlog the Scheduler left behind (no room downstream) is its own to
    # plan; reading it again at every epoch made a large backlog quadratic.
    intake = Intake(10_000, lambda: None)
    backlog = [make(CLOCK, b"y", prio=Priority.FAST)] + [make(CLOCK, b"x") for _ in range(50)]
    intake.put(backlog)
    intake.take(10)  # the fast one for y is taken; 41 medium for x stay behind
    quiet = Preemption()
    intake.watch((quiet, frozenset({b"x"})))
    assert not quiet.requested
    intake.put([make(CLOCK, b"x"), make(CLOCK, b"y")])  # y is not in the epoch
    intake.watch(None)
    later = Preemption()
    intake.watch((later, frozenset({b"x"})))
    assert later.requested


def test_work_left_behind_by_a_take_does_not_preempt_the_next_epoch() -> None:
    intake = Intake(10_000, lambda: None)
    intake.put([make(CLOCK, b"x") for _ in range(5)] + [make(CLOCK, b"y")])
    batch, _ = intake.take(5)
    assert len(batch) == 5 and len(intake) == 1
    preemption = Preemption()
    intake.watch((preemption, frozenset({b"x"})))
    assert not preemption.requested  # y's message waits to be taken, not to preempt


def test_an_empty_intake_is_still_an_intake() -> None:
    intake = Intake(4, lambda: None)
    assert len(intake) == 0 and intake  # ``if concern.intake:`` finds it
