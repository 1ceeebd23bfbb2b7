"""The Scheduler's books: every message it is handed back ends somewhere, and
the counts it keeps for others (a peer's medium length) follow their owner,
so that the node's bound never holds back the intake for nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sendpath_kit import Kit, make

from p2p0mq_actors.core.errors import ConfigurationError, NoPeerError, PeerUnreachableError
from p2p0mq_actors.core.fairness import Plan, PlanResult
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.core.planner import FAST_PLAN_MAX
from p2p0mq_actors.runtime.intake import Intake
from p2p0mq_actors.runtime.messages import (
    FLUSH,
    SHUTDOWN,
    Enqueue,
    PeerBlocked,
    PeerFailed,
    PeerWritable,
    RemovePeer,
    Retry,
)
from p2p0mq_actors.runtime.scheduler import TAKE_INTAKE
from p2p0mq_actors.testing.recorder import MessageLog

FAST, SLOW = Priority.FAST, Priority.SLOW
NO_WORK = {"fast": 0, "medium": 0, "slow": 0, "delayed": 0}


@pytest.fixture
def kit() -> Iterator[Kit]:
    yield Kit()


def plan_of_three(kit: Kit, sched: Any, log: MessageLog) -> tuple[Plan, Message, Message]:
    """Hand peer x a plan of a medium, a fast and a slow message; returns it,
    the fast one and the slow one."""
    m, f, s = (
        make(kit.clock, b"x"),
        make(kit.clock, b"x", prio=FAST),
        make(kit.clock, b"x", prio=SLOW),
    )
    sched.tell(Enqueue((m, f, s)))
    (plan,) = log.wait_for(1)
    assert (plan.fast, plan.new_medium, [i.message for i in plan.slow]) == ((f,), (m,), [s])
    return plan, f, s


def unsent(plan: Plan) -> PlanResult:
    """The result of ``plan`` when the peer's socket blocked at once."""
    return PlanResult(
        peer=plan.peer,
        epoch=plan.epoch,
        medium_len=len(plan.new_medium),
        unsent_fast=plan.fast,
        unsent_slow=plan.slow,
        blocked=True,
    )


# -- results that come back late --------------------------------------------------


def test_a_plan_result_told_after_shutdown_drops_its_unsent_messages_as_stopped(
    kit: Kit,
) -> None:
    sched, logs = kit.scheduler_with(b"x")
    plan, f, s = plan_of_three(kit, sched, logs[b"x"])
    sched.ask(SHUTDOWN)
    sched.tell(unsent(plan))  # the peer was still carrying it out
    kit.book.wait_for(lambda b: len(b.dropped) == 2)
    assert kit.book.dropped == [(f, "stopped"), (s, "stopped")]


def test_a_plan_result_for_a_removed_peer_fails_its_unsent_messages(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x")
    plan, f, s = plan_of_three(kit, sched, logs[b"x"])
    sched.tell(RemovePeer(b"x"))
    sched.tell(unsent(plan))  # the peer was still carrying it out
    kit.book.wait_for(lambda b: len(b.failed) == 2)
    assert [(m, type(error)) for m, error in kit.book.failed] == [
        (f, NoPeerError),
        (s, NoPeerError),
    ]
    assert sched.proxy().depths().get(timeout=5) == NO_WORK


# -- room for the intake ----------------------------------------------------------


def held_back(kit: Kit) -> tuple[Any, dict[bytes, MessageLog], Intake, Message]:
    """A Scheduler at its bound (``max_held=2``): blocked peer x holds two
    medium messages; one for peer y waits in the intake."""
    intake = Intake(4, lambda: None)  # the Scheduler is told TAKE_INTAKE by hand
    sched, logs = kit.scheduler_with(b"x", b"y", intake=intake, max_held=2)
    sched.tell(Enqueue((make(kit.clock, b"x"), make(kit.clock, b"x"))))
    (plan,) = logs[b"x"].wait_for(1)
    sched.tell(unsent(plan))
    waiting = make(kit.clock, b"y")
    intake.put([waiting])
    sched.tell(TAKE_INTAKE)
    sched.ask(FLUSH)
    assert len(intake) == 1 and len(logs[b"y"]) == 0  # no room
    return sched, logs, intake, waiting


ROOM_FREED = {
    "x removed": RemovePeer(b"x"),
    "x failed its queue": PeerFailed(b"x", PeerUnreachableError("gone", peer=b"x")),
    "x's messages expired while blocked": PeerBlocked(b"x", 0),
    "x's messages expired, then it was writable": PeerWritable(b"x", 0),
}


@pytest.mark.parametrize("event", ROOM_FREED.values(), ids=ROOM_FREED.keys())
def test_room_that_comes_lets_what_waits_in_the_intake_in(kit: Kit, event: object) -> None:
    sched, logs, intake, waiting = held_back(kit)
    sched.tell(event)
    assert logs[b"y"].wait_for(1)[0].new_medium == (waiting,)
    assert len(intake) == 0


def test_a_failed_peer_no_longer_counts_its_medium_queue(kit: Kit) -> None:
    sched, logs = kit.scheduler_with(b"x")
    sched.tell(Enqueue((make(kit.clock, b"x"), make(kit.clock, b"x"))))
    (plan,) = logs[b"x"].wait_for(1)
    sched.tell(unsent(plan))
    assert sched.proxy().depths().get(timeout=5) == {**NO_WORK, "medium": 2}
    sched.tell(PeerFailed(b"x", PeerUnreachableError("gone", peer=b"x")))
    assert sched.proxy().depths().get(timeout=5) == NO_WORK


def test_a_blocked_peer_tells_the_scheduler_its_medium_length_when_messages_expire(
    kit: Kit,
) -> None:
    kit.factory.prepare(b"x").block()
    peer = kit.peer(unreachable_after=60.0)
    old, young = make(kit.clock, b"x", ttl=5.0), make(kit.clock, b"x", ttl=30.0)
    peer.tell(Plan(peer=b"x", epoch=1, rounds=1, new_medium=(old, young)))
    assert kit.log.wait_for(1) == [PlanResult(peer=b"x", epoch=1, medium_len=2, blocked=True)]
    kit.clock.advance(5.0)
    assert kit.log.wait_for(2)[1] == PeerBlocked(b"x", 1)
    kit.book.wait_for(lambda b: len(b.dropped) == 1)
    assert kit.book.dropped == [(old, "ttl")]


# -- a blocked peer's messages expire ---------------------------------------------------


def test_what_a_blocked_peer_holds_here_is_dropped_once_it_expires_with_nothing_else_going_on(
    kit: Kit,
) -> None:
    sched, logs = kit.scheduler_with(b"x")
    plan, first_fast, first_slow = plan_of_three(kit, sched, logs[b"x"])  # ttl 30
    sched.tell(unsent(plan))  # x blocked at once: those two come back here
    sched.ask(FLUSH)
    later = (make(kit.clock, b"x", prio=FAST, ttl=1.0), make(kit.clock, b"x", prio=SLOW, ttl=1.0))
    sched.tell(Enqueue(later))
    sched.ask(FLUSH)
    kit.clock.advance(2.0)  # the two later ones expired; nothing else happens
    kit.book.wait_for(lambda b: len(b.dropped) == 2)
    assert sorted(kit.book.dropped, key=lambda d: d[0].priority) == [
        (later[0], "ttl"),
        (later[1], "ttl"),
    ]
    kit.clock.advance(30.0)
    kit.book.wait_for(lambda b: len(b.dropped) == 4)
    assert {m.message_id for m, _ in kit.book.dropped[2:]} == {
        first_fast.message_id,
        first_slow.message_id,
    }
    depths = sched.proxy().depths().get(timeout=5)
    assert depths == {**NO_WORK, "medium": 1}  # the one its connection holds: its own to drop
    assert len(logs[b"x"]) == 1  # no plan for a blocked peer meanwhile


def test_a_scheduler_that_crashes_drops_what_it_holds_and_closes_the_intake(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="pykka")
    intake = Intake(8, lambda: None)
    sched, logs = kit.scheduler_with(b"x", intake=intake)
    plan, f, s = plan_of_three(kit, sched, logs[b"x"])
    sched.tell(unsent(plan))  # blocked: the two come back here
    sched.ask(FLUSH)
    sched.tell(Retry((), (None,)))  # malformed: handling it raises, as a bug would
    kit.book.wait_for(lambda b: len(b.dropped) == 2)
    assert kit.book.dropped == [(f, "stopped"), (s, "stopped")]
    assert sched.actor_stopped.wait(5)
    with pytest.raises(ConfigurationError, match="stopped"):
        intake.put([make(kit.clock, b"x")])


def test_the_sweep_timer_fires_once_a_sweep_while_an_epoch_stays_in_flight(kit: Kit) -> None:
    # y's plan never comes back (the epoch stays in flight); blocked x holds
    # messages. The timer that sweeps for x must not fire at once again and
    # again because no epoch can start (it did: 32,813 wakes in 8 s).
    sched, logs = kit.scheduler_with(b"x", b"y")
    plan, _, _ = plan_of_three(kit, sched, logs[b"x"])
    sched.tell(unsent(plan))  # x blocked: its fast and slow messages come back here
    sched.tell(Enqueue((make(kit.clock, b"y"),)))
    logs[b"y"].wait_for(1)  # y's plan is out, and stays out
    sched.ask(FLUSH)
    fired = 0
    for _ in range(20):  # 2 s in steps of 0.1 s, the Scheduler caught up after each
        fired += kit.clock.advance(0.1)
        sched.ask(FLUSH)
    assert fired <= 3  # about one a sweep interval (1 s)


def test_a_plan_carries_at_most_fast_plan_max_fast_messages_the_rest_go_in_the_next(
    kit: Kit,
) -> None:
    # (A medium message first, so that the fast ones do not take the express
    # path, whose one plan carries what an idle peer was sent at once.)
    sched, logs = kit.scheduler_with(b"x")
    medium = make(kit.clock, b"x")
    fast = [make(kit.clock, b"x", prio=FAST) for _ in range(FAST_PLAN_MAX + 10)]
    sched.tell(Enqueue((medium, *fast)))
    (first,) = logs[b"x"].wait_for(1)
    assert first.fast == tuple(fast[:FAST_PLAN_MAX])
    assert first.rounds == 0 and first.new_medium == (medium,)
    sched.tell(PlanResult(peer=b"x", epoch=first.epoch, medium_len=1))  # all went out
    second = logs[b"x"].wait_for(2)[1]
    assert second.fast == tuple(fast[FAST_PLAN_MAX:])
    assert second.rounds >= 1  # the medium message's turn comes with them
