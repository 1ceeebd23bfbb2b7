"""Reading a MessagePack value from a peer, in time proportional to its size.

Rules:
- Map keys that are str or bytes are read at msgpack's own speed: Python
  hashes them with a per-process secret, so no peer can choose keys that
  collide.
- Any other key takes a slower reading that admits only keys whose
  collisions are few by construction (ints, floats, bools, nil, ext
  types). A msgpack timestamp as a key is refused: its hash is that of a
  tuple of two ints, which can be inverted, so a peer could send thousands
  of distinct keys with one hash and make building one map take seconds
  to hours (measured in session 21: 16,000 such keys in 256 KB held the
  Receiver 8 s, and the time grows with the square of the count).
- Whatever is wrong raises what msgpack raises (ValueError, TypeError,
  ``msgpack.UnpackException``...); callers turn it into ``ProtocolError``.
- ``unpack_marking`` reads a value of many messages (a native batch frame)
  whole even so: each map it refuses becomes a ``RefusedMap``, so that the
  message holding it is refused alone.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

__all__ = ["RefusedMap", "holds_refused", "unpack", "unpack_marking"]

_unpackb: Final = msgpack.unpackb
_FEW_COLLISIONS: Final = frozenset({str, bytes, int, float, bool, type(None), msgpack.ExtType})


def unpack(data: Any) -> Any:
    """The one MessagePack value ``data`` holds (str as str, bin as bytes).

    Raises:
        ValueError: a key of a kind whose hash a peer could choose, or
            anything else msgpack refuses (with its own exception types).
    """
    try:
        return _unpackb(data, raw=False)  # str and bytes keys only: the usual case
    except ValueError:
        pass  # another kind of key (or malformed: raised again below)
    return _unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_checked_map)


def unpack_marking(data: Any) -> tuple[Any, bool]:
    """``unpack``'s value, each map it would refuse for a key a
    ``RefusedMap`` instead; and whether there is one.

    Raises:
        ValueError: anything else msgpack refuses (with its own types).
    """
    try:
        return _unpackb(data, raw=False), False
    except ValueError:
        pass
    refused: list[RefusedMap] = []

    def marking(pairs: list[tuple[Any, Any]]) -> Any:
        why = _refusal(pairs)
        if why is None:
            return dict(pairs)
        refused.append(RefusedMap(why))
        return refused[-1]

    value = _unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=marking)
    return value, bool(refused)


class RefusedMap:
    """Where ``unpack_marking`` met a map with a key it does not take."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def holds_refused(value: object) -> RefusedMap | None:
    """A ``RefusedMap`` in ``value`` (lists and maps, at any depth: a loop,
    not a recursion, as msgpack nests deeper than Python recurses)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is RefusedMap:
            return item
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return None


def _checked_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    why = _refusal(pairs)
    if why is not None:
        raise ValueError(why)
    return dict(pairs)


def _refusal(pairs: list[tuple[Any, Any]]) -> str | None:
    for key, _value in pairs:
        if type(key) not in _FEW_COLLISIONS:
            return (
                f"a map key of type {type(key).__name__} is not taken (only str, bytes,"
                " numbers, bools, nil and ext types)"
            )
    return None
