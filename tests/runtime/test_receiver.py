"""The Receiver alone: a real CURVE ROUTER on 127.0.0.1, fed by raw DEALER
clients made here, with a ``Recorder`` as the Concern of ``b"cmd"``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pykka
import pytest
import zmq
from receiver_rig import ALICE, BOB, COMMAND, TIMEOUT, Contexts, Rig, end_and_expect_let_go

from p2p0mq_actors.core import codec as codec_module
from p2p0mq_actors.core.codec import WireShape, decode, encode
from p2p0mq_actors.core.errors import ConfigurationError, ProtocolError, TransportError
from p2p0mq_actors.core.message import Kind, Message
from p2p0mq_actors.core.native import batch_frame, encode_native_body
from p2p0mq_actors.runtime import receiver as receiver_module
from p2p0mq_actors.runtime.clock import MonotonicClock
from p2p0mq_actors.runtime.messages import Bind, Received
from p2p0mq_actors.runtime.outcomes import ConcernRegistry
from p2p0mq_actors.runtime.receiver import REJECT_REASONS, Receiver, reject_reason
from p2p0mq_actors.testing import ManualClock, MessageLog, Recorder
from p2p0mq_actors.transport.errors import SocketClosedError
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import AllowedKeys, CurveRouter

NO_REJECTS = dict.fromkeys(REJECT_REASONS, 0)


@pytest.fixture
def rig_factory() -> Iterator[Any]:
    made: list[Rig] = []

    def build(**options: Any) -> Rig:
        rig = Rig(**options)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.close()


@pytest.fixture
def rig(rig_factory: Any) -> Rig:
    return rig_factory()


# -- dispatching ----------------------------------------------------------------


def test_messages_that_arrive_together_reach_their_concern_in_one_tell_in_order(rig: Rig) -> None:
    # Sent right after connect, they wait at the client for the handshake;
    # libzmq then writes them in one go and the ROUTER makes them visible at
    # once, so the Receiver's first drain takes all ten.
    client = rig.client()
    sent = [rig.message(n) for n in range(1, 11)]
    rig.send(client, *sent)
    rig.wait_stats(lambda s: s["dispatched"] == 10)
    assert rig.received() == [Received(tuple(sent))]


def test_each_concern_gets_one_tell_per_step_with_its_own_messages(rig: Rig) -> None:
    other_log = MessageLog()
    rig.concerns.add(b"other", Recorder.start(other_log))
    client = rig.client()
    mine = [rig.message(1), rig.message(3)]
    theirs = [rig.message(2, command=b"other"), rig.message(4, command=b"other")]
    rig.send(client, mine[0], theirs[0], mine[1], theirs[1])
    rig.wait_stats(lambda s: s["dispatched"] == 4)
    assert rig.received() == [Received(tuple(mine))]
    assert other_log.wait_for(1) == [Received(tuple(theirs))]


def test_a_concern_owning_several_commands_gets_them_in_one_tell_in_order(rig: Rig) -> None:
    rig.concerns.add(b"also", rig.recorder)  # one Concern, two commands
    client = rig.client()
    sent = [rig.message(1), rig.message(2, command=b"also"), rig.message(3)]
    rig.send(client, *sent)
    rig.wait_stats(lambda s: s["dispatched"] == 3)
    assert rig.received() == [Received(tuple(sent))]


def test_idle_polls_do_not_split_the_next_burst(rig: Rig) -> None:
    # Empty polls leave the mode as it was: messages that then arrive
    # together still reach their Concern in one tell.
    steps = rig.stats()["steps"]
    rig.wait_stats(lambda s: s["steps"] >= steps + 3)  # idle polls, no messages
    client = rig.client()  # sent right after connect: they arrive together
    sent = [rig.message(n) for n in range(1, 11)]
    rig.send(client, *sent)
    rig.wait_stats(dispatched(10))
    assert rig.received() == [Received(tuple(sent))]


def test_from_lone_messages_to_bursts_and_back_none_is_lost_or_reordered(rig: Rig) -> None:
    # After a lone message the Receiver hands the next one on before it
    # reads the rest (a round trip's reply goes first); whatever the timing,
    # the Concern gets every message once, in order.
    client = rig.client()
    sent: list[Message] = []
    for n, burst in enumerate([1, 1, 40, 1, 25, 1, 1, 60], start=1):
        batch = [rig.message(n * 100 + k) for k in range(burst)]
        rig.send(client, *batch)
        sent += batch
        rig.wait_stats(dispatched(len(sent)))
    assert rig.delivered() == sent


def test_after_a_lone_message_is_handed_on_the_receiver_yields_its_cpu_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    yields: list[int] = []
    monkeypatch.setattr(receiver_module, "_yield_cpu", lambda: yields.append(1))
    client = rig.client()
    together = [rig.message(n) for n in range(1, 11)]  # arrive together: see the first test
    rig.send(client, *together)
    rig.wait_stats(dispatched(10))
    assert yields == []  # a batch: no thread waits for this one in particular
    lone = [rig.message(n) for n in range(11, 15)]
    for n, message in enumerate(lone, start=11):
        rig.send(client, message)
        rig.wait_stats(dispatched(n))
    # the first lone message came after a batch and was read as one
    assert len(yields) == 3
    assert rig.delivered() == together + lone


def dispatched(total: int) -> Any:
    """A ``wait_stats`` predicate: ``total`` messages dispatched."""
    return lambda stats: stats["dispatched"] == total


def test_a_reply_taken_by_on_reply_does_not_reach_its_concern(rig_factory: Any) -> None:
    offered: list[Message] = []
    lock = threading.Lock()

    def on_reply(message: Message) -> bool:
        with lock:
            offered.append(message)
        return message.message_id == 7  # the one a request future waits for

    rig = rig_factory(on_reply=on_reply)
    client = rig.client()
    taken, untaken = rig.message(7, kind=Kind.REPLY), rig.message(8, kind=Kind.REPLY)
    request = rig.message(9)
    rig.send(client, taken, untaken, request)
    stats = rig.wait_stats(lambda s: s["dispatched"] == 2)
    assert stats["replies_consumed"] == 1
    assert stats["received"] == 3
    assert rig.delivered() == [untaken, request]
    assert offered == [taken, untaken]


def test_a_command_without_a_concern_is_counted_and_not_dispatched(rig: Rig) -> None:
    client = rig.client()
    good = rig.message(2)
    rig.send(client, rig.message(1, command=b"nobody"), good)
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["unknown_command"] == 1
    assert stats["received"] == 2
    assert rig.delivered() == [good]


def test_messages_for_other_uuids_go_to_the_route_hook(rig_factory: Any) -> None:
    routed: list[list[Message]] = []
    rig = rig_factory(route=routed.append)
    client = rig.client()
    # Alice sends it through Bob: the destination frame names Carol.
    for_carol = rig.message(1, destination=b"carol", next_hop=BOB)
    rig.send(client, for_carol, rig.message(2))
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["routed"] == 1
    assert stats["dropped"] == {"no-route": 0, "route-failed": 0, "concern-stopped": 0}
    assert routed == [[for_carol]]
    assert (routed[0][0].previous_hop, routed[0][0].next_hop) == (ALICE, BOB)


def test_without_a_route_hook_messages_for_other_uuids_are_dropped_as_no_route(rig: Rig) -> None:
    client = rig.client()
    rig.send(client, rig.message(1, destination=b"carol", next_hop=BOB), rig.message(2))
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["dropped"] == {"no-route": 1, "route-failed": 0, "concern-stopped": 0}
    assert stats["routed"] == 0
    assert rig.delivered() == [rig.message(2)]


def test_a_stopped_concern_counts_its_messages_as_dropped(rig: Rig) -> None:
    rig.recorder.stop(timeout=TIMEOUT)
    rig.send(rig.client(), rig.message(1), rig.message(2))
    stats = rig.wait_stats(lambda s: s["received"] == 2)
    assert stats["dropped"] == {"no-route": 0, "route-failed": 0, "concern-stopped": 2}
    assert stats["dispatched"] == 0


def test_hooks_that_raise_are_counted_and_receiving_goes_on(rig_factory: Any) -> None:
    def broken(_: Any) -> bool:
        raise RuntimeError("boom")

    rig = rig_factory(on_reply=broken, route=broken)
    client = rig.client()
    reply = rig.message(1, kind=Kind.REPLY)
    rig.send(client, reply, rig.message(2, destination=b"carol", next_hop=BOB))
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["errors"] == 2
    assert stats["dropped"]["route-failed"] == 1
    assert rig.delivered() == [reply]  # on_reply failed: the Concern gets the reply
    rig.send(client, rig.message(3))
    rig.wait_stats(lambda s: s["dispatched"] == 2)


# -- the bound on what Concerns hold ---------------------------------------------------


class Holder(pykka.ThreadingActor):
    """A Concern stand-in that records what it is handed and counts it
    handled only when asked to ``"release"`` it."""

    def __init__(self, log: MessageLog) -> None:
        super().__init__()
        self.log = log
        self.held: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "release":
            held, self.held = self.held, []
            for done in held:
                done()
            return len(held)
        self.log.append(message)
        if isinstance(message, Received) and message.done is not None:
            self.held.append(message.done)
        return None


def _holding_rig(rig_factory: Any, **options: Any) -> tuple[Rig, Any, MessageLog]:
    rig = rig_factory(poll_interval=0.01, **options)
    log = MessageLog()
    holder = Holder.start(log)
    rig.concerns.remove(COMMAND)
    rig.concerns.add(COMMAND, holder)
    return rig, holder, log


def _sent_in_batches(rig: Rig, client: Any, count: int) -> list[Message]:
    sent = [rig.message(n) for n in range(1, count + 1)]
    for start in range(0, count, 100):  # within the client's high-water mark
        rig.send(client, *sent[start : start + 100])
    return sent


def test_the_receiver_reads_no_further_than_its_backlog_until_the_concern_catches_up(
    rig_factory: Any,
) -> None:
    rig, holder, log = _holding_rig(rig_factory, backlog=100, batch=10)
    try:
        sent = _sent_in_batches(rig, rig.client(), 600)
        stats = rig.wait_stats(lambda s: s["backlog_waits"] >= 1)
        held = stats["received"]
        assert 100 <= held <= 100 + 10  # the bound, plus at most one drain
        assert stats["backlog"] == stats["dispatched"] == held
        # It goes on waiting, reading nothing, while the Concern holds them.
        stats = rig.wait_stats(lambda s: s["backlog_waits"] >= 4)
        assert stats["received"] == held and stats["backlog"] == held
        # Each release lets it read on; nothing is lost or reordered.
        deadline = time.monotonic() + TIMEOUT
        while rig.stats()["received"] < 600:
            holder.ask("release", timeout=TIMEOUT)
            assert time.monotonic() < deadline, rig.stats()
        holder.ask("release", timeout=TIMEOUT)
        assert [m for r in log.items() if isinstance(r, Received) for m in r.messages] == sent
        assert rig.wait_stats(lambda s: s["backlog"] == 0)["dispatched"] == 600
    finally:
        holder.stop(timeout=TIMEOUT)


def test_native_batch_frames_fill_the_backlog_no_further_than_one_frame(
    rig_factory: Any,
) -> None:
    # Ten frames of 64 messages may come in one drain of ten: the drain
    # stops decoding once the backlog is full, the rest waits undecoded.
    rig, holder, log = _holding_rig(rig_factory, backlog=100, batch=10)
    try:
        client = rig.client()
        sent = [rig.message(n) for n in range(1, 641)]
        now = rig.clock.now()
        for start in range(0, 640, 64):
            bodies = [encode_native_body(m, now) for m in sent[start : start + 64]]
            rig.send(client, [batch_frame(bodies)])
        stats = rig.wait_stats(lambda s: s["backlog_waits"] >= 1)
        held = stats["received"]
        assert 100 <= held <= 100 + 64  # the bound, plus at most one frame
        assert stats["backlog"] == held
        deadline = time.monotonic() + TIMEOUT
        while rig.stats()["received"] < 640:
            holder.ask("release", timeout=TIMEOUT)
            assert time.monotonic() < deadline, rig.stats()
        holder.ask("release", timeout=TIMEOUT)
        got = [m for r in log.items() if isinstance(r, Received) for m in r.messages]
        assert [m.message_id for m in got] == [m.message_id for m in sent]
        assert rig.wait_stats(lambda s: s["backlog"] == 0)["dispatched"] == 640
    finally:
        holder.stop(timeout=TIMEOUT)


def test_a_concern_that_stops_holding_messages_does_not_hold_the_receiver(
    rig_factory: Any,
) -> None:
    rig, holder, _ = _holding_rig(rig_factory, backlog=50, batch=10)
    _sent_in_batches(rig, rig.client(), 300)
    held = rig.wait_stats(lambda s: s["backlog_waits"] >= 1)["received"]
    assert held <= 60
    holder.stop(timeout=TIMEOUT)  # what it held is gone with it
    stats = rig.wait_stats(lambda s: s["received"] == 300)
    assert stats["backlog"] == 0
    # What it held (counted once let go) and what came after it stopped.
    assert stats["dropped"]["concern-stopped"] == 300
    assert stats["dispatched"] == 0


def test_what_a_stopped_concern_held_is_let_go_and_counted_once_the_receiver_is_idle(
    rig_factory: Any,
) -> None:
    # Below the backlog's bound the Receiver never asked which Concerns had
    # stopped: what one held stayed counted for good, and was never said dropped.
    rig, holder, _ = _holding_rig(rig_factory, backlog=100, batch=10)
    _sent_in_batches(rig, rig.client(), 20)
    assert rig.wait_stats(lambda s: s["backlog"] == 20)["backlog_waits"] == 0
    holder.stop(timeout=TIMEOUT)
    stats = rig.wait_stats(lambda s: s["backlog"] == 0)
    assert stats["dropped"]["concern-stopped"] == 20
    # Each counted once: they were counted dispatched too, and the totals
    # could not add up (a review: 41,920 outcomes for 25,600 received).
    assert stats["dispatched"] == 0


def test_a_paused_receiver_still_answers_and_stops_within_a_poll(rig_factory: Any) -> None:
    rig, holder, _ = _holding_rig(rig_factory, backlog=20, batch=5)
    try:
        _sent_in_batches(rig, rig.client(), 100)
        rig.wait_stats(lambda s: s["backlog_waits"] >= 2)
        rig.ref.stop(timeout=TIMEOUT)
        assert not rig.ref.is_alive()
    finally:
        holder.stop(timeout=TIMEOUT)


def test_a_receiver_waiting_for_its_concerns_lets_go_of_a_context_someone_else_ends(
    rig_factory: Any,
) -> None:
    """Paused on a full backlog it reads nothing, yet it still notices that
    its ``context_factory``'s context is being ended, and closes its
    sockets: ``Context.term`` does not wait for the Concerns to catch up."""
    contexts = Contexts()
    rig, holder, _ = _holding_rig(rig_factory, backlog=20, batch=5, context_factory=contexts)
    try:
        _sent_in_batches(rig, rig.client(), 100)
        rig.wait_stats(lambda s: s["backlog_waits"] >= 2)
        end_and_expect_let_go(rig, contexts.made[0], "Context.term waits for the paused Receiver")
    finally:
        holder.stop(timeout=TIMEOUT)


def test_the_backlog_setting_is_checked(rig_factory: Any) -> None:
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ConfigurationError, match="backlog must be an int >= 1"):
            Receiver(
                uuid=BOB,
                keys=generate_keypair(),
                allowed=AllowedKeys(),
                concerns=ConcernRegistry(),
                clock=MonotonicClock(),
                backlog=bad,  # type: ignore[arg-type]
            )


# -- refusing frames ---------------------------------------------------------------


def test_malformed_frames_are_counted_by_reason_and_the_next_message_is_served(rig: Rig) -> None:
    client = rig.client()
    rig.send(
        client,
        [b"just one frame"],  # 2 frames with the identity
        [b"", b"", b"\x07", b"cmd", b"\x80"],  # kind 7
        [b"", b"", b"\x01", b"cmd", b"\xc1", b"\x80"],  # 0xc1 is never MessagePack
        [b"", b"", b"\x01", b"cmd", b"\x81\xa1"],  # truncated map
        [b"", b"", b"\x01", b"", b"\x80"],  # empty command
        [b"", b"\x00x", b"\x01", b"cmd", b"\x80"],  # source starts with a zero byte
    )
    good = rig.message(1)
    rig.send(client, good)
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["rejected"] == {
        **NO_REJECTS,
        "frames": 1,
        "kind": 1,
        "id": 1,
        "payload": 1,
        "command": 1,
        "address": 1,
    }
    assert stats["received"] == 1
    assert rig.delivered() == [good]


def test_in_one_drain_each_message_is_checked_against_its_own_key_and_identity() -> None:
    """The check is skipped only for the (key, identity) pair the message
    before passed with: a key speaking as another uuid, or another key
    speaking as the same uuid, is refused in the middle of a drain."""
    alice, carol = generate_keypair(), generate_keypair()
    allowed = AllowedKeys()
    allowed.add(alice.public, ALICE)
    allowed.add(carol.public, b"carol")
    log = MessageLog()
    recorder = Recorder.start(log)
    concerns = ConcernRegistry()
    concerns.add(COMMAND, recorder)
    receiver = Receiver(
        uuid=BOB, keys=generate_keypair(), allowed=allowed, concerns=concerns, clock=ManualClock()
    )
    try:

        def sent(n: int, key: bytes, identity: bytes) -> tuple[str, list[bytes]]:
            message = Message.create(identity, BOB, COMMAND, {"n": n}, now=0.0, message_id=n)
            return key.decode(), [identity, *encode(message, WireShape.V011)]

        receiver._handle(
            [
                sent(1, alice.public, ALICE),
                sent(2, alice.public, b"carol"),  # Alice's key, Carol's name
                sent(3, alice.public, ALICE),
                sent(4, carol.public, ALICE),  # Carol's key, Alice's name
                sent(5, carol.public, b"carol"),
                sent(6, alice.public, ALICE),
            ],
            0.0,
        )
        (batch,) = log.wait_for(1, timeout=TIMEOUT)
        assert [m.payload["n"] for m in batch.messages] == [1, 3, 5, 6]
        assert receiver.stats()["rejected"]["identity"] == 2
    finally:
        recorder.stop()


def test_a_client_without_an_identity_is_refused_as_address(rig: Rig) -> None:
    # The ROUTER names such a client with 5 bytes starting with a zero byte,
    # which is not a valid uuid.
    rig.send(rig.client(identity=None), rig.message(1))
    stats = rig.wait_stats(lambda s: s["rejected"]["address"] == 1)
    assert stats["received"] == 0


def test_rejections_are_logged_once_per_reason_per_warn_every_seconds(
    rig_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2p0mq_actors.runtime.receiver")
    rig = rig_factory(warn_every=10.0)
    client = rig.client()
    bad_kind = [b"", b"", b"\x07", b"cmd", b"\x80"]
    rig.send(client, bad_kind, bad_kind, bad_kind, rig.message(1))
    rig.wait_stats(lambda s: s["dispatched"] == 1)
    rig.clock.advance(10.0)
    rig.send(client, bad_kind, rig.message(2))
    rig.wait_stats(lambda s: s["dispatched"] == 2)
    lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 2, lines
    pattern = (
        r"<Receiver b'bob' LISTENING tcp://127\.0\.0\.1:\d+ received=\d+ dispatched=\d+ "
        r"rejected=\d+ dropped=0 unknown_command=0 steps=\d+>: rejected a message from "
        r"b'alice' \(kind\): frame 3 \(kind\): must be b'\\x01' \(request\) or b'\\x02' "
        r"\(reply\), not b'\\x07'"
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert re.fullmatch(pattern + r" \(2 more like it since the last such line\)", lines[1])


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"a"] * 5, "frames"),
        ([b"a", b"", b"", b"\x01", b"c", b"\x80", b"\x01", b"\x80"], "frames"),
        ([b"", b"", b"", b"\x01", b"c", b"\x80"], "address"),
        ([b"a", b"\x00", b"", b"\x01", b"c", b"\x80"], "address"),
        ([b"a", b"", b"\x00", b"\x01", b"c", b"\x80"], "address"),
        ([b"a", b"", b"", b"\x03", b"c", b"\x80"], "kind"),
        ([b"a", b"", b"", b"\x01", b"", b"\x80"], "command"),
        ([b"a", b"", b"", b"\x01", b"c", b"\xff", b"\x80"], "id"),
        ([b"a", b"", b"", b"\x01", b"c", b"\x01", b"\x90"], "payload"),
        ([b"a", b"", b"", b"\x01", b"c", b"\x81\x01\x01"], "payload"),
        ([b"a", b"", b"", b"\x01", b"c", 42], "frames"),
    ],
)
def test_each_refusal_of_the_codec_has_a_reason(frames: list[Any], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(frames, BOB, now=0.0)
    assert reject_reason(frames, caught.value) == reason


# -- control -------------------------------------------------------------------------


def test_a_fresh_receiver_reports_zero_everywhere(rig: Rig) -> None:
    stats = rig.stats()
    assert stats.pop("steps") >= 1
    assert stats == {
        "received": 0,
        "dispatched": 0,
        "replies_consumed": 0,
        "routed": 0,
        "unknown_command": 0,
        "errors": 0,
        "backlog": 0,
        "backlog_waits": 0,
        "inline": 0,
        "rejected": NO_REJECTS,
        "dropped": {"no-route": 0, "route-failed": 0, "concern-stopped": 0},
        "accepted": 0,
        "handshake_succeeded": 0,
        "handshake_failed_no_detail": 0,
        "handshake_failed_protocol": 0,
        "handshake_failed_auth": 0,
        "disconnected": 0,
        "zap_refused": 0,
        "receive_hwm": 1000,
        "endpoint": rig.endpoint,
        "state": "LISTENING",
    }
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", rig.endpoint)


def test_binding_a_taken_port_raises_configuration_error_to_the_asker(rig_factory: Any) -> None:
    first, second = rig_factory(), rig_factory()
    with pytest.raises(ConfigurationError, match=r"cannot listen on 'tcp://127\.0\.0\.1:\d+'"):
        second.ref.ask(Bind(first.endpoint), timeout=TIMEOUT)
    assert second.stats()["state"] == "LISTENING"  # it carries on with its own endpoint
    second.send(second.client(), second.message(1))
    second.wait_stats(lambda s: s["dispatched"] == 1)


def test_bind_refuses_what_is_not_an_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="Bind needs an endpoint"):
        Bind("127.0.0.1:5555")


def test_allow_and_deny_change_the_shared_allowed_keys(rig: Rig) -> None:
    carol = generate_keypair().public
    rig.proxy.allow(carol).get(timeout=TIMEOUT)
    assert carol in rig.allowed
    rig.proxy.deny(carol).get(timeout=TIMEOUT)
    assert carol not in rig.allowed
    with pytest.raises(ConfigurationError):
        rig.proxy.allow(b"not a key").get(timeout=TIMEOUT)


def test_the_repr_shows_the_live_state() -> None:
    receiver = _receiver()
    assert repr(receiver) == (
        "<Receiver b'bob' NEW unbound received=0 dispatched=0 rejected=0 dropped=0 "
        "unknown_command=0 steps=0>"
    )


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("uuid", b"", "uuid must be"),
        ("uuid", b"\x00bob", "uuid must be"),
        ("uuid", "bob", "uuid must be"),
        ("poll_interval", 0, "poll_interval must be"),
        ("poll_interval", float("inf"), "poll_interval must be"),
        ("ttl", -1.0, "ttl must be"),
        ("warn_every", -1, "warn_every must be"),
        ("batch", 0, "batch must be"),
        ("batch", True, "batch must be"),
    ],
)
def test_bad_settings_are_refused_when_built(option: str, value: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        _receiver(**{option: value})


def test_a_mismatched_key_pair_is_refused_when_built() -> None:
    keys = generate_keypair()
    with pytest.raises(ConfigurationError, match="does not match"):
        _receiver(keys=type(keys)(generate_keypair().public, keys.secret))


def _receiver(**options: Any) -> Receiver:
    """A Receiver object that is never started (no thread, no socket)."""
    settings: dict[str, Any] = {
        "uuid": BOB,
        "keys": generate_keypair(),
        "allowed": AllowedKeys(),
        "concerns": ConcernRegistry(),
        "clock": MonotonicClock(),
    }
    settings.update(options)
    return Receiver(**settings)


def test_a_failing_bind_that_was_told_not_asked_stops_the_receiver_cleanly(
    rig_factory: Any,
) -> None:
    first = rig_factory()
    before = set(threading.enumerate())
    contexts = Contexts()
    second = rig_factory(context_factory=contexts)
    started = set(threading.enumerate()) - before
    second.ref.tell(Bind(first.endpoint))  # nobody to raise to: the actor fails
    assert second.ref.actor_stopped.wait(TIMEOUT)
    for thread in started - {t for t in started if t.name.startswith("Recorder")}:
        thread.join(TIMEOUT)  # the Receiver's own thread and its ZAP authenticator
        assert not thread.is_alive(), thread
    assert contexts.made[0].closed  # on_failure closed the socket and ended the context


def test_a_native_batch_frame_is_delivered_in_order_and_a_bad_envelope_alone_refused(
    rig: Rig,
) -> None:
    client = rig.client()
    now = rig.clock.now()
    sent = [rig.message(n) for n in range(1, 4)]
    bodies = [encode_native_body(m, now) for m in sent]
    bad = msgpack.packb([9, ALICE, rig.uuid, b"cmd", 4, {}, 1000, 0, None])
    rig.send(client, [batch_frame([bodies[0], bad, bodies[1], bodies[2]])])
    stats = rig.wait_stats(lambda s: s["dispatched"] == 3)
    assert stats["received"] == 3
    assert sum(stats["rejected"].values()) == 1
    got = rig.delivered()
    assert [(m.message_id, m.payload, m.previous_hop) for m in got] == [
        (m.message_id, m.payload, ALICE) for m in sent
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([7, ALICE, BOB, b"cmd", 1, {}, 10, 0, None], "kind"),
        ([1, ALICE, BOB, b"cmd", -1, {}, 10, 0, None], "id"),
        ([1, ALICE, BOB, b"cmd", 1, {}, 0, 0, None], "other"),  # ttl_ms
        ([1, ALICE, BOB, b"cmd", 1, {}, 10, 256, None], "other"),  # hops
        ([1, ALICE, BOB, b"cmd", 1, {}, 10, 0, "trace"], "other"),  # trace id
        ([1, b"", BOB, b"cmd", 1, {}, 10, 0, None], "address"),
        ([1, ALICE, b"\x00b", b"cmd", 1, {}, 10, 0, None], "address"),
        ([1, ALICE, BOB, b"", 1, {}, 10, 0, None], "command"),
        ([1, ALICE, BOB, b"cmd", 1, {1: 2}, 10, 0, None], "payload"),
    ],
)
def test_a_refused_native_envelope_is_counted_under_the_field_at_fault(
    body: list[object], reason: str
) -> None:
    frame = msgpack.packb([1, *body], use_bin_type=True)
    with pytest.raises(ProtocolError) as caught:
        decode([ALICE, frame], BOB, now=0.0)
    assert reject_reason([ALICE, frame], caught.value) == reason


@pytest.mark.parametrize(
    "frame", [b"\xc1", msgpack.packb([2, []]), msgpack.packb([1, [], 3]), msgpack.packb("x")]
)
def test_a_native_frame_that_is_no_envelope_is_counted_as_frames(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode([ALICE, frame], BOB, now=0.0)
    assert reject_reason([ALICE, frame], caught.value) == "frames"


def _bare_receiver(**options: Any) -> Any:
    """A started Receiver with no Concerns and no admitted keys; its ref."""
    return Receiver.start(
        uuid=BOB,
        keys=generate_keypair(),
        allowed=AllowedKeys(),
        concerns=ConcernRegistry(),
        clock=ManualClock(),
        **options,
    )


def test_what_stops_the_receivers_start_is_raised_by_its_first_bind() -> None:
    def no_context() -> zmq.Context[Any]:
        raise TransportError("too many open files (RLIMIT_NOFILE)", errno=24)

    ref = _bare_receiver(context_factory=no_context)
    try:
        with pytest.raises(TransportError, match="RLIMIT_NOFILE"):
            ref.ask(Bind("tcp://127.0.0.1:*"), timeout=TIMEOUT)
        assert ref.is_alive()  # it said why, and waits to be stopped
        assert ref.proxy().stats().get(timeout=TIMEOUT)["state"] == "BROKEN"
    finally:
        ref.stop(timeout=TIMEOUT)


def test_stats_of_a_receiver_whose_socket_is_gone_say_broken_and_do_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The listening socket gone under the Receiver (e.g. its context ended):
    # its poll raises, and so would reading its options.
    gone = SocketClosedError("socket gone: Context was terminated")
    polled = threading.Event()

    def poll(self: CurveRouter, timeout: float) -> bool:
        polled.set()
        raise gone

    def receive_hwm(self: CurveRouter) -> int:
        raise gone

    monkeypatch.setattr(CurveRouter, "poll", poll)
    monkeypatch.setattr(CurveRouter, "receive_hwm", property(receive_hwm))
    ref = _bare_receiver()
    try:
        ref.ask(Bind("tcp://127.0.0.1:*"), timeout=TIMEOUT)
        assert polled.wait(TIMEOUT)
        stats = ref.proxy().stats().get(timeout=TIMEOUT)
        assert stats["state"] == "BROKEN" and "receive_hwm" not in stats
    finally:
        ref.stop(timeout=TIMEOUT)


class _Urn:
    """What the backlog needs of a Concern's ref."""

    actor_urn = "urn:held"


def test_a_drain_met_with_a_full_backlog_decodes_no_native_frame() -> None:
    # (The Receiver, not started: its step's handling alone.) A lone frame
    # that filled the backlog used to let the rest of its poll's read be
    # decoded too, one frame past the bound of "the bound plus one frame".
    receiver = Receiver(
        uuid=BOB,
        keys=generate_keypair(),
        allowed=AllowedKeys(),
        concerns=ConcernRegistry(),
        clock=ManualClock(),
        backlog=100,
    )
    receiver._backlog.add(_Urn(), 128)  # full
    now = receiver._clock.now()
    sent = [
        Message.create(ALICE, BOB, COMMAND, {"n": n}, now=now, message_id=n) for n in range(64)
    ]
    frame = batch_frame([encode_native_body(m, now) for m in sent])
    receiver._handle([(None, [ALICE, frame]), (None, [ALICE, frame])], now)
    assert receiver._counts["received"] == 0
    assert len(receiver._undecoded) == 2  # read, kept for when there is room


class _Drains:
    """The listening socket as ``_poll_once`` uses it: each read gives the
    next of ``drains`` (up to the zmq messages asked for), and ``asked``
    records how many each read asked for."""

    def __init__(self, drains: list[list[tuple[str | None, list[bytes]]]]) -> None:
        self.drains = drains
        self.asked: list[int] = []

    def poll(self, timeout: float) -> bool:
        return bool(self.drains)

    def readable(self) -> bool:
        return bool(self.drains)

    def recv_batch(self, most: int, read_six: object = None) -> list[tuple[str | None, Any]]:
        self.asked.append(most)
        return self.drains.pop(0)[:most]

    def take_failures(self) -> list[tuple[str, str]]:
        return []


def test_a_drain_after_native_batch_frames_reads_fewer_zmq_messages() -> None:
    # Messages decoded at once stay alive until their Concern's thread runs:
    # after a drain of batch frames, the next reads about DRAIN_MESSAGES
    # messages' worth; after p2p0mq's messages (one a zmq message), a batch.
    receiver = Receiver(
        uuid=BOB,
        keys=generate_keypair(),
        allowed=AllowedKeys(),
        concerns=ConcernRegistry(),  # no Concern: what is decoded is counted, then dropped
        clock=ManualClock(),
        batch=256,
    )
    now = receiver._clock.now()
    sent = [
        Message.create(ALICE, BOB, COMMAND, {"n": n}, now=now, message_id=n) for n in range(64)
    ]
    native = (None, [ALICE, batch_frame([encode_native_body(m, now) for m in sent])])
    single = (None, [ALICE, *encode(sent[0], WireShape.V011)])
    many = [
        Message.create(ALICE, BOB, COMMAND, {"n": n}, now=now, message_id=n) for n in range(1024)
    ]
    big = (None, [ALICE, batch_frame([encode_native_body(m, now) for m in many])])
    router = _Drains([[native] * 4, [single] * 2, [big] * 2, [single] * 2, [single] * 2])
    receiver._router, receiver._state = router, "LISTENING"
    for _ in range(5):
        assert receiver._poll_once()
    assert receiver._counts["received"] == 4 * 64 + 2 + 2 * 1024 + 2 + 2
    # 1,024 messages at 64 a zmq message: 16; then a batch again; at 1,024 a
    # zmq message, 2, not 1 (a drain of one is a round trip's lone message)
    assert router.asked == [256, receiver_module.DRAIN_MESSAGES // 64, 256, 2, 256]


def test_messages_left_for_later_in_a_drain_keep_the_drains_arrival() -> None:
    # A drain's native frames fill the backlog: what follows them in the
    # drain (a 0.1.1 message the router's reader decoded as it read it, and
    # one left as frames) waits, and is handled later with the deadline of
    # the drain it came in, as the reader's own was.
    clock = ManualClock(1000.0)
    receiver = Receiver(
        uuid=BOB,
        keys=generate_keypair(),
        allowed=AllowedKeys(),
        concerns=ConcernRegistry(),
        clock=clock,
        backlog=100,
        ttl=30.0,
    )
    handed: list[Message] = []
    receiver._dispatch = handed.extend  # type: ignore[method-assign]
    done = receiver._backlog.add(_Urn(), 90)
    now = clock.now()
    made = [
        Message.create(ALICE, BOB, COMMAND, {"n": n}, now=now, message_id=n) for n in range(66)
    ]
    native = (None, [ALICE, batch_frame([encode_native_body(m, now) for m in made[:64]])])
    read = codec_module.p2p0mq_reader(BOB, now + 30.0)
    assert read is not None
    item = (None, read(ALICE, *encode(made[64], WireShape.V011)))
    frames = (None, [ALICE, *encode(made[65], WireShape.V011)])
    router = _Drains([[native, item, frames]])
    receiver._router, receiver._state = router, "LISTENING"
    assert receiver._poll_once()
    assert len(handed) == 64 and len(receiver._undecoded) == 2
    clock.advance(20.0)
    done()
    assert receiver._poll_once()
    assert [m.message_id for m in handed[64:]] == [64, 65]
    assert {m.deadline for m in handed} == {1030.0}
