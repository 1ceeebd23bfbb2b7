"""The express gate and the direct lane, alone: no actors, a fake socket,
a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from p2p0mq_actors.core.codec import WireShape, decode
from p2p0mq_actors.core.fairness import PlanResult
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.runtime.express import (
    BURST_STREAK,
    BURST_WINDOW,
    REPORT_SENT,
    DirectLane,
    ExpressGate,
)
from p2p0mq_actors.runtime.intake import Intake
from p2p0mq_actors.runtime.outcomes import ConcernRegistry
from p2p0mq_actors.testing import FakeSocket, ManualClock

PEER = b"x"


class Rig:
    """A lane for PEER on a fake socket, its gate open; ``told`` is what the
    lane told the Scheduler."""

    def __init__(self, shape: WireShape = WireShape.NATIVE) -> None:
        self.clock = ManualClock(100.0)
        self.gate = ExpressGate()
        self.told: list[object] = []
        self.concerns = ConcernRegistry()
        self.lane = DirectLane(
            PEER,
            shape=shape,
            clock=self.clock,
            concerns=self.concerns,
            gate=self.gate,
            tell_scheduler=self.told.append,
        )
        self.sock = FakeSocket()
        self.lane.attach(self.sock)
        self.gate.add_lane(PEER, self.lane)
        self.gate.open(PEER, "ref-x")


def fast(clock: ManualClock, payload: dict[str, Any] | None = None, ttl: float = 5.0) -> Message:
    return Message.create(
        b"me", PEER, b"cmd", payload or {"n": 1}, now=clock.now(), ttl=ttl, priority=Priority.FAST
    )


def test_a_claimed_lane_sends_in_the_callers_thread_and_reopens_the_gate() -> None:
    r = Rig()
    message = fast(r.clock)
    assert r.gate.claim_locked(PEER) == "ref-x"
    assert r.gate.lane(PEER) is r.lane
    assert r.lane.deliver(message)
    (frames,) = r.sock.sent
    got = decode([b"me", *frames], PEER, now=r.clock.now())
    assert (got.message_id, got.payload) == (message.message_id, {"n": 1})
    assert r.lane.sent == 1 and r.told == []
    assert r.gate.claim_locked(PEER) == "ref-x"  # open again, no Scheduler involved


def test_a_socket_that_would_block_sends_nothing_and_leaves_the_claim() -> None:
    r = Rig()
    r.sock.block()
    r.gate.claim_locked(PEER)
    assert not r.lane.deliver(fast(r.clock))
    assert r.sock.sent == [] and r.lane.sent == 0 and r.told == []
    assert r.gate.claim_locked(PEER) is None  # still claimed: the caller tells a plan


def test_an_expired_or_unencodable_message_is_left_to_the_connection() -> None:
    r = Rig(WireShape.V011)
    r.gate.claim_locked(PEER)
    expired = fast(r.clock, ttl=1.0)
    r.clock.advance(2.0)
    assert not r.lane.deliver(expired)
    assert not r.lane.deliver(fast(r.clock, {"n": object()}))
    assert r.sock.sent == [] and r.lane.sent == 0
    assert r.lane.deliver(fast(r.clock))  # and the lane still works


def test_a_lane_with_no_socket_sends_nothing() -> None:
    r = Rig()
    r.lane.attach(None)
    r.gate.claim_locked(PEER)
    assert not r.lane.deliver(fast(r.clock))
    assert r.sock.sent == []


def test_when_the_scheduler_took_the_claim_the_lane_reports_the_plan_done() -> None:
    r = Rig()
    r.gate.claim_locked(PEER)
    assert not r.gate.close(PEER)  # the Scheduler wants the gate: it waits for a result
    assert r.lane.deliver(fast(r.clock))
    assert r.told == [PlanResult(peer=PEER, epoch=0, medium_len=0)]
    assert r.gate.claim_locked(PEER) is None  # the Scheduler reopens it when it sees fit


def test_a_removed_lane_is_forgotten_only_if_it_is_still_the_peers() -> None:
    r = Rig()
    other = DirectLane(
        PEER,
        shape=WireShape.NATIVE,
        clock=r.clock,
        concerns=ConcernRegistry(),
        gate=r.gate,
        tell_scheduler=r.told.append,
    )
    r.gate.remove_lane(PEER, other)
    assert r.gate.lane(PEER) is r.lane
    r.gate.remove_lane(PEER, r.lane)
    assert r.gate.lane(PEER) is None


def test_a_claimed_gate_handed_back_whole_is_open_again() -> None:
    gate = ExpressGate()
    gate.open(b"x", "ref-x")
    assert gate.claim_locked(b"x") == "ref-x"
    assert gate.claim_locked(b"x") is None  # one claim at a time
    assert gate.hand_back(b"x", reopen=True)
    assert gate.claim_locked(b"x") == "ref-x"


def test_a_claimed_gate_handed_back_unsent_stays_shut() -> None:
    gate = ExpressGate()
    gate.open(b"x", "ref-x")
    gate.claim_locked(b"x")
    assert not gate.hand_back(b"x", reopen=False)  # the result goes to the Scheduler
    assert gate.claim_locked(b"x") is None
    assert not gate.hand_back(b"x", reopen=True)  # no claim left to hand back


def test_a_close_that_finds_the_gate_claimed_takes_the_claim_away() -> None:
    gate = ExpressGate()
    gate.open(b"x", "ref-x")
    gate.open(b"y", "ref-y")
    gate.claim_locked(b"x")
    assert not gate.close(b"x")  # claimed: the Scheduler waits for its result
    assert not gate.hand_back(b"x", reopen=True)  # so the connection must report it
    assert gate.claim_locked(b"x") is None
    assert gate.close_locked({b"y"}) == [b"y"]
    assert gate.claim_locked(b"y") is None


def test_closing_all_gates_drops_open_and_claimed_ones() -> None:
    gate = ExpressGate()
    gate.open(b"x", "ref-x")
    gate.open(b"y", "ref-y")
    gate.claim_locked(b"y")
    gate.close_all()
    assert gate.claim_locked(b"x") is None
    assert not gate.hand_back(b"y", reopen=True)


class FakeRef:
    """A stand-in ActorRef: records what it is told."""

    def __init__(self, wants_sent: bool) -> None:
        self.actor_class = type("C", (), {"wants_sent": wants_sent})
        self.told: list[object] = []

    def tell(self, message: object) -> None:
        self.told.append(message)


def test_sends_a_concern_listens_to_are_reported_by_the_connection_in_one_batch() -> None:
    r = Rig()
    concern, connection = FakeRef(wants_sent=True), FakeRef(wants_sent=False)
    r.concerns.add(b"cmd", concern)
    r.lane.owner = connection
    messages = [fast(r.clock) for _ in range(3)]
    for message in messages:
        r.gate.claim_locked(PEER)
        assert r.lane.deliver(message)
    assert connection.told == [REPORT_SENT]  # one tell for the three
    assert concern.told == []
    assert r.lane.take_unreported() == messages
    assert r.lane.take_unreported() == []


def test_sends_no_concern_listens_to_are_only_counted() -> None:
    r = Rig()
    concern, connection = FakeRef(wants_sent=False), FakeRef(wants_sent=False)
    r.concerns.add(b"cmd", concern)
    r.lane.owner = connection
    for _ in range(3):
        r.gate.claim_locked(PEER)
        assert r.lane.deliver(fast(r.clock))
    assert (r.lane.quiet, r.gate.quiet_sent()) == (3, 3)
    assert connection.told == [] and concern.told == [] and r.lane.take_unreported() == []
    r.gate.remove_lane(PEER, r.lane)
    assert r.gate.quiet_sent() == 3  # kept when the lane goes


def test_a_lane_without_a_connection_reports_to_the_concern_at_once() -> None:
    r = Rig()
    concern = FakeRef(wants_sent=True)
    r.concerns.add(b"cmd", concern)
    r.gate.claim_locked(PEER)
    message = fast(r.clock)
    assert r.lane.deliver(message)
    assert [type(m).__name__ for m in concern.told] == ["Sent"]
    assert concern.told[0].messages == (message,)  # type: ignore[attr-defined]


def _streak(r: Rig, count: int) -> None:
    """``count`` direct sends, each half a window after the one before."""
    for _ in range(count):
        r.gate.claim_locked(PEER)
        assert r.lane.deliver(fast(r.clock))
        r.clock.advance(BURST_WINDOW / 2)


@pytest.mark.parametrize("shape", [WireShape.NATIVE, WireShape.V011])
def test_a_lane_is_in_a_burst_after_a_streak_of_sends_until_the_window_passes(
    shape: WireShape,
) -> None:
    r = Rig(shape)
    assert not r.lane.in_burst()  # nothing sent yet
    _streak(r, BURST_STREAK - 1)
    assert not r.lane.in_burst()  # a few messages at a time go straight out
    _streak(r, 1)
    assert r.lane.in_burst()  # half a window after the last
    r.clock.advance(BURST_WINDOW / 2)
    assert not r.lane.in_burst()


def test_a_pause_of_a_window_starts_a_new_streak() -> None:
    r = Rig()
    _streak(r, BURST_STREAK - 1)
    r.clock.advance(BURST_WINDOW)
    _streak(r, 1)
    assert not r.lane.in_burst()
    _streak(r, BURST_STREAK - 1)
    assert r.lane.in_burst()


def test_the_intake_leaves_a_burst_to_the_scheduler_and_expresses_again_after() -> None:
    clock = ManualClock(100.0)
    intake = Intake(capacity=10, wake=lambda: None)
    lane = DirectLane(
        PEER,
        shape=WireShape.NATIVE,
        clock=clock,
        concerns=ConcernRegistry(),
        gate=intake.gate,
        tell_scheduler=lambda _: None,
    )
    sock = FakeSocket()
    lane.attach(sock)
    intake.gate.add_lane(PEER, lane)
    intake.gate.open(PEER, "ref-x")
    for _ in range(BURST_STREAK):
        assert intake.express(fast(clock))
    assert not intake.express(fast(clock))  # in the burst: the caller puts it instead
    assert len(sock.sent) == BURST_STREAK
    clock.advance(BURST_WINDOW)
    assert intake.express(fast(clock))
    assert len(sock.sent) == BURST_STREAK + 1
