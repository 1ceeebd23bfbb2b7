"""The native envelope: one MessagePack frame per message, between
p2p0mq-actors peers.

Rules:
- The frame is a MessagePack array ``[version, kind, source, destination,
  command, message id, payload, ttl_ms, hops, trace]``: version 1; kind 1
  (request) or 2 (reply); uuids and command as bin; the remaining time to
  live in whole milliseconds (at least 1); the number of hops taken so far;
  a trace id (bin) or nil. A receiver refuses any other version.
- A ROUTER receives it as two frames: the sender's identity (the previous
  hop) and the envelope. ``decode_native`` is total, like ``codec.decode``.
- The deadline travels as a remaining TTL, since monotonic clocks differ from
  host to host: ``deadline = now + ttl_ms / 1000`` on arrival, capped at
  ``max_ttl`` seconds so a peer cannot make a message immortal.
- Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import msgpack

from .errors import EncodeError, MessageError, ProtocolError
from .message import DEFAULT_TTL, MAX_MESSAGE_ID, Kind, Message, Priority

NATIVE_VERSION: Final = 1
_FIELDS: Final = 10
_KINDS: Final = {1: Kind.REQUEST, 2: Kind.REPLY}
_MAX_TTL_MS: Final = 2**32 - 1


def encode_native(
    message: Message,
    now: float,
    *,
    hops: int = 0,
    trace: bytes | None = None,
    pack: Callable[[object], bytes] | None = None,
) -> bytes:
    """The one frame that carries ``message`` (its TTL counted from ``now``).

    ``pack`` is a ``msgpack.Packer(use_bin_type=True).pack`` to reuse (see
    ``codec.Encoder``); by default one is made for this call.

    Raises:
        EncodeError: the payload cannot be packed as MessagePack.
    """
    ttl_ms = min(_MAX_TTL_MS, max(1, int((message.deadline - now) * 1000)))
    envelope = [
        NATIVE_VERSION,
        int(message.kind),
        message.source,
        message.destination,
        message.command,
        message.message_id,
        message.payload,
        ttl_ms,
        hops,
        trace,
    ]
    try:
        if pack is None:
            return msgpack.packb(envelope, use_bin_type=True, default=plain)  # type: ignore[no-any-return]
        return pack(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(
            f"cannot encode message #{message.message_id} {message.command!r} natively: {exc}"
        ) from exc


def decode_native(
    previous_hop: object,
    frame: object,
    local_uuid: bytes,
    *,
    now: float,
    max_ttl: float = DEFAULT_TTL,
    priority: Priority = Priority.MEDIUM,
) -> Message:
    """The message in a native envelope that ``previous_hop`` sent us.

    Raises:
        ProtocolError: for anything but a valid version-1 envelope.
    """
    fields = _unpack(frame)
    version, kind, mid, ttl_ms = fields[0], fields[1], fields[5], fields[7]
    if (
        type(version) is int
        and version == NATIVE_VERSION
        and type(kind) is int
        and kind in _KINDS
        and type(ttl_ms) is int
        and ttl_ms >= 1
        and type(mid) is int
        and 0 <= mid <= MAX_MESSAGE_ID
    ):
        return _message(
            fields,
            _identity(previous_hop),
            local_uuid,
            now + min(ttl_ms / 1000, max_ttl),
            priority,
        )
    if type(version) is not int or version != NATIVE_VERSION:
        raise ProtocolError(f"native envelope: version {version!r} is not {NATIVE_VERSION}")
    if type(kind) is not int or kind not in _KINDS:
        raise ProtocolError(f"native envelope: kind {kind!r} is not 1 or 2")
    if type(ttl_ms) is not int or ttl_ms < 1:
        raise ProtocolError(f"native envelope: ttl_ms {ttl_ms!r} is not a positive int")
    if type(mid) is not int or not 0 <= mid <= MAX_MESSAGE_ID:
        raise ProtocolError(f"native envelope: message id {_short(mid)} is out of range")
    raise ProtocolError("native envelope: invalid")  # unreachable: one check above failed


def _message(
    fields: list[Any], previous_hop: bytes, local_uuid: bytes, deadline: float, priority: Priority
) -> Message:
    _, kind, source, destination, command, mid, payload, _, _, _ = fields
    try:
        return Message(
            source,
            destination,
            command,
            deadline,
            _KINDS[kind],
            payload,
            mid,
            priority,
            previous_hop,
            local_uuid,
        )
    except MessageError as exc:
        raise ProtocolError(f"native envelope: {exc}") from exc


def _unpack(frame: object) -> list[Any]:
    try:  # msgpack reads any buffer (zmq.Frame too) without a copy first
        fields = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # any malformed input: msgpack raises many kinds
        raise ProtocolError(f"native envelope: not MessagePack ({type(exc).__name__})") from exc
    if type(fields) is not list or len(fields) != _FIELDS:
        raise ProtocolError(f"native envelope: not an array of {_FIELDS} fields")
    return fields


def _identity(frame: object) -> bytes:
    try:
        return frame if type(frame) is bytes else memoryview(frame).tobytes()  # type: ignore[arg-type]
    except Exception as exc:
        raise ProtocolError("native envelope: the identity frame is not bytes") from exc


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def plain(value: object) -> object:
    """msgpack's ``default``: any read-only mapping packs as a map (shared with
    ``codec``)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, int):  # msgpack hands over the ints it cannot pack
        raise OverflowError("int outside MessagePack's range -2**63..2**64-1")
    raise TypeError(f"cannot serialize {type(value).__name__!r} object")
