"""The p2p0mq wire codec: golden frames, round trips, totality, each refusal."""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import msgpack
import pytest
from broken_mapping import BrokenMapping
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2p0mq_actors.core.codec import (
    MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    QUICK_PAYLOAD,
    Encoder,
    WireShape,
    check_message_size,
    decode,
    decode_p2p0mq,
    encode,
    p2p0mq_reader,
)
from p2p0mq_actors.core.errors import ConfigurationError, EncodeError, ProtocolError
from p2p0mq_actors.core.message import (
    DEFAULT_TTL,
    MAX_MESSAGE_ID,
    Kind,
    Message,
    Priority,
)

A = b"1~1~1~1"
B = b"2~2~2~2"
C = b"3~3~3~3"
D = b"4~4~4~4"
NOW = 1000.0
PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY_PROPERTY = settings(PROPERTY, max_examples=300)  # whole messages: slower to generate


def hexes(*frames: str) -> list[bytes]:
    return [bytes.fromhex(frame) for frame in frames]


def fixed_id(value: int) -> Callable[[], int]:
    return lambda: value


def outcome(frames: object, local: bytes = B) -> Message | ProtocolError:
    """What decode gives: a Message or a ProtocolError; anything else escapes."""
    try:
        return decode(frames, local, now=NOW, new_id=fixed_id(42))
    except ProtocolError as exc:
        return exc


def refusal(frames: object, local: bytes = B) -> str:
    with pytest.raises(ProtocolError) as excinfo:
        decode(frames, local, now=NOW, new_id=fixed_id(42))
    return str(excinfo.value)


# -- golden frames from WIRE.md ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Capture:
    sender: bytes
    receiver: bytes
    sent: list[bytes]  # as WIRE.md lists them: frame 0 is the routing id
    kind: Kind
    command: bytes
    payload: dict[str, Any]
    v011_id: int  # the message id used for the 7-frame form
    v011_id_frame: bytes

    def received_v010(self) -> list[bytes]:
        return [self.sender, *self.sent[1:]]

    def received_v011(self) -> list[bytes]:
        return [self.sender, *self.sent[1:5], self.v011_id_frame, self.sent[5]]

    def message(self, message_id: int) -> Message:
        return Message(
            source=self.sender,
            destination=self.receiver,
            command=self.command,
            deadline=NOW + DEFAULT_TTL,
            kind=self.kind,
            payload=self.payload,
            message_id=message_id,
            priority=Priority.MEDIUM,
            previous_hop=self.sender,
            next_hop=self.receiver,
        )


HELLO_A = {"host": "127.0.0.1", "port": 41189}
HELLO_B = {"host": "127.0.0.1", "port": 41989}
CAPTURES = {
    "hello request": Capture(
        A,
        B,
        hexes(
            "327e327e327e32",
            "",
            "",
            "01",
            "68656c6c6f",
            "82a4686f7374a93132372e302e302e31a4706f7274cda0e5",
        ),
        Kind.REQUEST,
        b"hello",
        HELLO_A,
        1,
        bytes.fromhex("01"),
    ),
    "hello reply": Capture(
        B,
        A,
        hexes(
            "317e317e317e31",
            "",
            "",
            "02",
            "68656c6c6f",
            "82a4686f7374a93132372e302e302e31a4706f7274cda405",
        ),
        Kind.REPLY,
        b"hello",
        HELLO_B,
        1,
        bytes.fromhex("01"),
    ),
    "heart-beat request": Capture(
        A,
        B,
        hexes("327e327e327e32", "", "", "01", "6862", "80"),
        Kind.REQUEST,
        b"hb",
        {},
        300,
        bytes.fromhex("cd012c"),
    ),
    "heart-beat reply": Capture(
        A,
        B,
        hexes("327e327e327e32", "", "", "02", "6862", "80"),
        Kind.REPLY,
        b"hb",
        {},
        70000,
        bytes.fromhex("ce00011170"),
    ),
    "custom request": Capture(
        A,
        B,
        hexes(
            "327e327e327e32",
            "",
            "",
            "01",
            "62656e6368",
            "82a3736571cd2710a464617461c420" + "00" * 32,
        ),
        Kind.REQUEST,
        b"bench",
        {"seq": 10000, "data": bytes(32)},
        MAX_MESSAGE_ID,
        bytes.fromhex("cf" + "ff" * 8),
    ),
}
golden = pytest.mark.parametrize("capture", CAPTURES.values(), ids=CAPTURES.keys())


@golden
def test_a_captured_0_1_0_message_decodes_to_the_message_p2p0mq_sent(capture: Capture) -> None:
    got = decode(capture.received_v010(), capture.receiver, now=NOW, new_id=fixed_id(42))
    assert got == capture.message(42)


@golden
def test_encoding_the_captured_message_as_0_1_0_gives_the_captured_frames(
    capture: Capture,
) -> None:
    assert encode(capture.message(42), WireShape.V010) == capture.sent[1:]


@golden
def test_the_0_1_1_form_of_a_capture_decodes_with_its_message_id(capture: Capture) -> None:
    got = decode(capture.received_v011(), capture.receiver, now=NOW, new_id=fixed_id(42))
    assert got == capture.message(capture.v011_id)


@golden
def test_encoding_a_captured_message_as_0_1_1_adds_the_message_id_frame(
    capture: Capture,
) -> None:
    expected = capture.received_v011()[1:]
    assert encode(capture.message(capture.v011_id), WireShape.V011) == expected
    assert encode(capture.message(capture.v011_id)) == expected


def test_what_b_got_is_the_sent_hello_with_the_routing_id_replaced_by_a() -> None:
    got = hexes(
        "317e317e317e31",
        "",
        "",
        "01",
        "68656c6c6f",
        "82a4686f7374a93132372e302e302e31a4706f7274cda0e5",
    )
    capture = CAPTURES["hello request"]
    assert capture.received_v010() == got
    assert decode(got, B, now=NOW, new_id=fixed_id(7)) == capture.message(7)


# -- round trips -------------------------------------------------------------


def uuids() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda first, rest: bytes([first]) + rest,
        st.integers(1, 255),
        st.binary(max_size=15),
    )


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), inner, max_size=5)
    ),
    max_leaves=10,
)
PAYLOADS = st.dictionaries(st.text(max_size=10), VALUES, max_size=4)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    source = draw(uuids())
    destination = draw(uuids())
    return Message(
        source=source,
        destination=destination,
        command=draw(st.binary(min_size=1, max_size=255) | st.sampled_from([b"hb", b"hello"])),
        deadline=draw(st.floats(-1e9, 1e9)),
        kind=draw(st.sampled_from(Kind)),
        payload=draw(PAYLOADS),
        message_id=draw(st.integers(0, MAX_MESSAGE_ID)),
        priority=draw(st.sampled_from(Priority)),
        previous_hop=draw(st.just(source) | uuids()),
        next_hop=draw(st.just(destination) | uuids()),
        attempts=draw(st.integers(0, 3)),
    )


@HEAVY_PROPERTY
@given(
    message=messages(),
    shape=st.sampled_from([WireShape.V010, WireShape.V011]),
    now=st.floats(0, 1e9),
    ttl=st.floats(0.001, 1e6),
    priority=st.sampled_from(Priority),
)
def test_decoding_what_encode_sent_gives_back_every_field_the_wire_carries(
    message: Message, shape: WireShape, now: float, ttl: float, priority: Priority
) -> None:
    frames = [message.previous_hop, *encode(message, shape)]
    got = decode(
        frames, message.next_hop, now=now, ttl=ttl, new_id=fixed_id(42), priority=priority
    )
    expected = dataclasses.replace(
        message,
        deadline=now + ttl,
        priority=priority,
        attempts=0,
        message_id=message.message_id if shape is WireShape.V011 else 42,
    )
    assert got == expected


@pytest.mark.parametrize(
    "message_id",
    [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, MAX_MESSAGE_ID],
)
def test_the_message_id_frame_is_msgpacks_smallest_form_at_every_size_boundary(
    message_id: int,
) -> None:
    message = Message.create(A, B, b"x", now=NOW, message_id=message_id)
    assert encode(message)[4] == msgpack.packb(message_id)


@given(st.integers(0, MAX_MESSAGE_ID))
def test_the_message_id_frame_is_what_msgpack_packs(message_id: int) -> None:
    message = Message.create(A, B, b"x", now=NOW, message_id=message_id)
    assert encode(message)[4] == msgpack.packb(message_id)


# -- totality ----------------------------------------------------------------


def as_memoryview(data: bytes) -> memoryview:
    return memoryview(data)


VALID = [A, b"", b"", b"\x01", b"hello", b"\x05", b"\x81\xa1k\x01"]
ANY_FRAME = st.binary(max_size=30) | st.sampled_from(VALID)
OBJECTS: st.SearchStrategy[object] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.binary(max_size=10).map(bytearray)
    | st.binary(max_size=10).map(as_memoryview),
    lambda inner: (
        st.lists(inner, max_size=8)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def assert_total(frames: object) -> None:
    result = outcome(frames)
    if isinstance(result, Message):
        assert result.next_hop == B
    else:
        assert isinstance(result, ProtocolError)
        assert len(str(result)) < 300


@PROPERTY
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_decode_of_any_list_of_binary_frames_gives_a_message_or_a_protocol_error(
    frames: list[bytes],
) -> None:
    assert_total(frames)


@PROPERTY
@given(st.lists(ANY_FRAME, min_size=6, max_size=7))
def test_decode_of_six_or_seven_frames_of_any_content_gives_a_message_or_a_protocol_error(
    frames: list[bytes],
) -> None:
    assert_total(frames)


@PROPERTY
@given(OBJECTS | st.lists(OBJECTS, min_size=6, max_size=7))
def test_decode_of_any_python_object_gives_a_message_or_a_protocol_error(
    frames: object,
) -> None:
    assert_total(frames)


@PROPERTY
@given(st.data(), messages())
def test_a_list_of_seven_bytes_frames_decodes_as_any_other_sequence_of_them(
    data: st.DataObject, message: Message
) -> None:
    """The Receiver's form (a list of bytes) takes a shorter path; it gives
    the same message, or the same error, as a tuple of the same frames."""
    frames = [message.previous_hop, *encode(message, WireShape.V011)]
    index = data.draw(st.integers(0, 6))
    frames[index] = data.draw(st.binary(max_size=30) | st.sampled_from(VALID))
    fast, general = outcome(frames), outcome(tuple(frames))
    if isinstance(general, Message):
        assert fast == general
    else:
        assert type(fast) is type(general)
        assert str(fast) == str(general)


_MANY_KEYS = {f"k{i}": i for i in range(12)}
_FRAMES = (A, D, b"", b"\x01", b"hello", b"\x05", b"\x81\xa1k\x01")
_FRAME_EDGES: list[list[bytes]] = [  # each frame's edges, valid and not
    [b"p" * 255, b"p" * 256, b"\x00p", b""],  # previous hop
    [b"", A, b"s" * 255, b"s" * 256, b"\x00s"],  # source (empty: the previous hop)
    [C, b"d" * 256, b"\x00d"],  # destination
    [b"\x02", b"\x03", b"", b"\x01\x01"],  # kind
    [b"c" * 255, b"c" * 256, b""],  # command
    [  # message id
        *(msgpack.packb(n) for n in (0, 127, 128, 255, 256, 2**16, 2**32, 2**64 - 1)),
        b"",
        b"\xcd\x01",
        b"\xcc\x05\x00",
        msgpack.packb(-1),
        msgpack.packb("7"),
    ],
    [  # payload
        *(msgpack.packb(p) for p in ({}, _MANY_KEYS, {"k": {1: 2}})),
        *(msgpack.packb(p) for p in ({1: 2}, {**_MANY_KEYS, 3: 4}, [1])),
        b"\x81",
    ],
]


@st.composite
def _edgy_frames(draw: st.DrawFn) -> tuple[bytes, ...]:
    """Valid 0.1.1 frames with one or two of them at one of their edges."""
    frames = list(_FRAMES)
    for index in draw(st.lists(st.integers(0, len(_FRAMES) - 1), max_size=2)):
        frames[index] = draw(st.sampled_from(_FRAME_EDGES[index]))
    return tuple(frames)


@PROPERTY
@given(
    _edgy_frames(),
    st.sampled_from([B, B, b"m" * 256, b"\x00m"]),
    st.sampled_from([NOW, NOW, 1e300, float("inf"), float("nan")]),
    st.sampled_from([DEFAULT_TTL, DEFAULT_TTL, 5, 1e300]),
)
def test_the_receivers_form_agrees_with_the_general_path_at_every_edge_of_every_field(
    frames: tuple[bytes, ...], local: bytes, now: float, ttl: float
) -> None:
    """The list-of-bytes path assembles a message it has checked itself;
    at each field's edges it accepts exactly what ``Message`` accepts,
    builds the same message, or raises the same error."""
    results = []
    for form in (list(frames), frames):
        try:
            results.append(decode(form, local, now=now, ttl=ttl, new_id=fixed_id(42)))
        except ProtocolError as exc:
            results.append(str(exc))  # type: ignore[arg-type]
    fast, general = results
    if isinstance(general, Message):
        assert isinstance(fast, Message)
        assert dataclasses.asdict(fast) == dataclasses.asdict(general)
        assert type(fast.deadline) is float and type(fast.payload) is dict
    else:
        assert fast == general


@PROPERTY
@given(
    _edgy_frames(),
    st.sampled_from([B, B, b"m" * 256, b"\x00m"]),
    st.sampled_from([NOW, NOW, 1e300, float("inf"), float("nan")]),
    st.sampled_from([Priority.MEDIUM, Priority.FAST]),
)
def test_the_transports_reader_gives_what_decode_gives_or_leaves_it_to_decode(
    frames: tuple[bytes, ...], local: bytes, deadline: float, priority: Priority
) -> None:
    """``p2p0mq_reader``'s reader, at every field's edges: the very message
    ``decode_p2p0mq`` builds from the same frames, or None (never an
    error), so that the Receiver decodes those the long way."""
    read = p2p0mq_reader(local, deadline, priority)
    if read is None:  # a context it does not take quickly: the caller decodes all
        assert not (local == B and deadline == NOW)
        return
    got = read(*frames)
    if got is not None:
        want = decode_p2p0mq(list(frames), local, deadline, priority)
        assert dataclasses.asdict(got) == dataclasses.asdict(want)
        assert type(got.deadline) is float and type(got.payload) is dict


def test_the_transports_reader_reads_every_valid_message_itself() -> None:
    read = p2p0mq_reader(B, 123.5, Priority.SLOW)
    assert read is not None
    for number in (0, 127, 128, 2**16, 2**64 - 1):
        message = Message.create(A, C, b"cmd", {"n": number}, now=NOW, message_id=number)
        frames = [A, *encode(message, WireShape.V011)]
        got = read(*frames)
        assert got == decode_p2p0mq(frames, B, 123.5, Priority.SLOW)
        assert got is not None and got.message_id == number and got.deadline == 123.5
    long = Message.create(A, C, b"cmd", {"blob": bytes(QUICK_PAYLOAD)}, now=NOW)
    frames = [A, *encode(long, WireShape.V011)]
    assert read(*frames) is None  # decoded after the read, by decode_p2p0mq
    assert decode_p2p0mq(frames, B, 123.5).payload == {"blob": bytes(QUICK_PAYLOAD)}
    assert p2p0mq_reader(B, float("inf")) is None
    assert p2p0mq_reader(B, 5) is None  # type: ignore[arg-type]
    assert p2p0mq_reader(b"", 1.0) is None


def test_the_receivers_entry_takes_the_deadline_it_is_given_and_refuses_the_native_shape() -> None:
    """``decode_p2p0mq`` is ``decode``'s own path for p2p0mq's shapes (which
    the properties above test through ``decode``); the Receiver calls it
    with a deadline computed once a batch, and reads native frames apart."""
    frames = list(_FRAMES)
    got = decode_p2p0mq(frames, B, 123.5, Priority.SLOW)
    assert (got.deadline, got.priority) == (123.5, Priority.SLOW)
    assert got == decode(frames, B, now=120.0, ttl=3.5, priority=Priority.SLOW)
    six = frames[:5] + frames[6:]  # 0.1.0: no message id; one is assigned
    assert decode_p2p0mq(six, B, 1.0, Priority.FAST, fixed_id(7)).message_id == 7
    native = encode(Message.create(A, B, b"cmd", {}, now=NOW), WireShape.NATIVE)
    assert decode([A, *native], B, now=NOW).command == b"cmd"
    with pytest.raises(ProtocolError):
        decode_p2p0mq([A, *native], B, NOW + 5.0)


def flip(frame: bytes, at: int) -> bytes:
    """``frame`` with the bits of byte ``at`` inverted (a zero byte added if empty)."""
    byte = frame[at] if frame else 0
    return frame[:at] + bytes([byte ^ 0xFF]) + frame[at + 1 :]


def mutations(frame: bytes) -> st.SearchStrategy[object]:
    return (
        st.binary(max_size=30)
        | st.integers(0, max(len(frame) - 1, 0)).map(lambda at: flip(frame, at))
        | st.integers(0, len(frame)).map(lambda at: frame[:at])
        | st.binary(min_size=1, max_size=5).map(lambda tail: frame + tail)
        | OBJECTS
    )


@HEAVY_PROPERTY
@given(st.data(), messages(), st.sampled_from(WireShape))
def test_decode_of_a_sent_message_with_one_frame_changed_gives_a_message_or_a_protocol_error(
    data: st.DataObject, message: Message, shape: WireShape
) -> None:
    sent = [message.previous_hop, *encode(message, shape)]
    index = data.draw(st.integers(0, len(sent) - 1))
    frames: list[object] = list(sent)
    frames[index] = data.draw(mutations(sent[index]))
    assert_total(frames)


NOT_A_PAYLOAD = (
    VALUES.map(msgpack.packb)
    | st.dictionaries(st.integers(-(2**63), 2**64 - 1), VALUES, min_size=1, max_size=3).map(
        msgpack.packb
    )
    | st.tuples(PAYLOADS.map(msgpack.packb), st.binary(min_size=1, max_size=5)).map(
        lambda parts: parts[0] + parts[1]
    )
    | PAYLOADS.filter(bool).map(msgpack.packb).map(lambda packed: packed[:-1])
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=5)).map(msgpack.packb)
)


@HEAVY_PROPERTY
@given(NOT_A_PAYLOAD, NOT_A_PAYLOAD)
def test_decode_of_odd_msgpack_in_the_id_and_payload_frames_gives_a_message_or_a_protocol_error(
    message_id: bytes, payload: bytes
) -> None:
    assert_total([A, b"", b"", b"\x01", b"hb", message_id, payload])
    assert_total([A, b"", b"", b"\x01", b"hb", payload])


# -- each refusal --------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8])
def test_a_frame_count_other_than_2_6_or_7_is_refused(count: int) -> None:
    assert refusal([b"x"] * count) == (
        f"expected 6 frames (p2p0mq 0.1.0) or 7 (0.1.1), got {count}"
    )


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        (None, "frames must be a list of bytes-like frames, not NoneType"),
        (b"\x01" * 7, "frames must be a list of bytes-like frames, not bytes"),
        ("abcdefg", "frames must be a list of bytes-like frames, not str"),
        (7, "frames must be a list of bytes-like frames, not int"),
        ({A: b""}, "frames must be a list of bytes-like frames, not dict"),
    ],
)
def test_frames_that_are_not_a_list_are_refused(frames: object, why: str) -> None:
    assert refusal(frames) == why


@pytest.mark.parametrize(
    ("index", "frame", "why"),
    [
        (0, 5, "frame 0: must be bytes-like, not int"),
        (1, 3, "frame 1: must be bytes-like, not int"),
        (3, 1, "frame 3: must be bytes-like, not int"),
        (4, 5, "frame 4: must be bytes-like, not int"),  # bytes(5) would be a valid command
        (4, "hello", "frame 4: must be bytes-like, not str"),
        (5, None, "frame 5: must be bytes-like, not NoneType"),
        (6, {"k": 1}, "frame 6: must be bytes-like, not dict"),
    ],
)
def test_a_frame_that_is_not_bytes_like_is_refused_even_an_int(
    index: int, frame: object, why: str
) -> None:
    frames: list[object] = list(VALID)
    frames[index] = frame
    assert refusal(frames) == why


@pytest.mark.parametrize(
    "convert",
    [bytearray, memoryview, lambda frame: array.array("B", frame)],
    ids=["bytearray", "memoryview", "array"],
)
def test_any_bytes_like_frame_is_accepted(convert: Callable[[bytes], object]) -> None:
    expected = decode(VALID, B, now=NOW)
    assert decode([convert(frame) for frame in VALID], B, now=NOW) == expected
    assert decode(tuple(VALID), B, now=NOW) == expected


@pytest.mark.parametrize(
    ("index", "why"),
    [
        (0, "frame 0 (previous hop): must not be empty"),
        (
            3,
            "frame 3 (kind): must be b'\\x01' (request) or b'\\x02' (reply), not b''",
        ),
        (
            4,
            "frame 4 (command): invalid message field command=b'': must be 1..255 bytes long",
        ),
        (
            5,
            "frame 5 (message id): not one MessagePack value: "
            "ValueError: Unpack failed: incomplete input",
        ),
        (
            6,
            "frame 6 (payload): not one MessagePack value: "
            "ValueError: Unpack failed: incomplete input",
        ),
    ],
)
def test_an_empty_frame_where_a_value_is_needed_is_refused(index: int, why: str) -> None:
    frames = list(VALID)
    frames[index] = b""
    assert refusal(frames) == why


def test_empty_source_and_destination_frames_mean_the_previous_hop_and_the_receiver() -> None:
    assert decode(VALID, B, now=NOW) == Message(
        source=A,
        destination=B,
        command=b"hello",
        deadline=NOW + DEFAULT_TTL,
        kind=Kind.REQUEST,
        payload={"k": 1},
        message_id=5,
        previous_hop=A,
        next_hop=B,
    )


def test_filled_source_and_destination_frames_are_a_routed_message() -> None:
    frames = [B, C, D, b"\x02", b"ask", b"\x09", b"\x80"]
    assert decode(frames, A, now=NOW, ttl=5.0, priority=Priority.FAST) == Message(
        source=C,
        destination=D,
        command=b"ask",
        deadline=NOW + 5.0,
        kind=Kind.REPLY,
        payload={},
        message_id=9,
        priority=Priority.FAST,
        previous_hop=B,
        next_hop=A,
    )


@pytest.mark.parametrize(
    ("kind", "shown"),
    [
        (b"\x00", "b'\\x00'"),
        (b"\x03", "b'\\x03'"),
        (b"\xff", "b'\\xff'"),
        (b"\x01\x01", "b'\\x01\\x01'"),
        (b"1", "b'1'"),
    ],
)
def test_a_kind_other_than_one_byte_1_or_2_is_refused(kind: bytes, shown: str) -> None:
    frames = list(VALID)
    frames[3] = kind
    assert refusal(frames) == (
        f"frame 3 (kind): must be b'\\x01' (request) or b'\\x02' (reply), not {shown}"
    )


def test_a_long_bad_frame_is_shown_truncated_with_its_size() -> None:
    frames = list(VALID)
    frames[3] = bytes(1000)
    assert refusal(frames) == (
        "frame 3 (kind): must be b'\\x01' (request) or b'\\x02' (reply), "
        "not b'" + "\\x00" * 16 + "'... (1000 bytes)"
    )


@pytest.mark.parametrize(
    ("packed", "shown"),
    [
        (msgpack.packb(-1), "-1"),
        (msgpack.packb(-(2**63)), "-9223372036854775808"),
        (msgpack.packb(2.0**64), "1.8446744073709552e+19"),
        (msgpack.packb(1.5), "1.5"),
        (msgpack.packb(True), "True"),
        (msgpack.packb("x"), "'x'"),
        (msgpack.packb(b"\x05", use_bin_type=True), "b'\\x05'"),
        (msgpack.packb(None), "None"),
        (msgpack.packb([1]), "list"),
    ],
)
def test_a_message_id_that_is_not_an_int_in_the_uint64_range_is_refused(
    packed: bytes, shown: str
) -> None:
    frames = list(VALID)
    frames[5] = packed
    assert refusal(frames) == (
        f"frame 5 (message id): must be a MessagePack int in 0..2**64-1, not {shown}"
    )


def test_2_to_the_64_has_no_msgpack_int_form_so_it_cannot_arrive_as_a_message_id() -> None:
    with pytest.raises(OverflowError):
        msgpack.packb(2**64)


def test_the_largest_and_smallest_message_ids_are_accepted() -> None:
    for message_id in (0, MAX_MESSAGE_ID):
        frames = list(VALID)
        frames[5] = msgpack.packb(message_id)
        assert decode(frames, B, now=NOW).message_id == message_id


def test_trailing_data_after_the_message_id_is_refused_with_its_cause() -> None:
    frames = list(VALID)
    frames[5] = b"\x05\x05"
    with pytest.raises(ProtocolError) as excinfo:
        decode(frames, B, now=NOW)
    assert str(excinfo.value) == (
        "frame 5 (message id): not one MessagePack value: "
        "ExtraData: unpack(b) received extra data."
    )
    assert type(excinfo.value.__cause__) is msgpack.ExtraData


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (msgpack.packb([1, 2]), "must be a MessagePack map, not list"),
        (msgpack.packb(5), "must be a MessagePack map, not 5"),
        (msgpack.packb(None), "must be a MessagePack map, not None"),
        (msgpack.packb("map"), "must be a MessagePack map, not 'map'"),
        (msgpack.packb({b"k": 1}, use_bin_type=True), "map keys must be str, not b'k'"),
        (msgpack.packb({1: 1}), "map keys must be str, not 1"),
        (msgpack.packb({"k": 1, None: 2}), "map keys must be str, not None"),
        (
            b"\x81\xa1\xff\x01",
            "not one MessagePack value: UnicodeDecodeError: 'utf-8' codec can't decode "
            "byte 0xff in position 0: invalid start byte",
        ),
        (
            b"\x81\xa1k\x81\x91\x01\x02",
            "not one MessagePack value: ValueError: a map key of type list is not taken"
            " (only str, bytes, numbers, bools, nil and ex",
        ),
        (b"\x81\xa1k" + b"\x91" * 5000 + b"\x01", "not one MessagePack value: StackError"),
        (
            b"\xdd\xff\xff\xff\xff",
            "not one MessagePack value: ValueError: 4294967295 exceeds max_array_len(5)",
        ),
        (b"\x80\x80", "not one MessagePack value: ExtraData: unpack(b) received extra data."),
        (b"\x81\xa1k", "not one MessagePack value: ValueError: Unpack failed: incomplete input"),
        (b"\xc1", "not one MessagePack value: FormatError"),
    ],
)
def test_a_payload_that_is_not_a_msgpack_map_with_str_keys_is_refused(
    payload: bytes, why: str
) -> None:
    v011 = list(VALID)
    v011[6] = payload
    assert refusal(v011) == f"frame 6 (payload): {why}"
    v010 = [*VALID[:5], payload]
    assert refusal(v010) == f"frame 5 (payload): {why}"


def test_a_payload_keeps_binary_and_text_apart_and_passes_ext_types_through() -> None:
    value = {
        "text": "é",
        "bin": b"\xff",
        "nested": {b"raw": [1, "two", b"3"], 4: None},
        "ext": msgpack.ExtType(5, b"ab"),
        "time": msgpack.Timestamp(1, 2),
    }
    frames = [*VALID[:6], msgpack.packb(value, use_bin_type=True)]
    assert decode(frames, B, now=NOW).payload == value


@pytest.mark.parametrize(
    ("frames", "local", "why"),
    [
        (
            [b"\x00A", *VALID[1:]],
            B,
            "frame 0 (previous hop): invalid message field source=b'\\x00A': "
            "must not start with a zero byte (zmq reserves it)",
        ),
        (
            [b"\x00A", C, *VALID[2:]],
            B,
            "frame 0 (previous hop): invalid message field previous_hop=b'\\x00A': "
            "must not start with a zero byte (zmq reserves it)",
        ),
        (
            [A, b"\x00", *VALID[2:]],
            B,
            "frame 1 (source): invalid message field source=b'\\x00': "
            "must not start with a zero byte (zmq reserves it)",
        ),
        (
            [A, b"", b"d" * 256, *VALID[3:]],
            B,
            "frame 2 (destination): invalid message field destination=b'"
            + "d" * 75
            + "...: must be 1..255 bytes long",
        ),
        (
            [*VALID[:4], b"c" * 256, *VALID[5:]],
            B,
            "frame 4 (command): invalid message field command=b'"
            + "c" * 75
            + "...: must be 1..255 bytes long",
        ),
        (
            VALID,
            b"",
            "local uuid: invalid message field destination=b'': must be 1..255 bytes long",
        ),
        (
            [A, b"", C, *VALID[3:]],
            b"\x00",
            "local uuid: invalid message field next_hop=b'\\x00': "
            "must not start with a zero byte (zmq reserves it)",
        ),
    ],
)
def test_a_field_the_message_refuses_is_refused_naming_the_frame_it_came_from(
    frames: list[bytes], local: bytes, why: str
) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        decode(frames, local, now=NOW)
    assert str(excinfo.value) == why
    assert type(excinfo.value.__cause__).__name__ == "MessageError"


def test_an_id_from_new_id_that_the_message_refuses_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as excinfo:
        decode(VALID[:5] + VALID[6:], B, now=NOW, new_id=fixed_id(-1))
    assert str(excinfo.value) == (
        "new_id(): invalid message field message_id=-1: must be an int in 0..18446744073709551615"
    )


_NEST = b"\x91" * 1020 + b"\x00"
"""A list in a list... 1020 deep: msgpack unpacks up to 1024 levels, repr
goes nowhere near (RecursionError)."""


@pytest.mark.parametrize(
    ("index", "frame", "why"),
    [
        (5, _NEST, "frame 5 (message id): must be a MessagePack int in 0..2**64-1, not list"),
        (6, _NEST, "frame 6 (payload): must be a MessagePack map, not list"),
        (6, b"\x81\x01" + _NEST, "frame 6 (payload): map keys must be str, not 1"),
        (6, b"\x81" + _NEST + b"\x01", "frame 6 (payload): not one MessagePack value: "),
    ],
)
def test_a_value_nested_as_deep_as_msgpack_allows_is_refused_naming_its_frame(
    index: int, frame: bytes, why: str
) -> None:
    frames = [*VALID[:index], frame, *VALID[index + 1 :]]
    for receive in (lambda: decode(frames, B, now=NOW), lambda: decode_p2p0mq(frames, B, NOW)):
        with pytest.raises(ProtocolError) as excinfo:
            receive()
        assert str(excinfo.value).startswith(why)
        assert len(str(excinfo.value)) < 200


def test_a_payload_holding_a_value_nested_as_deep_as_msgpack_allows_is_taken() -> None:
    got = decode([*VALID[:6], b"\x81\xa1k" + _NEST], B, now=NOW)
    depth, value = 0, got.payload["k"]
    while type(value) is list:
        depth, value = depth + 1, value[0]
    assert (depth, value) == (1020, 0)


def test_a_0_1_0_message_takes_its_id_from_new_id() -> None:
    ids = iter([11, 12])
    frames = VALID[:5] + VALID[6:]
    got = [decode(frames, B, now=NOW, new_id=lambda: next(ids)).message_id for _ in "ab"]
    assert got == [11, 12]


# -- encode ------------------------------------------------------------------


def test_a_routed_message_is_sent_with_its_source_and_destination_filled() -> None:
    message = Message(
        source=A,
        destination=D,
        command=b"ask",
        deadline=NOW,
        kind=Kind.REPLY,
        payload={"seq": 1},
        message_id=300,
        previous_hop=B,
        next_hop=C,
    )
    assert encode(message) == [A, D, b"\x02", b"ask", b"\xcd\x01\x2c", b"\x81\xa3seq\x01"]
    assert encode(message, WireShape.V010) == [A, D, b"\x02", b"ask", b"\x81\xa3seq\x01"]


def test_a_read_only_mapping_payload_is_sent_as_a_map() -> None:
    payload = MappingProxyType({"a": MappingProxyType({"b": b"\x00"}), "c": (1, 2)})
    message = Message.create(A, B, b"x", payload, now=NOW, message_id=1)
    assert encode(message) == [
        b"",
        b"",
        b"\x01",
        b"x",
        b"\x01",
        b"\x82\xa1a\x81\xa1b\xc4\x01\x00\xa1c\x92\x01\x02",
    ]


def test_a_payload_msgpack_cannot_pack_raises_encode_error_naming_the_message() -> None:
    message = Message.create(A, B, b"bench", {"x": object()}, now=NOW, message_id=7)
    with pytest.raises(EncodeError) as excinfo:
        encode(message)
    assert str(excinfo.value) == (
        "cannot encode the payload of message #7 b'bench': "
        "TypeError: cannot serialize 'object' object"
    )
    assert type(excinfo.value.__cause__) is TypeError


def test_an_int_too_big_for_msgpack_raises_encode_error_from_the_overflow() -> None:
    message = Message.create(A, B, b"bench", {"x": 2**64}, now=NOW, message_id=8)
    with pytest.raises(EncodeError) as excinfo:
        encode(message, WireShape.V010)
    assert str(excinfo.value) == (
        "cannot encode the payload of message #8 b'bench': "
        "OverflowError: int outside MessagePack's range -2**63..2**64-1"
    )
    assert type(excinfo.value.__cause__) is OverflowError


def test_a_payload_nested_too_deep_raises_encode_error() -> None:
    nested: list[object] = []
    nested.append(nested)
    message = Message.create(A, B, b"loop", {"x": nested}, now=NOW, message_id=9)
    with pytest.raises(EncodeError) as excinfo:
        encode(message)
    assert str(excinfo.value) == (
        "cannot encode the payload of message #9 b'loop': ValueError: recursion limit exceeded."
    )


@HEAVY_PROPERTY
@given(messages(), st.sampled_from(WireShape), st.floats(-1e9, 1e9))
def test_an_encoder_gives_the_frames_encode_gives(
    message: Message, shape: WireShape, now: float
) -> None:
    encoder = Encoder(shape)
    assert encoder(message, now) == encode(message, shape, now)
    assert encoder(message, now) == encode(message, shape, now)  # its packer is reused


@HEAVY_PROPERTY
@given(st.lists(messages(), max_size=5), st.sampled_from(WireShape), st.floats(-1e9, 1e9))
def test_an_encoders_many_gives_each_messages_frames_in_order(
    batch: list[Message], shape: WireShape, now: float
) -> None:
    encoder = Encoder(shape)
    assert encoder.many(batch, now) == [encode(message, shape, now) for message in batch]


@pytest.mark.parametrize("shape", list(WireShape))
@pytest.mark.parametrize("bad_value", [object(), 2**64, [1, object()]])
def test_many_stops_before_the_first_payload_that_does_not_pack(
    shape: WireShape, bad_value: object
) -> None:
    """What comes before it is encoded; it and what follows are left out,
    for the caller to encode one at a time (the encoder then names it)."""
    encoder = Encoder(shape)
    good = [Message.create(A, B, b"ok", {"n": n}, now=NOW, message_id=n) for n in range(1, 4)]
    bad = Message.create(A, B, b"bad", {"x": bad_value}, now=NOW, message_id=9)
    assert encoder.many([*good[:2], bad, good[2]], NOW) == [
        encode(message, shape, NOW) for message in good[:2]
    ]
    assert encoder.many([bad, *good], NOW) == []
    with pytest.raises(EncodeError, match="message #9 b'bad'"):
        encoder(bad, NOW)
    assert encoder.many(good, NOW) == [encode(message, shape, NOW) for message in good]


@pytest.mark.parametrize("shape", list(WireShape))
def test_many_stops_before_a_payload_whose_packing_raises_anything(shape: WireShape) -> None:
    """Not only msgpack's refusals: whatever packing raises is left to the
    encoder called on that message alone, not to the whole batch."""
    encoder = Encoder(shape)
    good = [Message.create(A, B, b"ok", {"n": n}, now=NOW, message_id=n) for n in range(1, 4)]
    bad = Message.create(A, B, b"bad", {"x": BrokenMapping()}, now=NOW, message_id=9)
    assert encoder.many([*good[:2], bad, good[2]], NOW) == [
        encode(message, shape, NOW) for message in good[:2]
    ]
    with pytest.raises(RuntimeError, match="backing store gone"):
        encoder(bad, NOW)
    assert encoder.many(good, NOW) == [encode(message, shape, NOW) for message in good]


@pytest.mark.parametrize("shape", list(WireShape))
def test_an_encoder_that_refused_a_payload_encodes_the_next_message_whole(
    shape: WireShape,
) -> None:
    encoder = Encoder(shape)
    good = Message.create(A, B, b"ok", {"x": [1, 2, 3]}, now=NOW, message_id=3)
    for bad_value in (object(), 2**64, [1, object()]):
        bad = Message.create(A, B, b"bad", {"x": bad_value}, now=NOW, message_id=4)
        with pytest.raises(EncodeError):
            encoder(bad, NOW)
        assert encoder(good, NOW) == encode(good, shape, NOW)


def test_every_shape_sends_a_read_only_mapping_payload_as_a_map() -> None:
    payload = MappingProxyType({"a": MappingProxyType({"b": 1})})
    message = Message.create(A, B, b"x", payload, now=NOW, message_id=1)
    for shape in WireShape:
        frames = [A, *Encoder(shape)(message, NOW)]
        assert decode(frames, B, now=NOW).payload == {"a": {"b": 1}}


# -- the frame size limit ---------------------------------------------------------

LIMIT = MIN_MESSAGE_SIZE


def _with_frame(size: int, shape: WireShape) -> Message:
    """A message whose longest frame on ``shape`` is ``size`` bytes (>= 300)."""

    def build(blob: int) -> Message:
        return Message.create(A, B, b"c", {"b": bytes(blob)}, now=NOW, message_id=7)

    longest = len(encode(build(256), shape, NOW)[-1])
    message = build(256 + size - longest)  # a bin16 grows a byte a byte
    assert len(encode(message, shape, NOW)[-1]) == size
    return message


@pytest.mark.parametrize("shape", list(WireShape))
@given(over=st.integers(-200, 200))
@PROPERTY
def test_an_encoder_refuses_exactly_the_messages_whose_longest_frame_passes_its_limit(
    shape: WireShape, over: int
) -> None:
    message = _with_frame(LIMIT + over, shape)
    encoder = Encoder(shape, max_frame=LIMIT)
    if over > 0:
        with pytest.raises(EncodeError, match=f"{LIMIT + over:,} bytes, over the limit of"):
            encoder(message, NOW)
        assert encoder.many([message], NOW) == []
    else:
        assert encoder(message, NOW) == encode(message, shape, NOW)
        assert encoder.many([message], NOW) == [encode(message, shape, NOW)]


@pytest.mark.parametrize("shape", list(WireShape))
def test_encoder_many_stops_before_a_message_too_long_for_its_limit(shape: WireShape) -> None:
    small = Message.create(A, B, b"c", {"n": 1}, now=NOW, message_id=1)
    big = _with_frame(LIMIT + 1, shape)
    encoder = Encoder(shape, max_frame=LIMIT)
    assert encoder.many([small, small, big, small], NOW) == [encode(small, shape, NOW)] * 2
    assert Encoder(shape).many([big], NOW) == [encode(big, shape, NOW)]  # no limit


def test_a_native_body_must_fit_a_frame_of_its_own() -> None:
    encoder = Encoder(WireShape.NATIVE, max_frame=LIMIT)
    fits, too_long = _with_frame(LIMIT, WireShape.NATIVE), _with_frame(LIMIT + 1, WireShape.NATIVE)
    assert len(encoder.body(fits, NOW)) == LIMIT - 1
    with pytest.raises(EncodeError, match="max_message_size"):
        encoder.body(too_long, NOW)


@pytest.mark.parametrize("value", [None, MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE, 2**40, 2**62])
def test_a_frame_limit_is_none_or_an_int_at_least_the_handshakes_need(value: int | None) -> None:
    assert check_message_size(value) == value
    assert Encoder(max_frame=value).max_frame == value


@pytest.mark.parametrize(
    "value", [MIN_MESSAGE_SIZE - 1, 0, -1, True, 2.0**20, "16MiB", 2**62 + 1, 2**64]
)
def test_any_other_frame_limit_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"max_message_size .*not {value!r}"):
        check_message_size(value)
    with pytest.raises(ConfigurationError):
        Encoder(max_frame=value)  # type: ignore[arg-type]


def test_a_deep_or_long_frame_limit_is_quoted_short() -> None:
    deep: object = 0
    for _ in range(1100):
        deep = [deep]
    for value in (deep, "x" * 2**20):
        with pytest.raises(ConfigurationError) as excinfo:
            check_message_size(value)
        assert len(str(excinfo.value)) < 200
