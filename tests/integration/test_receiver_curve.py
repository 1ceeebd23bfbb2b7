"""The Receiver over real CURVE on 127.0.0.1: who is refused and how it is
counted, keys changed at run time, garbage from an admitted client, the two
p2p0mq wire shapes, and how fast it stops."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver_rig import ALICE, BOB, COMMAND, TIMEOUT, Contexts, Rig, end_and_expect_let_go

from p2p0mq_actors.core.codec import WireShape, decode, encode
from p2p0mq_actors.core.errors import ProtocolError
from p2p0mq_actors.core.message import Kind, Message
from p2p0mq_actors.core.native import encode_native, encode_native_batch
from p2p0mq_actors.runtime.receiver import REJECT_REASONS, reject_reason
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import MAX_FRAMES

pytestmark = pytest.mark.integration


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


def only_alice_gets_through(rig: Rig, n: int = 1000) -> None:
    """An admitted client's message arrives, and nothing else ever did."""
    good = rig.message(n)
    rig.send(rig.client(), good)
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["received"] == 1
    assert rig.delivered() == [good]


# -- refused clients ---------------------------------------------------------------


def test_a_client_with_an_unknown_key_is_refused_by_zap_and_counted(rig: Rig) -> None:
    rig.send(
        rig.client(identity=b"mallory", keys=generate_keypair()), rig.message(1), refused=True
    )
    stats = rig.wait_stats(lambda s: s["zap_refused"] == 1 and s["handshake_failed_auth"] == 1)
    assert (stats["handshake_failed_protocol"], stats["handshake_succeeded"]) == (0, 0)
    only_alice_gets_through(rig)


def test_a_client_with_a_wrong_server_key_is_stopped_before_zap_and_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2p0mq_actors.runtime.receiver")
    rig.send(rig.client(server_key=generate_keypair().public), rig.message(1), refused=True)
    stats = rig.wait_stats(lambda s: s.get("protocol_error_zmtp_cryptographic", 0) >= 1)
    assert stats["handshake_failed_protocol"] >= 1
    assert (stats["zap_refused"], stats["handshake_failed_auth"]) == (0, 0)
    only_alice_gets_through(rig)
    assert any(
        "refused a client: handshake protocol error ZMTP_CRYPTOGRAPHIC: the client may be "
        "using a wrong server key" in r.getMessage()
        for r in caplog.records
    )


def test_a_plaintext_client_is_stopped_before_zap_and_counted(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2p0mq_actors.runtime.receiver")
    rig.send(rig.client(curve=False), rig.message(1), refused=True)
    # Whichever side notices the mismatch first: the server counts a protocol
    # error, or (when the client hung up first) a failure without detail.
    stats = rig.wait_stats(
        lambda s: s["handshake_failed_protocol"] + s["handshake_failed_no_detail"] >= 1
    )
    mismatches = stats.get("protocol_error_zmtp_mechanism_mismatch", 0)
    assert stats["handshake_failed_protocol"] == mismatches
    assert (stats["zap_refused"], stats["handshake_failed_auth"]) == (0, 0)
    only_alice_gets_through(rig)
    refusals = [r.getMessage() for r in caplog.records if "refused a client" in r.getMessage()]
    assert refusals, caplog.records
    assert all(
        "ZMTP_MECHANISM_MISMATCH: the client is not using CURVE (plaintext?)" in line
        or "the client went away during the handshake" in line
        for line in refusals
    ), refusals


def test_a_key_allowed_at_run_time_is_admitted_and_refused_again_once_denied(rig: Rig) -> None:
    carol = generate_keypair()

    def from_carol(n: int) -> Message:
        return rig.message(n, source=b"carol")

    refused = rig.client(identity=b"carol", keys=carol)
    rig.send(refused, from_carol(1), refused=True)
    rig.wait_stats(lambda s: s["zap_refused"] == 1)
    refused.close()  # its message is lost with it; libzmq would not retry anyway

    rig.proxy.allow(carol.public).get(timeout=TIMEOUT)
    admitted = rig.client(identity=b"carol", keys=carol)
    rig.send(admitted, from_carol(2))
    rig.wait_stats(lambda s: s["dispatched"] == 1)

    rig.proxy.deny(carol.public).get(timeout=TIMEOUT)
    rig.send(admitted, from_carol(3))  # the connection made before stays up: refused on it
    rig.wait_stats(lambda s: s["rejected"]["revoked"] == 1)
    admitted.close()
    rig.send(rig.client(identity=b"carol", keys=carol), from_carol(4), refused=True)
    stats = rig.wait_stats(lambda s: s["zap_refused"] == 2)
    assert stats["handshake_failed_auth"] == 2
    assert stats["handshake_succeeded"] == 1
    assert rig.delivered() == [from_carol(2)]


# -- garbage -------------------------------------------------------------------------

_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what MessagePack holds
_packed = st.one_of(
    _ints,
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), _ints, max_size=2),
    st.lists(st.booleans(), max_size=2),
    st.text(max_size=4),
).map(lambda value: msgpack.packb(value, use_bin_type=True))

_valid_id = st.integers(min_value=0, max_value=2**64 - 1).map(msgpack.packb)
_valid_payload = st.dictionaries(st.text(max_size=3), _ints, max_size=2).map(msgpack.packb)
# Mostly valid frames with one or two wrong: each check of the codec is reached.
_near_valid = st.tuples(
    st.sampled_from([b"", ALICE, b"\x00z"]),  # source
    st.sampled_from([b"", b"", BOB, b"carol", b"\x00"]),  # destination
    st.one_of(st.sampled_from([b"\x01", b"\x02"]), st.binary(max_size=2)),  # kind
    st.one_of(st.sampled_from([COMMAND, b"other"]), st.binary(max_size=3)),  # command
    st.one_of(st.none(), _valid_id, _packed, st.binary(max_size=4)),  # id; none: 0.1.0
    st.one_of(_valid_payload, _packed, st.binary(max_size=12)),  # payload
).map(lambda parts: [p for p in parts if p is not None])

_garbage = st.one_of(st.lists(st.binary(max_size=12), min_size=1, max_size=9), _near_valid)


def test_garbage_from_an_admitted_client_is_counted_and_the_next_request_still_served(
    rig: Rig,
) -> None:
    client = rig.client()
    expected: Counter[str] = Counter()
    good: list[Message] = []
    ids = itertools.count(1)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frames=_garbage)
    def garbage_then_a_request(frames: list[bytes]) -> None:
        expected[_fate(frames)] += 1
        n = next(ids)
        request = rig.message(n, payload={"good": n})  # no garbage map has that key
        good.append(request)
        rig.send(client, frames, request)
        dispatched = len(good) + expected["dispatched"]
        stats = rig.wait_stats(lambda s: s["dispatched"] == dispatched)
        rejected = {reason: expected[reason] for reason in REJECT_REASONS}
        assert stats["rejected"] == rejected
        assert stats["unknown_command"] == expected["unknown_command"]
        assert stats["dropped"]["no-route"] == expected["no-route"]
        assert stats["errors"] == 0

    garbage_then_a_request()
    assert [m for m in rig.delivered() if "good" in m.payload] == good
    assert sum(expected[reason] for reason in REJECT_REASONS) > 100  # it was mostly garbage


def _fate(frames: list[bytes]) -> str:
    """What the Receiver should do with ``frames`` from Alice, decided here alone."""
    routed = [ALICE, *frames]
    try:
        message = decode(routed, BOB, now=0.0)
    except ProtocolError as exc:
        return reject_reason(routed, exc)
    if message.destination != BOB:
        return "no-route"
    return "dispatched" if message.command == COMMAND else "unknown_command"


# -- who sent it ------------------------------------------------------------------


def test_a_client_announcing_another_peers_uuid_neither_takes_nor_blocks_its_connection(
    rig: Rig,
) -> None:
    # Mallory's key is admitted for her own uuid; her sockets announce Alice's.
    # Before Alice connects, and again while Alice is connected, they change
    # nothing for Alice: each message is the sender's its key says.
    mallory = generate_keypair()
    rig.allowed.add(rig.alice_keys.public, ALICE)
    rig.allowed.add(mallory.public, b"mallory")
    first = rig.client(identity=ALICE, keys=mallory)
    rig.send(first, rig.message(1, source=b"mallory"))
    rig.wait_stats(lambda s: s["dispatched"] == 1)
    alice = rig.client()
    rig.send(alice, rig.message(2))
    rig.wait_stats(lambda s: s["dispatched"] == 2)
    second = rig.client(identity=ALICE, keys=mallory)
    rig.send(second, rig.message(3, source=b"mallory"))
    rig.wait_stats(lambda s: s["dispatched"] == 3)
    rig.send(alice, rig.message(4))
    stats = rig.wait_stats(lambda s: s["dispatched"] == 4)
    got = {m.message_id: m.previous_hop for m in rig.delivered()}
    assert got == {1: b"mallory", 2: ALICE, 3: b"mallory", 4: ALICE}
    assert sum(stats["rejected"].values()) == 0


def test_a_key_added_without_an_owner_speaks_as_the_identity_its_client_announces(
    rig: Rig,
) -> None:
    rig.send(rig.client(identity=b"carol"), rig.message(1, source=b"carol"))
    rig.wait_stats(lambda s: s["dispatched"] == 1)
    (got,) = rig.delivered()
    assert got.previous_hop == b"carol"


def test_a_client_that_names_no_sender_is_refused_in_every_wire_shape(rig: Rig) -> None:
    """A key added without a uuid speaks as the identity its client
    announces; one that announces none names no sender (an empty previous
    hop). Its messages are refused as an address fault, native ones too: the
    source an envelope claims must not stand in for the hop it came from,
    which replies are checked against."""
    anonymous = rig.client(identity=None)
    first, second = rig.message(1), rig.message(2)
    now = rig.clock.now()
    native = [encode_native(first, now)]
    batch = [encode_native_batch([first, second], now)]
    rig.send(anonymous, first, native, batch)
    stats = rig.wait_stats(lambda s: s["rejected"]["address"] == 3)
    assert stats["rejected"] == {**dict.fromkeys(REJECT_REASONS, 0), "address": 3}
    assert (stats["received"], stats["dispatched"]) == (0, 0)
    only_alice_gets_through(rig)


# -- the two p2p0mq shapes ------------------------------------------------------------

A, B = b"1~1~1~1", b"2~2~2~2"
# From WIRE.md: frames a p2p0mq 0.1.0 peer A sends to B (its routing frame removed).
HB_REQUEST = ["", "", "01", "6862", "80"]
HB_REPLY = ["", "", "02", "6862", "80"]
HELLO = ["", "", "01", "68656c6c6f", "82a4686f7374a93132372e302e302e31a4706f7274cda0e5"]
BENCH = ["", "", "01", "62656e6368", "82a3736571cd2710a464617461c420" + "00" * 32]
BENCH_011 = [*BENCH[:4], "cd3039", BENCH[4]]  # 0.1.1 adds the message id (12345)


def test_both_p2p0mq_shapes_are_accepted_and_dispatched_with_the_right_fields(
    rig_factory: Any,
) -> None:
    rig = rig_factory(uuid=B)
    for command in (b"hb", b"hello", b"bench"):
        rig.concerns.add(command, rig.recorder)
    peer_a = rig.client(identity=A)
    captured = [HB_REQUEST, HB_REPLY, HELLO, BENCH, BENCH_011]
    rig.send(peer_a, *([bytes.fromhex(f) for f in frames] for frames in captured))
    rig.wait_stats(lambda s: s["dispatched"] == 5)
    got = rig.delivered()

    def expect(command: bytes, payload: dict[str, Any], **fields: Any) -> Message:
        return Message(A, B, command, rig.clock.now() + 30.0, payload=payload, **fields)

    bench = {"seq": 10000, "data": bytes(32)}
    wanted = [
        expect(b"hb", {}),
        expect(b"hb", {}, kind=Kind.REPLY),
        expect(b"hello", {"host": "127.0.0.1", "port": 41189}),
        expect(b"bench", bench),
        expect(b"bench", bench, message_id=12345),
    ]
    # 0.1.0 sends no message id: each gets a fresh local one.
    assert len({m.message_id for m in got[:4]}) == 4 and all(m.message_id > 0 for m in got)
    local_ids = [*(m.message_id for m in got[:4]), 12345]
    assert got == [
        dataclasses.replace(w, message_id=i) for w, i in zip(wanted, local_ids, strict=True)
    ]
    assert all((m.previous_hop, m.next_hop) == (A, B) for m in got)


# -- life cycle -------------------------------------------------------------------------


def test_stop_returns_within_a_few_poll_intervals_and_leaves_no_thread(rig_factory: Any) -> None:
    before = set(threading.enumerate())
    contexts = Contexts()
    rig = rig_factory(poll_interval=0.1, context_factory=contexts)
    rig.stats()  # it is listening and stepping
    started = set(threading.enumerate()) - before
    assert len(started) >= 3  # the Receiver, its ZAP authenticator, the Recorder

    start = time.monotonic()
    assert rig.ref.stop(timeout=TIMEOUT) is True
    elapsed = time.monotonic() - start
    rig.recorder.stop(timeout=TIMEOUT)
    for thread in started:
        thread.join(TIMEOUT)
    assert elapsed < 0.1 * 4, elapsed
    assert [t.name for t in started if t.is_alive()] == []
    assert contexts.made[0].closed  # the Receiver ended the context it made


def test_a_context_ended_by_someone_else_is_let_go_of_at_once(rig_factory: Any) -> None:
    """A ``context_factory``'s context that the application terminates: the
    Receiver stops receiving and closes its sockets, and ``Context.term``
    returns without waiting for the node to stop."""
    contexts = Contexts()
    rig = rig_factory(poll_interval=0.05, context_factory=contexts)
    assert rig.stats()["state"] == "LISTENING"
    end_and_expect_let_go(rig, contexts.made[0], "Context.term waits for the Receiver's sockets")


def test_an_idle_receiver_wakes_once_per_poll_interval(rig_factory: Any) -> None:
    rig = rig_factory(poll_interval=0.05)
    first = _steps(rig)
    deadline = time.monotonic() + TIMEOUT
    while _steps(rig) < first + 10 and time.monotonic() < deadline:
        pass  # each ask waits behind one step: no spinning
    waited = time.monotonic() - (deadline - TIMEOUT)
    # Ten idle steps take about ten poll intervals: the poll is the wait.
    assert 10 * 0.05 * 0.8 <= waited < TIMEOUT


def _steps(rig: Rig) -> int:
    steps: int = rig.stats()["steps"]
    return steps


# -- the size of a frame ----------------------------------------------------------------


def test_a_frame_longer_than_max_message_size_costs_its_sender_the_connection_only(
    rig_factory: Any,
) -> None:
    limit = 8192
    rig = rig_factory(max_message_size=limit)
    client = rig.client()

    def request(n: int, payload_frame_size: int) -> Message:
        # {"b": bin16}: a fixmap, a fixstr "b" and a bin16 head, 6 bytes
        message = rig.message(n, payload={"b": bytes(payload_frame_size - 6)})
        assert len(encode(message, WireShape.V011)[-1]) == payload_frame_size
        return message

    rig.send(client, request(1, limit))
    rig.wait_stats(lambda s: s["dispatched"] == 1)
    before = rig.stats()["disconnected"]
    rig.send(client, request(2, limit + 1))
    rig.wait_stats(lambda s: s["disconnected"] == before + 1)
    rig.send(client, rig.message(3))  # the client reconnects, and goes on
    stats = rig.wait_stats(lambda s: s["dispatched"] == 2)
    assert [m.message_id for m in rig.delivered()] == [1, 3]
    assert sum(stats["rejected"].values()) == 0


def test_with_no_max_message_size_a_frame_past_the_default_comes_in(rig_factory: Any) -> None:
    rig = rig_factory(max_message_size=None)
    rig.send(rig.client(), rig.message(1, payload={"b": bytes(20 * 2**20)}))
    rig.wait_stats(lambda s: s["dispatched"] == 1, timeout=20)


def test_a_message_of_ten_thousand_frames_is_refused_for_its_frame_count_and_the_next_served(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """No valid message has more than 7 frames: one of thousands is read to
    its end (a multipart message is atomic), of its frames only the first
    ``MAX_FRAMES`` are kept, and it is refused; the sender's next message is
    served."""
    caplog.set_level(logging.WARNING, logger="p2p0mq_actors.runtime.receiver")
    client = rig.client()
    good = rig.message(1)
    rig.send(client, [b"%d" % n for n in range(10_000)], good)
    stats = rig.wait_stats(lambda s: s["dispatched"] == 1)
    assert stats["rejected"] == {**dict.fromkeys(REJECT_REASONS, 0), "frames": 1}
    assert rig.delivered() == [good]
    refusals = [r.getMessage() for r in caplog.records if "rejected a message" in r.getMessage()]
    kept = 1 + MAX_FRAMES  # the sender, then the first frames
    assert [line[line.index("rejected a message") :] for line in refusals] == [
        f"rejected a message from b'alice' (frames): expected 6 frames (p2p0mq 0.1.0) "
        f"or 7 (0.1.1), got {kept}"
    ]
