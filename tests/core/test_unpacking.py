"""Reading a peer's MessagePack: keys whose hashes a peer could choose are refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.core.codec import WireShape, decode, encode
from p2p0mq_actors.core.errors import ProtocolError
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.core.unpacking import unpack


def colliding_timestamps(count: int) -> list[msgpack.Timestamp]:
    """Distinct timestamps: a key of each used to cost a Python-level
    comparison with every earlier one of the same hash (the same here)."""
    return [msgpack.Timestamp(seconds, 0) for seconds in range(count)]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_a_timestamp_as_a_map_key_is_refused_at_any_depth(depth: int) -> None:
    value: Any = {msgpack.Timestamp(1, 2): 1}
    for _ in range(depth - 1):
        value = {"k": value}
    with pytest.raises(ValueError, match="map key of type Timestamp is not taken"):
        unpack(msgpack.packb({"a": value}))


def test_a_payload_of_timestamp_keys_is_a_protocol_error_on_every_wire() -> None:
    keys = dict.fromkeys(colliding_timestamps(50), 1)
    payload = msgpack.packb({"a": keys})
    message = Message.create(b"alice", b"bob", b"chat", {"a": 1}, now=0.0, message_id=3)
    for shape in (WireShape.V011, WireShape.NATIVE):
        frames = [b"alice", *encode(message, shape)]
        frames[-1] = frames[-1].replace(msgpack.packb({"a": 1}), payload)
        with pytest.raises(ProtocolError, match="map key of type Timestamp"):
            decode(frames, b"bob", now=0.0)


def test_a_timestamp_as_a_value_and_keys_of_every_other_kind_are_read() -> None:
    value = {
        "when": msgpack.Timestamp(5, 6),
        "ints": {1: "a", -1: "b", 2**63: "c"},
        "floats": {0.5: 1, None: 2, False: 3},
        "bytes": {b"k": 1},
        "ext": {msgpack.ExtType(7, b"x"): 1},
    }
    assert unpack(msgpack.packb(value, use_bin_type=True)) == value


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_like)
def test_what_msgpack_reads_with_any_hashable_keys_is_read_alike(value: object) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    assert unpack(data) == msgpack.unpackb(data, raw=False, strict_map_key=False)
