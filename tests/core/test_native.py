"""The native envelope: one frame, versioned, total to decode."""

from __future__ import annotations

import contextlib
import dataclasses
import gc

import msgpack
import pytest
from gc_kit import cyclic_garbage
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p0mq_actors.core.codec import Encoder, WireShape, decode, decode_many, encode
from p2p0mq_actors.core.errors import EncodeError, MessageError, ProtocolError
from p2p0mq_actors.core.message import Kind, Message, Priority
from p2p0mq_actors.core.native import (
    MAX_BATCH,
    MAX_HOPS,
    MAX_TRACE_LEN,
    NATIVE_VERSION,
    batch_frame,
    decode_native,
    decode_native_many,
    encode_native,
    encode_native_batch,
    encode_native_body,
    single_frame,
)

NOW = 1000.0


def test_a_message_is_one_frame_holding_a_versioned_array() -> None:
    m = Message.create(
        b"alice", b"bob", b"chat", {"t": "hi", "b": b"\x00"}, now=NOW, ttl=2.5, message_id=9
    )
    (frame,) = encode(m, WireShape.NATIVE, now=NOW)
    assert msgpack.unpackb(frame, raw=False) == [
        NATIVE_VERSION,
        1,
        b"alice",
        b"bob",
        b"chat",
        9,
        {"t": "hi", "b": b"\x00"},
        2500,
        0,
        None,
    ]


def test_decoding_gives_back_the_message_with_its_remaining_ttl() -> None:
    m = Message.create(
        b"alice", b"bob", b"chat", {"n": 1}, now=NOW, ttl=2.0, kind=Kind.REPLY, message_id=77
    )
    frames = [b"alice", encode_native(m, now=NOW + 0.5)]
    got = decode(frames, b"bob", now=50.0, priority=Priority.FAST)
    assert got == dataclasses.replace(m, deadline=51.5, priority=Priority.FAST)


def test_a_peer_cannot_make_a_message_live_longer_than_max_ttl() -> None:
    m = Message.create(b"a", b"b", b"c", now=NOW, ttl=10_000.0)
    got = decode([b"a", encode_native(m, NOW)], b"b", now=0.0, ttl=30.0)
    assert got.deadline == 30.0


def test_an_expired_message_still_carries_at_least_one_millisecond() -> None:
    m = Message.create(b"a", b"b", b"c", now=NOW, ttl=1.0)
    assert msgpack.unpackb(encode_native(m, now=NOW + 5))[7] == 1


def test_a_ttl_beyond_32_bits_of_milliseconds_is_sent_as_the_most_it_can_carry() -> None:
    m = Message.create(b"a", b"b", b"c", now=NOW, ttl=1e12)
    assert msgpack.unpackb(encode_native(m, now=NOW))[7] == 2**32 - 1


@pytest.mark.parametrize("ttl", [1e306, 1.7e308])
def test_a_ttl_too_long_for_any_clock_is_sent_as_the_most_it_can_carry_alone_or_in_a_batch(
    ttl: float,
) -> None:
    # (deadline - now) * 1000 is infinite: clamped before it is made an int.
    m = Message.create(b"a", b"b", b"c", now=NOW, ttl=ttl)
    assert msgpack.unpackb(encode_native(m, now=NOW))[7] == 2**32 - 1
    rows = msgpack.unpackb(encode_native_batch([m, m], now=NOW)[2:])
    assert [row[6] for row in rows] == [2**32 - 1] * 2


def test_the_kind_goes_out_as_a_plain_int() -> None:
    for kind, value in ((Kind.REQUEST, 1), (Kind.REPLY, 2)):
        m = Message.create(b"a", b"b", b"c", now=NOW, kind=kind)
        sent = msgpack.unpackb(encode_native(m, now=NOW))[1]
        assert type(sent) is int
        assert sent == value


def test_a_routed_message_keeps_both_ends_and_names_its_previous_hop() -> None:
    m = Message.create(b"alice", b"carol", b"c", now=NOW, next_hop=b"bob")
    got = decode([b"alice", encode_native(m, NOW)], b"bob", now=NOW)
    assert (got.source, got.destination, got.previous_hop, got.next_hop) == (
        b"alice",
        b"carol",
        b"alice",
        b"bob",
    )


def test_an_unpackable_payload_is_an_encode_error() -> None:
    m = Message.create(b"a", b"b", b"c", {"x": object()}, now=NOW)
    with pytest.raises(EncodeError, match="natively"):
        encode_native(m, NOW)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ([2, 1, b"a", b"b", b"c", 1, {}, 5, 0, None], "version 2 is not 1"),
        ([1, 3, b"a", b"b", b"c", 1, {}, 5, 0, None], "kind 3 is not 1 or 2"),
        ([1, 1, b"a", b"b", b"c", 1, {}, 0, 0, None], "ttl_ms 0 is not a positive int"),
        ([1, 1, b"a", b"b", b"c", -1, {}, 5, 0, None], "message id -1 is out of range"),
        ([1, 1, "a", b"b", b"c", 1, {}, 5, 0, None], "invalid message field source='a'"),
        ([1, 1, b"a", b"b", b"c", 1, [], 5, 0, None], "invalid message field payload=[]"),
        ([1, 1, b"a", b"b", b"c", 1, {}, 5, 0], "not an array of 10 fields"),
    ],
)
def test_each_bad_envelope_is_refused_with_a_reason(fields: list[object], why: str) -> None:
    with pytest.raises(ProtocolError, match="native envelope: " + why.replace("[", r"\[")):
        decode_native(b"a", msgpack.packb(fields, use_bin_type=True), b"b", now=NOW)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), min_size=2, max_size=2))
def test_decoding_any_two_frames_gives_a_message_or_a_protocol_error(frames: list[bytes]) -> None:
    try:
        got = decode(frames, b"me", now=NOW)
    except ProtocolError:
        return
    assert isinstance(got, Message)


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=8),
            st.text(max_size=8),
            st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=3),
        ),
        min_size=10,
        max_size=10,
    )
)
def test_decoding_any_ten_field_array_gives_a_message_or_a_protocol_error(
    fields: list[object],
) -> None:
    with contextlib.suppress(ProtocolError):
        decode_native(b"a", msgpack.packb(fields, use_bin_type=True), b"me", now=NOW)


@given(st.one_of(st.integers(), st.none(), st.text(), st.lists(st.integers())))
def test_decoding_non_frames_gives_a_protocol_error(thing: object) -> None:
    with pytest.raises(ProtocolError):
        decode([b"a", thing], b"me", now=NOW)


# -- batch frames --------------------------------------------------------------

_uuids = st.binary(min_size=1, max_size=16).filter(lambda b: b[0] != 0)
_payloads = st.dictionaries(
    st.text(max_size=6), st.one_of(st.integers(-5, 5), st.binary(max_size=8)), max_size=3
)


@st.composite
def _messages(draw: st.DrawFn) -> Message:
    return Message.create(
        b"alice",
        draw(_uuids),
        draw(st.binary(min_size=1, max_size=8)),
        draw(_payloads),
        now=NOW,
        ttl=draw(st.floats(0.01, 60.0)),
        kind=draw(st.sampled_from(list(Kind))),
        message_id=draw(st.integers(0, 2**32 - 1)),
    )


def _same(got: Message, sent: Message) -> None:
    assert (got.source, got.destination, got.command, got.kind, got.message_id) == (
        sent.source,
        sent.destination,
        sent.command,
        sent.kind,
        sent.message_id,
    )
    assert got.payload == sent.payload
    assert got.previous_hop == b"alice"


@given(_messages())
def test_a_single_frame_is_its_body_behind_the_version_byte_for_byte(m: Message) -> None:
    assert single_frame(encode_native_body(m, NOW)) == encode_native(m, NOW)


@settings(max_examples=60)
@given(st.lists(_messages(), min_size=1, max_size=40))
def test_a_batch_frame_gives_back_its_messages_in_order(messages: list[Message]) -> None:
    frame = batch_frame([encode_native_body(m, NOW) for m in messages])
    got, errors = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert errors == []
    assert len(got) == len(messages)
    for g, m in zip(got, messages, strict=True):
        _same(g, m)


@settings(max_examples=60)
@given(
    st.lists(_messages(), min_size=1, max_size=40),
    st.floats(NOW - 100.0, NOW + 100.0),
    st.booleans(),
)
def test_a_batch_packed_in_one_call_is_the_batch_frame_of_its_bodies_byte_for_byte(
    messages: list[Message], now: float, reused_packer: bool
) -> None:
    # expired messages (1 ms) and long-lived ones alike
    pack = Encoder().pack if reused_packer else None
    bodies = [encode_native_body(m, now) for m in messages]
    assert encode_native_batch(messages, now, pack=pack) == batch_frame(bodies)


def test_a_batch_packed_in_one_call_carries_one_to_max_batch_messages() -> None:
    m = Message.create(b"alice", b"bob", b"chat", now=NOW, message_id=5)
    with pytest.raises(ValueError, match="1 to"):
        encode_native_batch([], NOW)
    with pytest.raises(ValueError, match="1 to"):
        encode_native_batch([m] * (MAX_BATCH + 1), NOW)
    frame = encode_native_batch([m] * 300, NOW)
    got, errors = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert errors == [] and len(got) == 300


def test_a_batch_with_an_unpackable_payload_is_an_encode_error() -> None:
    good = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=NOW)
    bad = Message.create(b"alice", b"bob", b"chat", {"n": object()}, now=NOW)
    for pack in (None, Encoder().pack):
        with pytest.raises(EncodeError, match="a batch of 2"):
            encode_native_batch([good, bad], NOW, pack=pack)
        # a reused packer starts clean after a refusal
        assert encode_native_batch([good], NOW, pack=pack) == batch_frame(
            [encode_native_body(good, NOW)]
        )


@pytest.mark.parametrize("key", [(1, 2), msgpack.Timestamp(1, 0)], ids=["array", "timestamp"])
def test_a_body_with_a_nested_key_the_receiver_refuses_costs_that_message_only(
    key: object,
) -> None:
    """The sender packs any hashable key; the receiver refuses some (an
    array is no hashable key once read, a timestamp's hash is the peer's to
    choose): one such body used to sink the whole batch frame."""
    good = [Message.create(b"alice", b"bob", b"chat", {"n": n}, now=NOW) for n in range(4)]
    bad = Message.create(b"alice", b"bob", b"chat", {"m": {"deep": {key: "x"}}}, now=NOW)
    frame = encode_native_batch([*good[:2], bad, *good[2:]], NOW)
    got, errors = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert [m.payload for m in got] == [m.payload for m in good]
    (error,) = errors
    assert isinstance(error.__cause__, MessageError) and error.__cause__.field == "payload"
    assert "a map key of type" in str(error)
    with pytest.raises(ProtocolError, match="payload: a map key"):  # alone: refused whole
        decode_native(b"alice", encode_native(bad, NOW), b"bob", now=NOW)


def test_a_refused_map_deeper_than_python_recurses_costs_its_message_only() -> None:
    """Looking for it recursed, and a body 1,000 deep raised RecursionError
    for the whole frame, its good neighbours with it."""
    deep: object = {msgpack.Timestamp(1, 0): 1}
    for _ in range(995):
        deep = [deep]
    good = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=NOW)
    bad = Message.create(b"alice", b"bob", b"chat", {"n": 2}, now=NOW)
    frame = encode_native_batch([good, bad], NOW).replace(
        msgpack.packb({"n": 2}), msgpack.packb({"deep": deep})
    )
    got, errors = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert [m.payload for m in got] == [{"n": 1}]
    assert len(errors) == 1 and "payload: a map key of type Timestamp" in str(errors[0])


def test_a_refused_map_in_a_field_that_is_no_payload_is_the_frames_fault() -> None:
    good = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=NOW)
    body = msgpack.unpackb(encode_native_body(good, NOW), raw=False)
    body[1] = {msgpack.Timestamp(1, 0): 1}  # as the source
    frame = msgpack.packb([NATIVE_VERSION, [body]], use_bin_type=True)
    got, (error,) = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert got == [] and "a field that is no payload" in str(error)
    assert error.__cause__ is None  # (not counted as the payload's)


def test_a_single_frame_reads_as_a_batch_of_one() -> None:
    m = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=NOW, message_id=5)
    got, errors = decode_native_many(b"alice", encode_native(m, NOW), b"bob", now=NOW)
    assert errors == [] and len(got) == 1
    _same(got[0], m)


def test_large_batches_use_a_16_bit_count() -> None:
    m = Message.create(b"alice", b"bob", b"chat", now=NOW, message_id=5)
    frame = batch_frame([encode_native_body(m, NOW)] * 300)
    assert frame[:3] == b"\x92\x01\xdc"
    got, _ = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert len(got) == 300


def test_a_bad_envelope_costs_only_itself() -> None:
    good = [
        Message.create(b"alice", b"bob", b"chat", {"n": i}, now=NOW, message_id=i)
        for i in range(3)
    ]
    bodies = [encode_native_body(m, NOW) for m in good]
    bad_kind = msgpack.packb([7, b"alice", b"bob", b"chat", 1, {}, 10, 0, None])
    not_nine = msgpack.packb([1, b"alice"])
    bad_uuid = msgpack.packb([1, b"", b"bob", b"chat", 1, {}, 10, 0, None])
    frame = batch_frame([bodies[0], bad_kind, bodies[1], not_nine, bad_uuid, bodies[2]])
    got, errors = decode_native_many(b"alice", frame, b"bob", now=NOW)
    assert [g.payload for g in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [type(e) for e in errors] == [ProtocolError] * 3
    assert "kind 7" in str(errors[0])
    assert "not an array of 9" in str(errors[1])


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ([2, []], "version 2 is not 1"),
        ([1, "x"], "native batch: not an array"),
        ([1, []], "native batch: not an array"),
        ([1, [[1]] * (MAX_BATCH + 1)], "native batch: not an array"),
        ([1, 2, 3], "not an array of 10 fields"),
    ],
)
def test_a_bad_batch_is_refused_whole(fields: list[object], why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_native_many(b"a", msgpack.packb(fields), b"b", now=NOW)


def test_a_batch_carries_one_to_max_batch_messages() -> None:
    with pytest.raises(ValueError, match="1 to"):
        batch_frame([])
    with pytest.raises(ValueError, match="1 to"):
        batch_frame([b"\x90"] * (MAX_BATCH + 1))


@given(
    st.recursive(
        st.one_of(st.none(), st.integers(-9, 2**40), st.binary(max_size=6), st.text(max_size=4)),
        lambda inner: st.lists(inner, max_size=10),
        max_leaves=40,
    )
)
def test_decoding_any_array_as_a_batch_gives_messages_or_protocol_errors(thing: object) -> None:
    frame = msgpack.packb([NATIVE_VERSION, thing], use_bin_type=True)
    try:
        got, errors = decode_native_many(b"peer", frame, b"me", now=NOW)
    except ProtocolError:
        return
    assert all(isinstance(m, Message) for m in got)
    assert all(isinstance(e, ProtocolError) for e in errors)
    assert isinstance(thing, list)
    assert len(got) + len(errors) == len(thing)


_MANY_KEYS = {f"k{i}": i for i in range(12)}
_BODY = (1, b"s", b"me", b"c", 5, {"k": 1}, 30_000, 0, None)
_BODY_EDGES: list[list[object]] = [  # each field's edges, valid and not
    [2, 0, 3, True, 1.0, None],  # kind
    [b"s" * 255, b"s" * 256, b"\x00s", b"", "s", b"peer"],  # source
    [b"d", b"d" * 256, b"\x00d", b"", 7],  # destination
    [b"c" * 255, b"c" * 256, b"", "c"],  # command
    [0, 2**64 - 1, -1, True, 1.5, "5"],  # message id
    [{}, _MANY_KEYS, {"k": {1: 2}}, {1: 2}, {**_MANY_KEYS, 3: 4}, [1], None],  # payload
    [1, 2**40, 0, -5, 1.5, None],  # ttl_ms
    [3, 255, 256, -1, True, 1.0, None],  # hops
    [b"t", b"t" * 64, b"t" * 65, "t", 1, False],  # trace
]


@st.composite
def _edgy_bodies(draw: st.DrawFn) -> list[object]:
    """A valid body with one or two fields at one of their edges."""
    body = list(_BODY)
    for index in draw(st.lists(st.integers(0, len(_BODY) - 1), max_size=2)):
        body[index] = draw(st.sampled_from(_BODY_EDGES[index]))
    return body


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_edgy_bodies(), min_size=1, max_size=4),
    st.sampled_from([b"peer", b"peer", b"s", b"p" * 256, b"\x00p"]),
    st.sampled_from([b"me", b"me", b"m" * 256]),
    st.sampled_from([NOW, NOW, float("inf"), float("nan")]),
    st.sampled_from([30.0, 30.0, 0.5, -1.0, 30, float("inf"), -float("inf"), float("nan")]),
)
def test_a_batch_decodes_each_body_as_the_single_envelope_path_does_at_every_edge(
    bodies: list[list[object]], hop: bytes, local: bytes, now: float, max_ttl: float
) -> None:
    """A batch assembles the messages it has checked itself; at each field's
    edges it gives, for each body, the message or the error that the
    single-envelope path (through ``make_message``) gives."""
    frame = msgpack.packb([NATIVE_VERSION, bodies], use_bin_type=True)
    try:
        got, errors = decode_native_many(hop, frame, local, now=now, max_ttl=max_ttl)
    except ProtocolError as exc:  # a previous hop that is not a uuid: refused whole
        for body in bodies:
            single = msgpack.packb([NATIVE_VERSION, *body], use_bin_type=True)
            with pytest.raises(ProtocolError) as caught:
                decode_native(hop, single, local, now=now, max_ttl=max_ttl)
            assert str(caught.value) == str(exc)
        return
    expected: list[object] = []
    for body in bodies:
        single = msgpack.packb([NATIVE_VERSION, *body], use_bin_type=True)
        try:
            expected.append(decode_native(hop, single, local, now=now, max_ttl=max_ttl))
        except ProtocolError as exc:
            expected.append(str(exc))
    assert [str(e) for e in errors] == [e for e in expected if isinstance(e, str)]
    wanted = [m for m in expected if isinstance(m, Message)]
    assert len(got) == len(wanted)
    for g, w in zip(got, wanted, strict=True):
        assert dataclasses.asdict(g) == dataclasses.asdict(w)
        assert type(g.deadline) is float and type(g.kind) is Kind and type(g.payload) is dict


def test_codec_decode_many_reads_native_batches_and_p2p0mq_frames_alike() -> None:
    m = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=NOW, message_id=5)
    frame = batch_frame([encode_native_body(m, NOW)] * 2)
    got, errors = decode_many([b"alice", frame], b"bob", now=NOW)
    assert len(got) == 2 and errors == []
    got, errors = decode_many([b"alice", *encode(m)], b"bob", now=NOW)
    assert [g.message_id for g in got] == [5] and errors == []
    with pytest.raises(ProtocolError):
        decode_many([b"alice", b"x", b"y"], b"bob", now=NOW)


# -- hostile frames ---------------------------------------------------------------

_NEST = b"\x91" * 1015 + b"\x00"
"""A list in a list... 1015 deep: msgpack unpacks up to 1024 levels, repr
goes nowhere near (RecursionError)."""
_FIELDS = [1, b"peer", b"me", b"cmd", 7, {"a": 1}, 1000, 0, None]


def _body(index: int | None = None, packed: bytes = b"") -> bytes:
    """A good body, field ``index`` (0: kind ... 8: trace) replaced by ``packed``."""
    fields = [msgpack.packb(value, use_bin_type=True) for value in _FIELDS]
    if index is not None:
        fields[index] = packed
    return b"\x99" + b"".join(fields)


@pytest.mark.parametrize(
    ("index", "packed", "refused"),
    [
        (0, _NEST, "kind"),
        (1, _NEST, "source"),
        (2, _NEST, "destination"),
        (3, _NEST, "command"),
        (4, _NEST, "message id"),
        (5, _NEST, "payload"),
        (5, b"\x81\x01" + _NEST, "payload"),  # {1: [[[...]]]}: a key that is not a str
        (5, b"\x81\xa1k" + _NEST, None),  # {"k": [[[...]]]}: a valid payload
        (6, _NEST, "ttl_ms"),
        (7, _NEST, "hops"),
        (8, _NEST, "trace id"),
    ],
)
def test_a_value_nested_as_deep_as_msgpack_allows_costs_only_its_envelope(
    index: int, packed: bytes, refused: str | None
) -> None:
    bad = _body(index, packed)
    frame = b"\x92\x01\x93" + _body() + bad + _body()  # a batch: good, bad, good
    got, errors = decode_native_many(b"peer", frame, b"me", now=NOW)
    single = b"\x9a\x01" + bad[1:]
    if refused is None:
        assert (len(got), errors) == (3, [])
        assert isinstance(decode_native(b"peer", single, b"me", now=NOW), Message)
        return
    assert [m.payload for m in got] == [{"a": 1}, {"a": 1}]
    (error,) = errors
    assert refused in str(error) and "[[[[" in str(error)
    assert len(str(error)) < 200
    with pytest.raises(ProtocolError) as caught:
        decode_native(b"peer", single, b"me", now=NOW)
    assert str(caught.value) == str(error)


def test_a_nested_version_refuses_the_frame_with_a_short_reason() -> None:
    envelope = b"\x9a" + _NEST + _body()[1:]
    batch = b"\x92" + _NEST + b"\x91" + _body()
    why = "native envelope: version " + "[" * 37 + "... is not 1"
    cases = [
        (decode_native, envelope),
        (decode_native_many, envelope),
        (decode_native_many, batch),
    ]
    for decoder, frame in cases:
        with pytest.raises(ProtocolError) as caught:
            decoder(b"peer", frame, b"me", now=NOW)
        assert str(caught.value) == why


@pytest.mark.parametrize("hop", [b"", b"\x00peer", b"p" * 256])
def test_a_frame_from_a_previous_hop_that_is_not_a_uuid_is_refused_whole(hop: bytes) -> None:
    """The previous hop is who sent the frame (an empty one: a client whose
    key has no owner and that announced no identity). The envelope's claimed
    source must not stand in for it, as ``Message`` would for an empty one:
    replies are checked against it."""
    m = Message.create(b"alice", b"me", b"cmd", {"n": 1}, now=NOW, message_id=7)
    frames = {
        decode_native: encode_native(m, NOW),
        decode_native_many: encode_native_batch([m, m], NOW),
    }
    for decoder, frame in frames.items():
        with pytest.raises(ProtocolError) as caught:
            decoder(hop, frame, b"me", now=NOW)
        cause = caught.value.__cause__
        assert isinstance(cause, MessageError)
        assert (cause.field, cause.value) == ("previous_hop", hop)
        assert str(caught.value).startswith("native envelope: the identity frame (previous hop): ")
    with pytest.raises(ProtocolError):  # as p2p0mq's frames are
        decode([hop, *encode(m)], b"me", now=NOW)


# -- hops and trace id ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hops", "trace"),
    [(0, None), (MAX_HOPS, None), (3, b""), (3, b"t" * MAX_TRACE_LEN)],
)
def test_hops_and_a_trace_id_within_their_rules_travel(hops: int, trace: bytes | None) -> None:
    m = Message.create(b"alice", b"me", b"chat", {"n": 1}, now=NOW, message_id=5)
    frame = encode_native(m, NOW, hops=hops, trace=trace)
    assert msgpack.unpackb(frame)[8:] == [hops, trace]
    assert decode_native(b"alice", frame, b"me", now=NOW).message_id == 5


_BAD_HOPS_OR_TRACE = [
    (MAX_HOPS + 1, None, "hops"),
    (-1, None, "hops"),
    (True, None, "hops"),
    (1.0, None, "hops"),
    (None, None, "hops"),
    (0, b"t" * (MAX_TRACE_LEN + 1), "trace id"),
    (0, "t", "trace id"),
    (0, 1, "trace id"),
]


@pytest.mark.parametrize(("hops", "trace", "named"), _BAD_HOPS_OR_TRACE)
def test_an_envelope_breaking_the_hops_or_trace_rules_is_refused_alone(
    hops: object, trace: object, named: str
) -> None:
    bad = [1, b"alice", b"me", b"c", 6, {"k": 1}, 30_000, hops, trace]
    frame = msgpack.packb([NATIVE_VERSION, [list(_BODY), bad, list(_BODY)]], use_bin_type=True)
    got, errors = decode_native_many(b"peer", frame, b"me", now=NOW)
    assert len(got) == 2
    (error,) = errors
    assert str(error).startswith(f"native envelope: {named} ")


def test_a_refused_envelope_leaves_nothing_for_the_collector_to_free() -> None:
    # Each error is kept detached from its traceback: that held the decoder's
    # frame (the whole batch decoded) and its callers' (the Receiver's drain).
    refused = [
        [9, b"alice", b"me", b"c", 6, {"k": 1}, 30_000, 0, None],  # a bad kind: ProtocolError
        [1, b"alice", b"me", b"", 6, {"k": 1}, 30_000, 0, None],  # no command: MessageError
    ]
    frame = msgpack.packb(
        [NATIVE_VERSION, [list(_BODY), *refused, list(_BODY)]], use_bin_type=True
    )
    with cyclic_garbage() as garbage:  # what the collector finds meanwhile
        got, errors = decode_native_many(b"peer", frame, b"me", now=NOW)
        assert (len(got), len(errors)) == (2, 2)
        for error in errors:
            assert error.__traceback__ is None
            assert error.__cause__ is None or error.__cause__.__traceback__ is None
        del got, errors, error
        gc.collect()
        assert garbage == []


@pytest.mark.parametrize(("hops", "trace", "named"), _BAD_HOPS_OR_TRACE)
def test_encoding_refuses_hops_or_a_trace_id_a_receiver_would_refuse(
    hops: object, trace: object, named: str
) -> None:
    m = Message.create(b"alice", b"me", b"chat", {"n": 1}, now=NOW)
    with pytest.raises(EncodeError, match=named):
        encode_native(m, NOW, hops=hops, trace=trace)  # type: ignore[arg-type]
