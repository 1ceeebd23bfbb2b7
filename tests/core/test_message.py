"""The message model: validated when built, replies as p2p0mq builds them."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.core.errors import MessageError
from p2p0mq_actors.core.message import (
    DEFAULT_TTL,
    Kind,
    Message,
    Priority,
    make_message,
    new_message,
    new_messages,
    next_message_id,
    plain_payload,
)


def test_create_computes_the_deadline_from_the_ttl_and_fills_the_hops() -> None:
    m = Message.create(b"alice", b"bob", b"chat", {"t": "hi"}, now=100.0, message_id=7)
    assert m == Message(
        source=b"alice",
        destination=b"bob",
        command=b"chat",
        deadline=100.0 + DEFAULT_TTL,
        kind=Kind.REQUEST,
        payload={"t": "hi"},
        message_id=7,
        priority=Priority.MEDIUM,
        previous_hop=b"alice",
        next_hop=b"bob",
        attempts=0,
    )
    assert DEFAULT_TTL == 30.0


def test_a_reply_swaps_the_ends_keeps_id_and_command_and_goes_back_the_way_it_came() -> None:
    request = Message(
        source=b"alice",
        destination=b"bob",
        command=b"echo",
        deadline=50.0,
        message_id=42,
        previous_hop=b"relay",
        next_hop=b"bob",
        priority=Priority.SLOW,
    )
    reply = request.reply({"ok": True}, now=10.0, ttl=5.0)
    assert reply == Message(
        source=b"bob",
        destination=b"alice",
        command=b"echo",
        deadline=15.0,
        kind=Kind.REPLY,
        payload={"ok": True},
        message_id=42,
        priority=Priority.SLOW,
        previous_hop=b"bob",
        next_hop=b"relay",
    )
    assert request.reply(now=0.0, priority=Priority.FAST).priority is Priority.FAST


def test_retried_counts_one_more_attempt_and_changes_nothing_else() -> None:
    m = Message.create(b"a", b"b", b"c", now=0.0)
    again = m.retried().retried()
    assert again.attempts == 2
    assert again == Message(**{**_fields(m), "attempts": 2})


def test_expired_is_true_from_the_deadline_on() -> None:
    m = Message.create(b"a", b"b", b"c", now=0.0, ttl=2.0)
    assert [m.expired(t) for t in (1.999, 2.0, 3.0)] == [False, True, True]


def test_kind_and_priority_accept_their_integer_values() -> None:
    m = Message(source=b"a", destination=b"b", command=b"c", deadline=1.0, kind=2, priority=0)  # type: ignore[arg-type]
    assert (m.kind, m.priority) == (Kind.REPLY, Priority.FAST)


def test_the_repr_shows_what_a_reader_needs() -> None:
    m = Message.create(b"a", b"b", b"hb", now=0.0, message_id=3, next_hop=b"r")
    assert repr(m) == "<Message request b'hb' #3 b'a'->b'b' via b'r' MEDIUM attempts=0>"


def test_messages_hash_by_identity_fields_and_equal_messages_hash_equal() -> None:
    a = Message.create(b"a", b"b", b"c", {"x": [1]}, now=0.0, message_id=5)
    b = Message.create(b"a", b"b", b"c", {"x": [1]}, now=0.0, message_id=5)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


def test_message_ids_are_unique_and_increasing() -> None:
    ids = [next_message_id() for _ in range(1000)]
    assert ids == sorted(set(ids))


def _made(**values: object) -> Message:
    """``make_message`` given keywords, the defaults of ``Message`` filling in."""
    defaults = {f.name: f.default for f in dataclasses.fields(Message)}
    defaults.update(payload=None, previous_hop=b"", next_hop=b"")
    merged = {**defaults, **values}
    return make_message(*(merged[f.name] for f in dataclasses.fields(Message)))  # type: ignore[arg-type]


class _Key(str):
    """A str subclass: refused as a payload key (msgpack gives back plain str)."""


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("source", b"", "must be 1..255 bytes long"),
        ("source", "alice", "must be bytes"),
        ("source", b"\x00x", "must not start with a zero byte (zmq reserves it)"),
        ("destination", b"x" * 256, "must be 1..255 bytes long"),
        ("previous_hop", bytearray(b"x"), "must be bytes"),
        ("next_hop", b"\x00", "must not start with a zero byte (zmq reserves it)"),
        ("previous_hop", b"\x00a", "must not start with a zero byte (zmq reserves it)"),
        ("next_hop", b"x" * 256, "must be 1..255 bytes long"),
        ("next_hop", "b", "must be bytes"),
        ("command", b"", "must be 1..255 bytes long"),
        ("command", "hello", "must be bytes"),
        ("deadline", math.nan, "must be finite"),
        ("deadline", math.inf, "must be finite"),
        ("deadline", "soon", "must be a number of seconds"),
        ("deadline", True, "must be a number of seconds"),
        ("message_id", -1, "must be an int in 0..18446744073709551615"),
        ("message_id", 2**64, "must be an int in 0..18446744073709551615"),
        ("message_id", 1.0, "must be an int in 0..18446744073709551615"),
        ("attempts", -1, "must be an int >= 0"),
        ("kind", 3, "must be one of REQUEST=1, REPLY=2"),
        ("priority", "fast", "must be one of FAST=0, MEDIUM=1, SLOW=2"),
        ("payload", [1, 2], "must be a mapping with str keys"),
        ("payload", {b"k": 1}, "key b'k' is not a str"),
        ("payload", {"a": 1, 2: 3}, "key 2 is not a str"),
        # past the few keys checked one by one: the other way of checking
        ("payload", {**{f"k{i}": i for i in range(12)}, 5: 0}, "key 5 is not a str"),
        ("payload", {_Key("k"): 1}, "key 'k' is not a str"),
        ("payload", {**{f"k{i}": i for i in range(12)}, _Key("k"): 1}, "key 'k' is not a str"),
    ],
)
@pytest.mark.parametrize("build", [Message, _made])
def test_a_bad_field_raises_a_message_error_naming_the_field_and_the_value(
    field: str, value: object, why: str, build: Callable[..., Message]
) -> None:
    good = {"source": b"a", "destination": b"b", "command": b"c", "deadline": 1.0}
    with pytest.raises(MessageError) as caught:
        build(**{**good, field: value})
    assert caught.value.field == field
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    assert str(caught.value) == f"invalid message field {field}={shown}: {why}"


@pytest.mark.parametrize("ttl", [0, -1, math.nan, "30", True])
def test_a_bad_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(MessageError, match="ttl"):
        Message.create(b"a", b"b", b"c", now=0.0, ttl=ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", [10**400, 2**1024], ids=["10**400", "2**1024"])
def test_a_ttl_too_large_for_a_float_is_a_message_error_naming_it(ttl: int) -> None:
    with pytest.raises(MessageError, match="ttl") as caught:
        Message.create(b"a", b"b", b"c", now=0.0, ttl=ttl)
    assert caught.value.field == "ttl"


@pytest.mark.parametrize("build", [Message, _made])
def test_a_deadline_too_large_for_a_float_is_a_message_error_naming_it(
    build: Callable[..., Message],
) -> None:
    with pytest.raises(MessageError) as caught:
        build(source=b"a", destination=b"b", command=b"c", deadline=10**400)
    assert caught.value.field == "deadline"


def test_a_long_value_is_shortened_in_the_error() -> None:
    with pytest.raises(MessageError) as caught:
        Message(source=b"a" * 300, destination=b"b", command=b"c", deadline=1.0)
    assert len(str(caught.value)) < 160


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


_DEEP = _nested(1100)  # deeper than repr can go (RecursionError), as msgpack may give


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Message)])
@pytest.mark.parametrize("build", [Message, _made])
def test_a_deeply_nested_value_in_any_field_raises_a_short_message_error(
    field: str, build: Callable[..., Message]
) -> None:
    good = {"source": b"a", "destination": b"b", "command": b"c", "deadline": 1.0}
    with pytest.raises(MessageError) as caught:
        build(**{**good, field: _DEEP})
    assert caught.value.field == field
    assert caught.value.value is _DEEP
    assert str(caught.value).startswith(f"invalid message field {field}=[[[[")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("ttl", [_DEEP, "t" * 2**20])
def test_a_deep_or_long_ttl_raises_a_short_message_error(ttl: object) -> None:
    with pytest.raises(MessageError) as caught:
        Message.create(b"a", b"b", b"c", now=0.0, ttl=ttl)  # type: ignore[arg-type]
    assert caught.value.field == "ttl"
    assert len(str(caught.value)) < 200


_MIB = 2**20


@pytest.mark.parametrize(
    "payload",
    [
        {b"k" * _MIB: 1},  # a key of a wrong type, long
        {"a": 1, b"\x00" * _MIB: 1},
        {**{f"k{i}": i for i in range(12)}, ("t" * _MIB,): 1},
        {"x" * _MIB: 1, 2: "y" * _MIB},  # a long good key, then a bad one
        "v" * _MIB,  # a payload of a wrong type, long
        [b"v" * _MIB],
    ],
)
def test_the_error_of_a_huge_bad_payload_is_short(payload: object) -> None:
    with pytest.raises(MessageError) as caught:
        Message(b"a", b"b", b"c", 1.0, payload=payload)  # type: ignore[arg-type]
    assert caught.value.field == "payload"
    assert len(str(caught.value)) < 300


def test_a_payload_key_is_quoted_cut_like_the_payload() -> None:
    with pytest.raises(MessageError) as caught:
        Message(b"a", b"b", b"c", 1.0, payload={b"k" * _MIB: 1})  # type: ignore[dict-item]
    assert str(caught.value) == (
        "invalid message field payload={b'" + "k" * 74 + "...: "
        "key b'" + "k" * 75 + "... is not a str"
    )


_EDGY_BYTES = st.binary(max_size=300) | st.sampled_from(
    [b"", b"\x00", b"\x00a", b"a" * 255, b"a" * 256]
)


@given(_EDGY_BYTES, _EDGY_BYTES, _EDGY_BYTES)
def test_any_uuid_either_builds_or_raises_a_message_error(
    src: bytes, dst: bytes, cmd: bytes
) -> None:
    def uuid(value: bytes) -> bool:
        return 0 < len(value) <= 255 and value[0] != 0

    try:
        m = Message(source=src, destination=dst, command=cmd, deadline=0.0)
    except MessageError:
        assert not (uuid(src) and uuid(dst) and 0 < len(cmd) <= 255)
    else:
        assert uuid(src) and uuid(dst) and 0 < len(cmd) <= 255
        assert (m.source, m.destination, m.command) == (src, dst, cmd)


_POOLS = {
    "source": [b"a", b"", b"\x00a", "a", b"s" * 256],
    "destination": [b"b", b"", 7],
    "command": [b"c", b"", None],
    "deadline": [1.0, 2, math.nan, "x", True],
    "kind": [Kind.REPLY, 1, 3, "1"],
    "payload": [None, {}, {"k": [1]}, {1: 2}, {f"k{i}": i for i in range(10)}, [("k", 1)]],
    "message_id": [0, 2**64 - 1, 2**64, -1, 1.5],
    "priority": [Priority.FAST, 2, 5],
    "previous_hop": [b"", b"p", b"\x00", "p"],
    "next_hop": [b"", b"n", b"n" * 256],
    "attempts": [0, 3, -1, True],
}


@given(st.fixed_dictionaries({name: st.sampled_from(pool) for name, pool in _POOLS.items()}))
def test_make_message_and_message_agree_on_any_fields(values: dict[str, object]) -> None:
    outcomes = []
    for build in (Message, _made):
        try:
            outcomes.append(_fields(build(**values)))  # type: ignore[arg-type]
        except MessageError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


_CREATE_POOLS = {
    "destination": [b"b", b"", b"\x00b", "b"],
    "command": [b"c", b"", None],
    "payload": [None, {}, {"k": 1}, {1: 2}, [("k", 1)]],
    "now": [0.0, 1e9, math.inf],
    "ttl": [30.0, 0.5, 3, 0.0, -1.0, math.nan, math.inf, True, "30", 1e308],
    "kind": [Kind.REQUEST, Kind.REPLY, 2, 3],
    "priority": [Priority.FAST, Priority.SLOW, 1, 5],
}


_CREATE_VALUES = st.fixed_dictionaries(
    {name: st.sampled_from(pool) for name, pool in _CREATE_POOLS.items()}
)


@given(_CREATE_VALUES)
def test_new_message_builds_what_create_builds_or_raises_the_same_error(
    values: dict[str, object],
) -> None:
    """The node's positional shortcut: same message (but for its new id),
    same error for anything wrong, the ttl's included."""
    v: dict[str, Any] = values
    outcomes = []
    for build in (
        lambda: Message.create(
            b"a",
            v["destination"],
            v["command"],
            v["payload"],
            now=v["now"],
            ttl=v["ttl"],
            kind=v["kind"],
            priority=v["priority"],
        ),
        lambda: new_message(
            b"a",
            v["destination"],
            v["command"],
            v["payload"],
            v["now"],
            v["ttl"],
            v["kind"],
            v["priority"],
        ),
    ):
        try:
            fields = _fields(build())
        except MessageError as exc:
            outcomes.append(str(exc))
        else:
            assert type(fields.pop("message_id")) is int
            outcomes.append(fields)  # type: ignore[arg-type]
    assert outcomes[0] == outcomes[1]


def test_new_message_takes_a_fresh_id_each_time() -> None:
    def new_id() -> int:
        built = new_message(b"a", b"b", b"c", None, 0.0, 1.0, Kind.REQUEST, Priority.FAST)
        return built.message_id

    ids = [new_id(), next_message_id(), new_id()]
    assert ids == sorted(ids) and len(set(ids)) == 3


_PAYLOAD_POOL = [
    None,
    {},
    {"k": 1},
    {f"k{i}": i for i in range(12)},  # more keys than the loop checks one by one
    {1: 2},
    {"k": 1, b"b": 2},
    {**{f"k{i}": i for i in range(12)}, 3: 4},
    [("k", 1)],
    "k",
]


_VALID_CREATE_VALUES = st.fixed_dictionaries(
    {name: st.sampled_from([pool[0]]) for name, pool in _CREATE_POOLS.items()}
)


@given(
    _VALID_CREATE_VALUES | _CREATE_VALUES,
    st.lists(st.sampled_from(_PAYLOAD_POOL), max_size=6),
)
def test_new_messages_builds_what_new_message_builds_for_each_payload_or_raises_its_error(
    values: dict[str, object], payloads: list[object]
) -> None:
    """One error for a bad shared field or payload (the first one met, as
    building them one by one in order would raise), else the same messages
    but for their ids, which are fresh and rising."""
    v: dict[str, Any] = values
    shared = (v["now"], v["ttl"], v["kind"], v["priority"])
    try:
        expected: list[dict[str, object]] | str = [
            _fields(new_message(b"a", v["destination"], v["command"], p, *shared))  # type: ignore[arg-type]
            for p in payloads
        ]
    except MessageError as exc:
        expected = str(exc)
    try:
        built = new_messages(b"a", v["destination"], v["command"], iter(payloads), *shared)  # type: ignore[arg-type]
    except MessageError as exc:
        assert str(exc) == expected
        return
    assert not isinstance(expected, str), expected
    got = [_fields(m) for m in built]
    ids = [fields.pop("message_id") for fields in got]
    assert ids == sorted(set(ids)) and all(type(i) is int for i in ids)
    for fields in expected:
        fields.pop("message_id")
    assert got == expected
    assert all(type(m) is Message for m in built)


def test_new_messages_of_no_payloads_is_an_empty_list() -> None:
    assert new_messages(b"a", b"b", b"c", [], 0.0, 1.0, Kind.REQUEST, Priority.FAST) == []


def test_plain_payload_is_a_dict_with_str_keys_only() -> None:
    assert (
        plain_payload({})
        and plain_payload({"a": 1})
        and plain_payload(dict.fromkeys("abcdefghij"))
    )
    for value in (None, [], {1: 2}, {"a": 1, 2: 3}, dict.fromkeys([*"abcdefghij", 1]), "a"):
        assert not plain_payload(value)


def _fields(m: Message) -> dict[str, object]:
    return {name: getattr(m, name) for name in Message.__dataclass_fields__}


def test_a_built_message_is_a_frozen_message_that_pickles_and_copies() -> None:
    message = Message.create(b"a", b"b", b"cmd", {"n": [1, 2]}, now=1.0, message_id=9)
    assert type(message) is Message
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.source = b"x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del message.payload  # type: ignore[misc]
    for twin in (pickle.loads(pickle.dumps(message)), copy.copy(message), copy.deepcopy(message)):
        assert type(twin) is Message and twin == message
