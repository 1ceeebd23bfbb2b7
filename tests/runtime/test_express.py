"""The express gate and the direct lane, alone: no actors, a fake socket,
a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from p2p0mq_actors.core.codec import WireShape, decode, decode_many
from p2p0mq_actors.core.fairness import Plan, PlanResult
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.runtime.bulk import FRAME_MESSAGES
from p2p0mq_actors.runtime.express import (
    BURST_STREAK,
    BURST_WINDOW,
    REPORT_SENT,
    DirectLane,
    ExpressGate,
)
from p2p0mq_actors.runtime.intake import EXPRESS_MANY, Intake
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


def test_a_claim_handed_back_for_a_peers_old_connection_leaves_the_new_ones_claim_alone() -> None:
    # A sender paused between its send through the old connection's lane
    # and its hand-back, while the peer was removed and added again, used to
    # end the claim another sender holds on the new connection and reopen
    # the gate under it: two plans in flight for one peer.
    gate = ExpressGate()
    gate.open(b"x", "old-ref")
    gate.claim_locked(b"x")
    assert not gate.close(b"x")  # the peer is removed: the claim is taken away
    gate.open(b"x", "new-ref")  # added again, idle
    assert gate.claim_locked(b"x") == "new-ref"
    assert not gate.hand_back(b"x", reopen=True, owner="old-ref")  # stale: changes nothing
    assert gate.claim_locked(b"x") is None  # still claimed
    assert gate.hand_back(b"x", reopen=True, owner="new-ref")
    assert gate.claim_locked(b"x") == "new-ref"


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
    """A stand-in ActorRef: records what it is told. As a lane's owner it is
    the connection the Rig's gate was opened for (its urn, ``"ref-x"``)."""

    actor_urn = "ref-x"

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


# -- send_many through the gate (DirectLane.deliver_many, Intake.express_many)


def _frame_ids(sent: list[list[bytes]]) -> list[list[int]]:
    """The message ids in each native frame sent, frame by frame."""
    out = []
    for frames in sent:
        assert len(frames) == 1
        got, errors = decode_many([b"me", frames[0]], PEER, now=0.0)
        assert errors == []
        out.append([m.message_id for m in got])
    return out


def _run(clock: ManualClock, n: int, **kwargs: Any) -> list[Message]:
    return [fast(clock, {"n": i}, **kwargs) for i in range(n)]


def test_a_claimed_lane_sends_a_run_in_batch_frames_and_reopens_the_gate() -> None:
    r = Rig()
    run = _run(r.clock, 2 * FRAME_MESSAGES + 2)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == len(run)
    ids = [m.message_id for m in run]
    assert _frame_ids(r.sock.sent) == [ids[:64], ids[64:128], ids[128:]]
    assert r.lane.sent == len(run) and r.told == []
    assert r.gate.claim_locked(PEER) == "ref-x"  # open again


def test_a_runs_lone_last_message_goes_in_a_frame_of_its_own() -> None:
    r = Rig()
    run = _run(r.clock, FRAME_MESSAGES + 1)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == len(run)
    assert [len(ids) for ids in _frame_ids(r.sock.sent)] == [FRAME_MESSAGES, 1]


def test_p2p0mq_wire_a_run_goes_out_a_message_at_a_time_in_one_pass() -> None:
    r = Rig(WireShape.V011)
    run = _run(r.clock, 5)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == 5
    got = [decode([b"me", *frames], PEER, now=r.clock.now()) for frames in r.sock.sent]
    assert [m.message_id for m in got] == [m.message_id for m in run]


@pytest.mark.parametrize("shape", [WireShape.NATIVE, WireShape.V011])
def test_a_run_stops_where_the_socket_blocks_and_leaves_the_claim(shape: WireShape) -> None:
    r = Rig(shape)
    run = _run(r.clock, 3 * FRAME_MESSAGES)
    r.sock.accept(1)  # one zmq message more, then it would block
    r.gate.claim_locked(PEER)
    taken = FRAME_MESSAGES if shape is WireShape.NATIVE else 1
    assert r.lane.deliver_many(run) == taken
    assert r.lane.sent == taken and r.told == []
    assert r.gate.claim_locked(PEER) is None  # still claimed: the caller tells a plan


@pytest.mark.parametrize("shape", [WireShape.NATIVE, WireShape.V011])
def test_a_run_stops_before_an_expired_or_unencodable_message(shape: WireShape) -> None:
    r = Rig(shape)
    run = _run(r.clock, 10)
    run[4] = fast(r.clock, ttl=1.0)
    r.clock.advance(2.0)  # run[4] has expired; the others have not
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == 4
    r.gate.claim_locked(PEER)
    rest = run[5:]
    rest[2] = fast(r.clock, {"n": object()})
    # Native: the frame that would hold it is left whole (packed in one call).
    taken = 0 if shape is WireShape.NATIVE else 2
    assert r.lane.deliver_many(rest) == taken
    assert r.lane.sent == 4 + taken


@pytest.mark.parametrize("shape", [WireShape.NATIVE, WireShape.V011])
def test_a_message_whose_send_raised_is_failed_and_not_sent_again(shape: WireShape) -> None:
    r = Rig(shape)
    concern = FakeRef(wants_sent=True)
    r.concerns.add(b"cmd", concern)
    r.sock.fail_next(1)  # a transport error: the first zmq message is tried, and lost
    run = _run(r.clock, 10)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == 10  # all taken: the gate is handed back
    lost = run if shape is WireShape.NATIVE else run[:1]  # the frame's, or the one
    assert len(r.sock.sent) == (0 if shape is WireShape.NATIVE else 9)
    assert r.lane.sent == 10 - len(lost)
    (failed,) = [m for m in concern.told if type(m).__name__ == "Failed"]
    assert [m for m, _ in failed.items] == lost  # type: ignore[attr-defined]
    assert r.gate.claim_locked(PEER) == "ref-x"


def test_an_interrupted_run_gives_the_scheduler_an_empty_result() -> None:
    r = Rig()

    def interrupted(frames: object) -> None:
        raise KeyboardInterrupt

    r.sock.send_frames = interrupted  # type: ignore[method-assign,assignment]
    r.gate.claim_locked(PEER)
    with pytest.raises(KeyboardInterrupt):
        r.lane.deliver_many(_run(r.clock, 10))
    assert r.told == [PlanResult(peer=PEER, epoch=0, medium_len=0)]  # not busy for ever
    assert r.gate.claim_locked(PEER) is None  # the Scheduler reopens it


def test_a_runs_sends_are_reported_in_one_batch_and_quiet_ones_only_counted() -> None:
    r = Rig()
    concern, connection = FakeRef(wants_sent=True), FakeRef(wants_sent=False)
    r.concerns.add(b"cmd", concern)
    r.concerns.add(b"quiet", FakeRef(wants_sent=False))
    r.lane.owner = connection
    run = _run(r.clock, 6)
    run[1] = Message.create(b"me", PEER, b"quiet", {}, now=r.clock.now(), priority=Priority.FAST)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == 6
    assert connection.told == [REPORT_SENT] and concern.told == []
    assert r.lane.take_unreported() == [m for m in run if m is not run[1]]
    assert r.lane.quiet == 1


def test_a_run_counts_as_one_send_of_a_streak() -> None:
    r = Rig()
    for _ in range(BURST_STREAK):
        r.gate.claim_locked(PEER)
        assert r.lane.deliver_many(_run(r.clock, 3)) == 3
        r.clock.advance(BURST_WINDOW / 2)
    assert r.lane.in_burst()


class IntakeRig:
    """An intake whose gate for PEER is open on a lane with a fake socket;
    ``ref`` stands in for the peer's connection."""

    def __init__(self) -> None:
        self.clock = ManualClock(100.0)
        self.intake = Intake(capacity=10_000, wake=lambda: None)
        self.told: list[object] = []
        self.lane = DirectLane(
            PEER,
            shape=WireShape.NATIVE,
            clock=self.clock,
            concerns=ConcernRegistry(),
            gate=self.intake.gate,
            tell_scheduler=self.told.append,
        )
        self.sock = FakeSocket()
        self.lane.attach(self.sock)
        self.ref = FakeRef(wants_sent=False)
        self.intake.gate.add_lane(PEER, self.lane)
        self.intake.gate.open(PEER, self.ref)


def test_the_intake_sends_a_fast_run_for_an_idle_peer_in_the_callers_thread() -> None:
    k = IntakeRig()
    run = _run(k.clock, EXPRESS_MANY * 2 + 10)  # three runs of the gate
    assert k.intake.express_many(run) == len(run)
    assert [m for ids in _frame_ids(k.sock.sent) for m in ids] == [m.message_id for m in run]
    assert k.ref.told == [] and k.told == [] and len(k.intake) == 0
    assert k.intake.gate.claim_locked(PEER) is k.ref  # open again


def test_the_first_message_the_socket_did_not_take_goes_to_the_connection_alone() -> None:
    k = IntakeRig()
    run = _run(k.clock, EXPRESS_MANY + 100)
    k.sock.accept(2)
    assert k.intake.express_many(run) == 2 * FRAME_MESSAGES + 1  # the rest is the caller's
    (plan,) = k.ref.told
    assert isinstance(plan, Plan) and plan.through_gate and plan.peer == PEER
    assert plan.fast == (run[2 * FRAME_MESSAGES],)
    assert k.intake.express_many(run[EXPRESS_MANY:]) == 0  # the gate stays claimed


@pytest.mark.parametrize(
    "case", ["one message", "two peers", "a medium one", "intake not empty", "gate shut", "burst"]
)
def test_the_intake_expresses_only_fast_runs_for_one_idle_peer(case: str) -> None:
    k = IntakeRig()
    run = _run(k.clock, 5)
    if case == "one message":
        run = run[:1]
    elif case == "two peers":
        run[3] = Message.create(b"me", b"y", b"cmd", {}, now=k.clock.now(), priority=Priority.FAST)
    elif case == "a medium one":
        run[3] = Message.create(b"me", PEER, b"cmd", {}, now=k.clock.now())
    elif case == "intake not empty":
        k.intake.put([Message.create(b"me", b"y", b"cmd", {}, now=k.clock.now())])
    elif case == "gate shut":
        assert k.intake.gate.close(PEER)
    else:
        for _ in range(BURST_STREAK):
            k.intake.gate.claim_locked(PEER)
            assert k.lane.deliver(fast(k.clock))
    assert k.intake.express_many(run) == 0
    assert all(m.message_id not in _sent_ids(k.sock) for m in run)


def _sent_ids(sock: FakeSocket) -> set[int]:
    return {mid for ids in _frame_ids_any(sock.sent) for mid in ids}


def _frame_ids_any(sent: list[list[bytes]]) -> list[list[int]]:
    return [
        [m.message_id for m in decode_many([b"me", *frames], PEER, now=0.0)[0]] for frames in sent
    ]


@pytest.mark.parametrize("why", ["blocked", "expired", "no socket"])
def test_a_run_of_which_nothing_goes_hands_the_gate_back_as_it_was(why: str) -> None:
    r = Rig()
    run = _run(r.clock, 5, ttl=1.0)
    if why == "blocked":
        r.sock.block()
    elif why == "expired":
        r.clock.advance(2.0)
    else:
        r.lane.attach(None)
    r.gate.claim_locked(PEER)
    assert r.lane.deliver_many(run) == 0
    assert r.sock.sent == [] and r.told == []
    assert r.gate.claim_locked(PEER) == "ref-x"  # the caller queues them as any others


def test_the_last_message_of_a_list_past_whole_runs_goes_straight_out_too() -> None:
    k = IntakeRig()
    run = _run(k.clock, EXPRESS_MANY + 1)
    assert k.intake.express_many(run) == len(run)
    assert len(k.sock.sent) == EXPRESS_MANY // FRAME_MESSAGES + 1  # a frame of its own
    assert k.ref.told == [] and len(k.intake) == 0


class _Interrupting:
    """A clock whose next read raises KeyboardInterrupt, as Ctrl-C would land."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self.armed = False

    def now(self) -> float:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return self._clock.now()


@pytest.mark.parametrize("many", [False, True])
def test_an_interrupt_inside_a_claimed_send_hands_the_gate_back_to_the_scheduler(
    many: bool,
) -> None:
    # It used to leave the claim taken: the Scheduler then waited for that
    # plan's result for good, and the peer's messages with it.
    r = Rig()
    clock = _Interrupting(r.clock)
    r.lane._clock = clock  # type: ignore[assignment]
    r.gate.claim_locked(PEER)
    clock.armed = True
    with pytest.raises(KeyboardInterrupt):
        if many:
            r.lane.deliver_many(_run(r.clock, 3))
        else:
            r.lane.deliver(fast(r.clock))
    assert r.told == [PlanResult(PEER, 0, 0)]  # the Scheduler hears the claim is over
    assert r.gate.claim_locked(PEER) is None  # shut until the Scheduler opens it
    assert not r.gate.hand_back(PEER, reopen=True)  # no claim left behind
