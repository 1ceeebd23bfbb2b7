"""How error messages quote values: as ``repr`` does, cut short, at a cost
bounded by the cut whatever the value (deep, long, broken)."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p0mq_actors.core.errors import MessageError, short_repr

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_scalars.filter(lambda v: v == v), inner, max_size=4)  # no NaN keys
    ),
    max_leaves=30,
)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@given(_values, st.integers(3, 120))
def test_a_short_repr_is_the_repr_cut_to_the_limit(value: object, limit: int) -> None:
    assert short_repr(value, limit) == _cut(repr(value), limit)


@given(st.text(alphabet="'\"\\ab\n\x00é", max_size=60), st.integers(3, 40))
def test_a_cut_text_is_quoted_and_escaped_as_the_whole_text_is(text: str, limit: int) -> None:
    for value in (text, text.encode(), [0, {"k": text}]):
        assert short_repr(value, limit) == _cut(repr(value), limit)


def _nested(depth: int, inner: Any) -> Any:
    for _ in range(depth):
        inner = [inner]
    return inner


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (_nested(5000, 0), "[" * 77 + "..."),  # repr: RecursionError
        ({"k": _nested(5000, {})}, "{'k': " + "[" * 71 + "..."),
        ("x" * 2**24, "'" + "x" * 76 + "..."),
        (b"\x00" * 2**24, "b'" + "\\x00" * 18 + "\\x0..."),
        (list(range(2**20)), repr(list(range(30)))[:77] + "..."),
        (10**5000, "<int object>"),  # repr: ValueError (str's digit limit)
    ],
    ids=["deep list", "deep in a map", "long str", "long bytes", "long list", "huge int"],
)
def test_a_deep_or_long_value_is_cut_without_building_its_whole_repr(
    value: object, shown: str
) -> None:
    assert short_repr(value) == shown


class _Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_value_whose_repr_raises_is_named_by_its_type() -> None:
    assert short_repr([_Broken()]) == "[<_Broken object>]"


def test_a_message_error_quotes_a_deep_value_short() -> None:
    error = MessageError("source", _nested(5000, b"x"), "must be bytes")
    assert str(error) == "invalid message field source=" + "[" * 77 + "...: must be bytes"


def test_a_named_tuple_is_written_as_its_repr_and_cut_as_it_goes() -> None:
    small = msgpack.ExtType(5, b"ab")
    assert short_repr(small) == repr(small)
    huge = msgpack.ExtType(1, b"x" * 2**24)  # written only as far as the cut
    assert short_repr(huge) == repr(huge)[:77] + "..."


def test_a_named_tuple_holding_a_deep_value_is_written_as_far_as_the_cut() -> None:
    deep: Any = 0
    for _ in range(2000):
        deep = [deep]
    text = short_repr(Pair(1, deep))  # a repr of it would recurse too deep
    assert text.startswith("Pair(code=1, data=[[[[") and len(text) == 80


class Pair(NamedTuple):
    code: int
    data: Any
