"""Inline Concerns: the Receiver runs an idle one's handlers in its own thread.

A real Receiver on 127.0.0.1 (``receiver_rig``), fed by a raw CURVE DEALER,
with an inline Concern for ``INLINE`` beside the rig's Recorder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from receiver_rig import TIMEOUT, Rig

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.core.native import encode_native_batch
from p2p0mq_actors.runtime import inline
from p2p0mq_actors.runtime.messages import FLUSH

INLINE = b"inl"


class Seen:
    """What an inline Concern handled: (message id, thread name), in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[tuple[int, str]] = []

    def add(self, message: Message) -> None:
        with self._cond:
            self.items.append((message.message_id, threading.current_thread().name))
            self._cond.notify_all()

    def wait_for(self, count: int) -> list[tuple[int, str]]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= count, TIMEOUT):
                raise TimeoutError(f"saw {self.items}, waited for {count}")
            return list(self.items)


class Quick(Concern):
    """Records each request; ``"hold"`` keeps it busy until ``release`` is set."""

    command = INLINE
    inline = True

    def __init__(
        self,
        *,
        seen: Seen,
        holding: threading.Event | None = None,
        release: threading.Event | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.seen = seen
        self.holding = holding or threading.Event()
        self.release = release or threading.Event()

    def on_request(self, message: Message) -> None:
        self.seen.add(message)
        if message.payload.get("boom"):
            raise RuntimeError("a handler bug")

    def on_other(self, message: Any) -> Any:
        if message == "hold":
            self.holding.set()
            self.release.wait(TIMEOUT)
        return None


class Told(Quick):
    inline = False


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    yield rig
    rig.close()


def start(rig: Rig, kind: type[Quick] = Quick, **kwargs: Any) -> tuple[Any, Seen]:
    seen = Seen()
    ref = kind.start(seen=seen, **kwargs)
    assert ref.ask(FLUSH, timeout=TIMEOUT) is FLUSH  # started: its handle is offered
    rig.concerns.add(INLINE, ref)
    return ref, seen


def stop(ref: Any) -> None:
    if ref.is_alive():
        ref.stop(timeout=TIMEOUT)


def test_an_idle_inline_concern_is_run_in_the_receivers_thread(rig: Rig) -> None:
    ref, seen = start(rig)
    try:
        rig.send(rig.client(), rig.message(1, command=INLINE))
        [(mid, thread)] = seen.wait_for(1)
        assert mid == 1 and thread.startswith("Receiver")
        stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
        assert stats["inline"] == 1 and stats["backlog"] == 0
    finally:
        stop(ref)


def test_a_concern_that_is_not_inline_is_told(rig: Rig) -> None:
    ref, seen = start(rig, Told)
    try:
        assert inline.handle_of(ref) is None
        rig.send(rig.client(), rig.message(1, command=INLINE))
        [(_, thread)] = seen.wait_for(1)
        assert thread.startswith("Told")
        assert rig.wait_stats(lambda s: s["dispatched"] == 1)["inline"] == 0
    finally:
        stop(ref)


def test_a_busy_inline_concern_is_told_and_received_messages_keep_their_order(
    rig: Rig,
) -> None:
    holding, release = threading.Event(), threading.Event()
    ref, seen = start(rig, holding=holding, release=release)
    try:
        ref.tell("hold")
        assert holding.wait(TIMEOUT)  # its thread is busy
        client = rig.client()
        for n in (1, 2):  # one at a time: each a lone message, each refused
            rig.send(client, rig.message(n, command=INLINE))
            rig.wait_stats(lambda s, n=n: s["dispatched"] == n)
        assert rig.stats()["inline"] == 0  # told
        release.set()
        assert ref.ask(FLUSH, timeout=TIMEOUT) is FLUSH  # idle again, nothing held
        rig.send(client, rig.message(3, command=INLINE))
        items = seen.wait_for(3)
        assert [mid for mid, _ in items] == [1, 2, 3]
        assert [t.startswith("Receiver") for _, t in items] == [False, False, True]
        assert rig.wait_stats(lambda s: s["dispatched"] == 3)["inline"] == 1
    finally:
        stop(ref)


def test_messages_that_arrive_together_are_told_even_to_an_idle_inline_concern(
    rig: Rig,
) -> None:
    # Sent right after connect, they arrive in one drain (see test_receiver):
    # its Concern's thread handles them beside the Receiver.
    ref, seen = start(rig)
    try:
        rig.send(rig.client(), *(rig.message(n, command=INLINE) for n in range(1, 11)))
        items = seen.wait_for(10)
        assert [mid for mid, _ in items] == list(range(1, 11))
        assert not any(thread.startswith("Receiver") for _, thread in items)
        assert rig.wait_stats(lambda s: s["dispatched"] == 10)["inline"] == 0
    finally:
        stop(ref)


def test_a_stopped_inline_concern_is_neither_run_nor_offered(rig: Rig) -> None:
    ref, seen = start(rig)
    assert inline.handle_of(ref) is not None
    stop(ref)
    assert inline.handle_of(ref) is None
    rig.send(rig.client(), rig.message(1, command=INLINE))
    stats = rig.wait_stats(lambda s: s["dropped"]["concern-stopped"] == 1)
    assert stats["inline"] == 0 and seen.items == []


def test_an_inline_handler_that_raises_is_counted_and_receiving_goes_on(rig: Rig) -> None:
    ref, seen = start(rig)
    try:
        client = rig.client()
        rig.send(client, rig.message(1, command=INLINE, payload={"boom": True}))
        seen.wait_for(1)
        rig.send(client, rig.message(2, command=INLINE))
        assert [mid for mid, _ in seen.wait_for(2)] == [1, 2]
        assert rig.wait_stats(lambda s: s["dispatched"] == 2)["errors"] == 0
        assert ref.proxy().counts.get(timeout=TIMEOUT)["errors"] == 1
    finally:
        stop(ref)


def test_a_handle_whose_concern_is_gone_is_forgotten() -> None:
    ref = Quick.start(seen=Seen())
    urn = ref.actor_urn
    ref.stop(timeout=TIMEOUT)
    inline.offer(urn, Quick(seen=Seen())._handle_inline)  # its owner is not kept alive
    assert inline.handle_of(ref) is None
    assert urn not in inline._handles  # nor its entry
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("hold")


class Slow(Quick):
    """Holds its inline handler until ``release``; records when it stops."""

    def on_request(self, message: Message) -> None:
        self.seen.add(message)
        self.holding.set()
        self.release.wait(TIMEOUT)

    def on_stop(self) -> None:
        self.seen.items.append((-1, "on_stop"))
        super().on_stop()

    def peek(self) -> str:
        return "proxied"


@pytest.mark.parametrize("while_inline", ["stop", "proxy call"])
def test_nothing_of_the_concern_runs_beside_a_handler_the_receiver_runs_inline(
    rig: Rig, while_inline: str
) -> None:
    holding, release = threading.Event(), threading.Event()
    ref, seen = start(rig, Slow, holding=holding, release=release)
    try:
        rig.send(rig.client(), rig.message(1, command=INLINE))
        assert holding.wait(TIMEOUT)  # the Receiver's thread is in the handler
        stopping = ref.stop(block=False) if while_inline == "stop" else ref.proxy().peek()
        with pytest.raises(pykka.Timeout):  # it waits for the handler...
            stopping.get(timeout=0.2)
        release.set()
        stopping.get(timeout=TIMEOUT)  # ...and runs once it returned
        if while_inline == "stop":
            assert [mid for mid, _ in seen.items] == [1, -1]  # on_stop after the handler
    finally:
        release.set()
        stop(ref)


def test_a_native_batch_frame_arriving_alone_is_told_not_run_inline(rig: Rig) -> None:
    """A lone zmq message was taken for a lone message: a batch of up to
    4,096 ran its handlers in the Receiver's thread, holding up all receiving."""
    ref, seen = start(rig)
    try:
        batch = [rig.message(n, command=INLINE) for n in range(1, 65)]
        rig.send(rig.client(), [encode_native_batch(batch, rig.clock.now())])
        items = seen.wait_for(64)
        assert [mid for mid, _ in items] == list(range(1, 65))
        assert all(thread.startswith("Quick") for _, thread in items)
        assert rig.wait_stats(lambda s: s["dispatched"] == 64)["inline"] == 0
    finally:
        stop(ref)
