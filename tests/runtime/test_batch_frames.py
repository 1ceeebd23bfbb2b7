"""A PeerConnection carrying out plans: on the native wire it sends a plan's
messages in batch frames, in order, only when the socket takes them, and a
frame that fails fails exactly the messages in it; on any wire it reports
sends before the plan's result."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from broken_mapping import BrokenMapping
from sendpath_kit import ME, Kit, make

from p2p0mq_actors.core.codec import MIN_MESSAGE_SIZE, WireShape, decode_many, encode
from p2p0mq_actors.core.errors import TransportError, UnencodableError, UnexpectedSendError
from p2p0mq_actors.core.fairness import Plan, PlanResult
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.core.native import encode_native_batch
from p2p0mq_actors.runtime import bulk as bulk_module
from p2p0mq_actors.runtime.bulk import FRAME_BYTES, FRAME_MESSAGES
from p2p0mq_actors.runtime.messages import Sent
from p2p0mq_actors.runtime.outcomes import ConcernRegistry

FAST = Priority.FAST


@pytest.fixture
def kit() -> Iterator[Kit]:
    yield Kit()


def _decoded(frames: list[list[bytes]]) -> list[list[int]]:
    """The message ids in each frame sent."""
    out = []
    for frame in frames:
        assert len(frame) == 1
        got, errors = decode_many([b"me", frame[0]], b"x", now=0.0)
        assert errors == []
        out.append([m.message_id for m in got])
    return out


def _all_ids(frames: list[list[bytes]]) -> list[int]:
    """The message ids of every frame sent, in order."""
    return [mid for ids in _decoded(frames) for mid in ids]


def _plan(fast: tuple[Message, ...] = (), medium: tuple[Message, ...] = (), rounds: int = 16):
    return Plan(peer=b"x", epoch=1, rounds=rounds, fast=fast, new_medium=medium)


def test_a_plan_goes_out_in_frames_of_at_most_frame_messages_in_order(kit: Kit) -> None:
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(FRAME_MESSAGES + 6))
    medium = tuple(make(kit.clock, b"x") for _ in range(3))
    peer.tell(_plan(fast, medium, rounds=2))
    assert kit.log.wait_for(1) == [PlanResult(peer=b"x", epoch=1, medium_len=1)]
    kit.book.wait_for(lambda b: len(b.sent) == len(fast) + 2)
    sent = kit.factory.sockets[b"x"].sent
    ids = [m.message_id for m in (*fast, *medium[:2])]
    # the fast messages packed a frame at a time, then the medium ones
    assert _decoded(sent) == [
        ids[:FRAME_MESSAGES],
        ids[FRAME_MESSAGES : len(fast)],
        ids[len(fast) :],
    ]
    assert kit.book.sent == [*fast, *medium[:2]]


def test_a_plan_of_one_message_sends_a_plain_single_frame(kit: Kit) -> None:
    peer = kit.peer(shape=WireShape.NATIVE)
    m = make(kit.clock, b"x", prio=FAST)
    peer.tell(_plan((m,)))
    kit.book.wait_for(lambda b: len(b.sent) == 1)
    (frame,) = kit.factory.sockets[b"x"].sent
    assert frame[0][:2] == b"\x9a\x01"  # the ten-field envelope, not a batch


def test_no_frame_is_begun_while_the_socket_would_block(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.block()
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(3))
    peer.tell(_plan(fast))
    assert kit.log.wait_for(1) == [
        PlanResult(peer=b"x", epoch=1, medium_len=0, unsent_fast=fast, blocked=True)
    ]
    assert sock.sent == [] and kit.book.sent == [] and kit.book.failed == []


def test_a_frame_that_fails_fails_its_messages_and_the_next_frame_goes_on(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.fail_next(1, errno.EHOSTUNREACH)
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(FRAME_MESSAGES + 2))
    peer.tell(_plan(fast))
    assert kit.log.wait_for(1)[0] == PlanResult(peer=b"x", epoch=1, medium_len=0)
    kit.book.wait_for(lambda b: len(b.sent) == 2 and len(b.failed) == FRAME_MESSAGES)
    assert [m for m, _ in kit.book.failed] == list(fast[:FRAME_MESSAGES])
    assert all(isinstance(e, TransportError) for _, e in kit.book.failed)
    # kept without the frames it was raised through (core.errors.detached)
    assert all(e.__traceback__ is None for _, e in kit.book.failed)
    assert kit.book.sent == list(fast[FRAME_MESSAGES:])
    assert _decoded(sock.sent) == [[m.message_id for m in fast[FRAME_MESSAGES:]]]


def test_a_socket_that_stops_taking_frames_mid_plan_keeps_the_rest_in_order(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    sock.accept(1)  # one frame, then blocked
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(FRAME_MESSAGES + 5))
    peer.tell(_plan(fast))
    assert kit.log.wait_for(1) == [
        PlanResult(
            peer=b"x",
            epoch=1,
            medium_len=0,
            unsent_fast=fast[FRAME_MESSAGES:],
            blocked=True,
        )
    ]
    kit.book.wait_for(lambda b: len(b.sent) == FRAME_MESSAGES)
    assert _decoded(sock.sent) == [[m.message_id for m in fast[:FRAME_MESSAGES]]]
    assert kit.book.failed == []


def test_sends_are_reported_before_the_plan_result(kit: Kit) -> None:
    # The Scheduler may start the next epoch once it has the result: a later
    # epoch's sends must not be heard of before this plan's.
    kit.registry = ConcernRegistry()
    kit.registry.add(b"t", kit.recorder)  # one log for both: the order is the tells'
    peer = kit.peer()
    m = make(kit.clock, b"x", prio=FAST)
    peer.tell(_plan((m,)))
    assert kit.log.wait_for(2) == [Sent((m,)), PlanResult(peer=b"x", epoch=1, medium_len=0)]


def test_a_frame_whose_send_raises_a_bug_fails_its_messages_and_the_connection_lives(
    kit: Kit,
) -> None:
    sock = kit.factory.prepare(b"x")
    real_send = sock.send_frames
    calls = []

    def broken_once(frames: list[bytes]) -> None:
        calls.append(len(frames))
        if len(calls) == 1:
            raise RuntimeError("a bug below the connection")
        real_send(frames)

    sock.send_frames = broken_once  # type: ignore[method-assign]
    peer = kit.peer(shape=WireShape.NATIVE)
    first = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(3))
    peer.tell(_plan(first))
    kit.book.wait_for(lambda b: len(b.failed) == 3)
    assert [m for m, _ in kit.book.failed] == list(first)
    assert all(isinstance(e, UnexpectedSendError) for _, e in kit.book.failed)
    assert kit.book.sent == []
    later = make(kit.clock, b"x", prio=FAST)
    peer.tell(Plan(peer=b"x", epoch=2, rounds=1, fast=(later,)))
    kit.book.wait_for(lambda b: b.sent == [later])


def _fast_with(kit: Kit, payload: dict[str, object]) -> Message:
    return Message.create(ME, b"x", b"t", payload, now=kit.clock.now(), priority=FAST)


def test_a_fast_message_that_cannot_be_encoded_fails_alone_and_the_rest_go_out_in_order(
    kit: Kit,
) -> None:
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = [make(kit.clock, b"x", prio=FAST) for _ in range(FRAME_MESSAGES + 10)]
    bad = _fast_with(kit, {"n": object()})
    fast.insert(5, bad)
    peer.tell(_plan(tuple(fast)))
    assert kit.log.wait_for(1) == [PlanResult(peer=b"x", epoch=1, medium_len=0)]
    kit.book.wait_for(lambda b: len(b.sent) == len(fast) - 1 and len(b.failed) == 1)
    ((failed, error),) = kit.book.failed
    assert failed is bad and isinstance(error, UnencodableError)
    assert error.__traceback__ is None  # nor its cause's (core.errors.detached)
    assert error.__cause__ is None or error.__cause__.__traceback__ is None
    good = [m for m in fast if m is not bad]
    assert kit.book.sent == good
    assert _all_ids(sock.sent) == [m.message_id for m in good]


def test_fast_messages_too_big_for_one_frame_go_out_in_frames_of_at_most_frame_bytes(
    kit: Kit,
) -> None:
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=WireShape.NATIVE)
    size = FRAME_BYTES // 16  # 64 of them make four frames' worth
    fast = tuple(_fast_with(kit, {"blob": bytes(size)}) for _ in range(FRAME_MESSAGES))
    peer.tell(_plan(fast))
    kit.book.wait_for(lambda b: len(b.sent) == len(fast))
    assert _all_ids(sock.sent) == [m.message_id for m in fast]
    assert len(sock.sent) >= 4
    assert all(len(frame[0]) <= FRAME_BYTES + size + 100 for frame in sock.sent)


def test_large_fast_messages_are_packed_in_smaller_frames_and_later_plans_keep_the_size(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed: list[int] = []  # messages per packing, in order

    def counting(messages: list[Message], now: float, **kwargs: object) -> bytes:
        packed.append(len(messages))
        return encode_native_batch(messages, now, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bulk_module, "encode_native_batch", counting)
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=WireShape.NATIVE)
    size = FRAME_BYTES // 16
    first = tuple(_fast_with(kit, {"blob": bytes(size)}) for _ in range(FRAME_MESSAGES))
    peer.tell(_plan(first))
    kit.book.wait_for(lambda b: len(b.sent) == len(first))
    assert packed[:4] == [64, 32, 16, 8]  # halved until a frame fits
    assert [len(ids) for ids in _decoded(sock.sent)] == [8] * 8
    packed.clear()
    second = tuple(_fast_with(kit, {"blob": bytes(size)}) for _ in range(FRAME_MESSAGES))
    peer.tell(Plan(peer=b"x", epoch=2, rounds=16, fast=second))
    kit.book.wait_for(lambda b: len(b.sent) == 2 * len(first))
    assert packed == [8] * 8  # no packing wasted
    assert _all_ids(sock.sent) == [m.message_id for m in (*first, *second)]
    assert all(len(frame[0]) <= FRAME_BYTES for frame in sock.sent)


def test_small_messages_after_large_ones_go_back_to_full_frames(kit: Kit) -> None:
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=WireShape.NATIVE)
    big = tuple(_fast_with(kit, {"blob": bytes(FRAME_BYTES // 16)}) for _ in range(16))
    peer.tell(_plan(big))
    kit.book.wait_for(lambda b: len(b.sent) == len(big))
    small = tuple(make(kit.clock, b"x", prio=FAST) for _ in range(4 * FRAME_MESSAGES))
    peer.tell(Plan(peer=b"x", epoch=2, rounds=16, fast=small))
    kit.book.wait_for(lambda b: len(b.sent) == len(big) + len(small))
    sizes = [len(ids) for ids in _decoded(sock.sent)][2:]  # after the two frames of 8 big
    assert sizes == [8, 16, 32, 64, 64, 64, 8]  # grown back by doubling
    assert _all_ids(sock.sent) == [m.message_id for m in (*big, *small)]


# -- max_frame: the peer's max_message_size ------------------------------------------

LIMIT = MIN_MESSAGE_SIZE


def _sizes_then_too_big(kit: Kit, prio: Priority) -> tuple[list[Message], Message]:
    """Messages of payloads from none to 3,000 bytes, and one too big for
    ``LIMIT`` in the middle of them."""
    messages = [
        Message.create(ME, b"x", b"t", {"b": bytes(n)}, now=kit.clock.now(), priority=prio)
        for n in [0, 3000, 10, 1500, 2900, 0, 700] * 6
    ]
    big = Message.create(ME, b"x", b"t", {"b": bytes(LIMIT)}, now=kit.clock.now(), priority=prio)
    messages.insert(20, big)
    return messages, big


@pytest.mark.parametrize("shape", list(WireShape))
@pytest.mark.parametrize("prio", [FAST, Priority.MEDIUM])
def test_no_frame_passes_max_frame_and_a_message_that_cannot_fit_fails_alone(
    kit: Kit, shape: WireShape, prio: Priority
) -> None:
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=shape, max_frame=LIMIT)
    messages, big = _sizes_then_too_big(kit, prio)
    if prio is FAST:
        peer.tell(_plan(tuple(messages)))
    else:
        peer.tell(_plan(medium=tuple(messages), rounds=len(messages)))
    kit.book.wait_for(lambda b: len(b.sent) + len(b.failed) == len(messages))
    ((failed, error),) = kit.book.failed
    assert failed is big and isinstance(error, UnencodableError)
    assert f"over the limit of {LIMIT:,} (max_message_size)" in str(error)
    good = [m for m in messages if m is not big]
    assert kit.book.sent == good
    assert all(len(part) <= LIMIT for frames in sock.sent for part in frames)
    if shape is WireShape.NATIVE:
        assert _all_ids(sock.sent) == [m.message_id for m in good]
        assert len(sock.sent) < len(good)  # still batched
    else:
        assert sock.sent == [encode(m, shape) for m in good]


def test_a_fast_message_whose_payload_raises_a_bug_fails_alone_after_a_frame_went_out(
    kit: Kit,
) -> None:
    # One frame of FRAME_MESSAGES went out before the bad message's frame
    # was packed: those stay sent (a Concern retrying them would send them twice).
    sock = kit.factory.prepare(b"x")
    peer = kit.peer(shape=WireShape.NATIVE)
    fast = [make(kit.clock, b"x", prio=FAST) for _ in range(FRAME_MESSAGES + 6)]
    bad = _fast_with(kit, {"n": BrokenMapping()})
    fast.insert(FRAME_MESSAGES + 2, bad)
    peer.tell(_plan(tuple(fast)))
    assert kit.log.wait_for(1) == [PlanResult(peer=b"x", epoch=1, medium_len=0)]
    kit.book.wait_for(lambda b: len(b.sent) + len(b.failed) == len(fast))
    ((failed, error),) = kit.book.failed
    assert failed is bad and isinstance(error, UnexpectedSendError)
    good = [m for m in fast if m is not bad]
    assert kit.book.sent == good
    assert _all_ids(sock.sent) == [m.message_id for m in good]
