"""The native envelope: one frame, versioned, total to decode."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p0mq_actors.core.codec import WireShape, decode, encode
from p2p0mq_actors.core.errors import EncodeError, ProtocolError
from p2p0mq_actors.core.message import Kind, Message, Priority
from p2p0mq_actors.core.native import NATIVE_VERSION, decode_native, encode_native

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
