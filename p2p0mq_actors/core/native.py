"""The native envelope: one MessagePack frame per message, between
p2p0mq-actors peers.

Rules:
- The frame is a MessagePack array ``[version, kind, source, destination,
  command, message id, payload, ttl_ms, hops, trace]``: version 1; kind 1
  (request) or 2 (reply); uuids and command as bin; the remaining time to
  live in whole milliseconds (at least 1); the number of hops taken so far
  (0 to ``MAX_HOPS``); a trace id (bin, at most ``MAX_TRACE_LEN`` bytes) or
  nil. A receiver refuses any other version, and an envelope whose hops or
  trace break these rules (they carry nothing yet, but a receiver that took
  any value now could not give them a meaning later).
- A ROUTER receives it as two frames: the sender's identity (the previous
  hop) and the envelope. ``decode_native`` is total, like ``codec.decode``.
  A frame whose previous hop is not a uuid (empty, say) is refused whole.
- A batch frame carries several messages to one peer: ``[version, [body,
  body, ...]]``, each body being an envelope's nine fields after the version
  (``encode_native_body``), at most ``MAX_BATCH`` of them. A single
  envelope is a body behind its own version, byte for byte
  (``single_frame``), so a sender packs each message once either way.
  ``decode_native_many`` reads both; a bad body costs that message only.
- The deadline travels as a remaining TTL, since monotonic clocks differ from
  host to host: ``deadline = now + ttl_ms / 1000`` on arrival, capped at
  ``max_ttl`` seconds so a peer cannot make a message immortal.
- Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgpack

from .errors import EncodeError, MessageError, ProtocolError, detached, short_repr
from .message import (
    DEFAULT_TTL,
    MAX_MESSAGE_ID,
    MAX_UUID_LEN,
    Kind,
    Message,
    Priority,
    assemble_unchecked,
    ends_ok,
    make_message,
    plain_payload,
    uuid_ok,
)
from .unpacking import holds_refused, unpack_marking

NATIVE_VERSION: Final = 1
MAX_BATCH: Final = 4096
"""The most messages a batch frame may carry; a larger one is refused whole."""
_FIELDS: Final = 10
_BODY_FIELDS: Final = _FIELDS - 1
_PAYLOAD: Final = 5
"""Where a body's payload is (kind, source, destination, command, id, payload...)."""
_SINGLE_HEAD: Final = bytes((0x90 | _FIELDS, NATIVE_VERSION))  # fixarray(10), version
_BATCH_HEAD: Final = bytes((0x92, NATIVE_VERSION))  # fixarray(2), version
MAX_HOPS: Final = 255
"""The most hops an envelope may say it took (a message past it is looping)."""
MAX_TRACE_LEN: Final = 64
"""The longest trace id, in bytes (a W3C trace id is 16)."""
_KINDS: Final = {1: Kind.REQUEST, 2: Kind.REPLY}
_MAX_TTL_MS: Final = 2**32 - 1
_FOREVER: Final = float("inf")


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
    return single_frame(encode_native_body(message, now, hops=hops, trace=trace, pack=pack))


def encode_native_body(
    message: Message,
    now: float,
    *,
    hops: int = 0,
    trace: bytes | None = None,
    pack: Callable[[object], bytes] | None = None,
) -> bytes:
    """``message``'s envelope without its version: what a batch frame
    carries per message (``batch_frame``), or one frame (``single_frame``).

    Raises:
        EncodeError: the payload cannot be packed as MessagePack.
    """
    try:
        if pack is None:
            return msgpack.packb(  # type: ignore[no-any-return]
                _row(message, now, hops, trace), use_bin_type=True, default=plain
            )
        return pack(_row(message, now, hops, trace))
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(
            f"cannot encode message #{message.message_id} {message.command!r} natively: {exc}"
        ) from exc


def encode_native_batch(
    messages: Sequence[Message],
    now: float,
    *,
    pack: Callable[[object], bytes] | None = None,
) -> bytes:
    """The batch frame of ``messages`` (1 to ``MAX_BATCH``, no hops, no trace),
    packed in one call: the same bytes as ``batch_frame`` of their bodies,
    for a third less work a message (what a connection sends a plan's fast
    messages with).

    Raises:
        EncodeError: a payload cannot be packed (which one is not said:
            ``encode_native_body`` names it).
        ValueError: not 1 to ``MAX_BATCH`` messages.
    """
    count = len(messages)
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"a batch frame carries 1 to {MAX_BATCH} messages, not {count}")
    try:
        rows = [_row(message, now, 0, None) for message in messages]
        if pack is None:
            packed: bytes = msgpack.packb(rows, use_bin_type=True, default=plain)
            return _BATCH_HEAD + packed
        return _BATCH_HEAD + pack(rows)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode a batch of {count} messages natively: {exc}") from exc


def _row(message: Message, now: float, hops: int, trace: bytes | None) -> list[Any]:
    """A body's nine fields, as MessagePack packs them."""
    if type(hops) is not int or hops or trace is not None:  # (a connection's: 0, None)
        _check_hops_and_trace(hops, trace)
    # Clamped without min/max calls (a connection encodes every message it
    # sends), and before it is made an int: a far deadline gives infinity.
    remaining = (message.deadline - now) * 1000
    if 1 <= remaining <= _MAX_TTL_MS:
        ttl_ms = int(remaining)
    else:
        ttl_ms = 1 if remaining < 1 else _MAX_TTL_MS
    return [
        message.kind,  # an IntEnum: msgpack packs an int subclass as the int (strict_types off)
        message.source,
        message.destination,
        message.command,
        message.message_id,
        message.payload,
        ttl_ms,
        hops,
        trace,
    ]


def single_frame(body: bytes) -> bytes:
    """The frame of one message from its body (``encode_native_body``)."""
    return _SINGLE_HEAD + body[1:]  # the body's own head is a fixarray(9)


def batch_frame(bodies: Sequence[bytes]) -> bytes:
    """The frame of several messages (1 to ``MAX_BATCH``) from their bodies, in order."""
    count = len(bodies)
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"a batch frame carries 1 to {MAX_BATCH} messages, not {count}")
    if count < 16:
        head = _BATCH_HEAD + bytes((0x90 | count,))
    else:
        head = _BATCH_HEAD + b"\xdc" + count.to_bytes(2, "big")
    return head + b"".join(bodies)


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
        ProtocolError: for anything but a valid version-1 envelope (a batch
            frame too: ``decode_native_many`` reads those).
    """
    fields, refused = _unpack(frame)
    if len(fields) != _FIELDS:
        raise ProtocolError(f"native envelope: not an array of {_FIELDS} fields")
    _check_version(fields[0])
    context = (_identity(previous_hop), local_uuid, now, max_ttl, priority)
    body = fields[1:]
    messages, errors = _read_bodies([_unless_refused(body) if refused else body], context)
    if errors:
        raise errors[0]
    return messages[0]


def decode_native_many(
    previous_hop: object,
    frame: object,
    local_uuid: bytes,
    *,
    now: float,
    max_ttl: float = DEFAULT_TTL,
    priority: Priority = Priority.MEDIUM,
) -> tuple[list[Message], list[ProtocolError]]:
    """The messages in a native frame, one envelope or a batch, in order, and
    the errors of the batch's bodies that were refused (one each).

    Raises:
        ProtocolError: the frame as a whole is not a valid envelope or batch.
    """
    fields, refused = _unpack(frame)
    _check_version(fields[0])
    context = (_identity(previous_hop), local_uuid, now, max_ttl, priority)
    if len(fields) == _FIELDS:
        bodies: object = [fields[1:]]
    else:
        bodies = fields[1]
        if type(bodies) is not list or not 1 <= len(bodies) <= MAX_BATCH:
            raise ProtocolError(f"native batch: not an array of 1 to {MAX_BATCH} envelopes")
    if refused:  # each body with a map it refused is refused alone
        bodies = [_unless_refused(body) for body in bodies]  # type: ignore[attr-defined]
    return _read_bodies(bodies, context)  # type: ignore[arg-type]


_Context = tuple[bytes, bytes, float, float, Priority]
"""(previous hop, local uuid, now, max_ttl, priority): the same for every
message of a frame."""


def _read_bodies(
    bodies: list[object], context: _Context
) -> tuple[list[Message], list[ProtocolError]]:
    """The messages of envelope bodies (nine fields each), in order, and the
    errors of those refused (one each).

    A body whose fields all pass the checks here is assembled at once;
    anything unusual goes through ``make_message``, which names it (1.0
    against 1.3 us a message, measured).
    """
    hop, local_uuid, now, max_ttl, priority = context
    # What every message of the frame shares, checked once.
    shared_ok = (
        uuid_ok(hop)
        and uuid_ok(local_uuid)
        and type(now) is float
        and now - now == 0.0  # finite
        and type(max_ttl) is float
        and max_ttl > -_FOREVER  # nor NaN: the deadlines are finite
        and type(priority) is Priority
    )
    if not shared_ok and not uuid_ok(hop):
        raise _hop_error(hop)
    # The ends and command of the last message assembled: a frame's messages
    # mostly share them, so they are checked once and their objects shared.
    ends: tuple[bytes, bytes, bytes, bytes, bytes] | None = None
    messages: list[Message] = []
    errors: list[ProtocolError] = []
    append = messages.append
    for body in bodies:
        try:
            if type(body) is not list or len(body) != _BODY_FIELDS:
                if type(body) is _Refused:
                    raise body.error
                raise ProtocolError(f"native batch: an envelope is not an array of {_BODY_FIELDS}")
            kind, source, destination, command, mid, payload, ttl_ms, hops, trace = body
            if not (
                type(kind) is int
                and kind in _KINDS
                and type(ttl_ms) is int
                and ttl_ms >= 1
                and type(mid) is int
                and 0 <= mid <= MAX_MESSAGE_ID
                and type(hops) is int
                and 0 <= hops <= MAX_HOPS
                and (trace is None or (type(trace) is bytes and len(trace) <= MAX_TRACE_LEN))
            ):
                raise _numbers_error(kind, ttl_ms, mid, hops, trace)
            build: Callable[..., Message] = make_message
            if (
                ends is not None
                and source == ends[0]
                and destination == ends[1]
                and command == ends[2]  # (of what msgpack gives, only bytes equals bytes)
            ):
                source, destination, command, previous, following = ends
                if plain_payload(payload):
                    build = assemble_unchecked
            else:
                # the ends themselves when equal, as make_message keeps them
                previous = source if source == hop else hop
                following = destination if destination == local_uuid else local_uuid
                if shared_ok and ends_ok(source, destination, command):
                    ends = (source, destination, command, previous, following)
                    if plain_payload(payload):
                        build = assemble_unchecked
            append(
                build(
                    source,
                    destination,
                    command,
                    now + (ttl if (ttl := ttl_ms / 1000) < max_ttl else max_ttl),
                    _KINDS[kind],
                    payload,
                    mid,
                    priority,
                    previous,
                    following,
                    0,  # attempts
                )
            )
        # Each error is kept detached from its traceback, which holds this
        # frame (the frame's bodies and messages, and its callers': the
        # Receiver's whole drain), in a cycle through ``errors``.
        except ProtocolError as exc:
            errors.append(detached(exc))
        except MessageError as exc:
            error = ProtocolError(f"native envelope: {exc}")
            error.__cause__ = detached(exc)
            errors.append(error)
    return messages, errors


def _hop_error(hop: bytes) -> ProtocolError:
    """The error of a frame from a previous hop that is not a uuid, refused
    whole, as ``codec`` refuses p2p0mq's frames: ``Message`` would take the
    source an envelope claims for an empty hop (one whose key has no owner
    and whose client announced no identity), and replies are checked
    against the hop."""
    why = f"must be the sender's uuid (1..{MAX_UUID_LEN} bytes, not starting with a zero byte)"
    cause = MessageError("previous_hop", hop, why)
    error = ProtocolError(f"native envelope: the identity frame (previous hop): {cause}")
    error.__cause__ = cause
    return error


def _check_hops_and_trace(hops: object, trace: object) -> None:
    if type(hops) is not int or not 0 <= hops <= MAX_HOPS:
        raise EncodeError(f"hops must be an int in 0..{MAX_HOPS}, not {short_repr(hops, 40)}")
    if trace is not None and (type(trace) is not bytes or len(trace) > MAX_TRACE_LEN):
        raise EncodeError(
            f"a trace id must be None or at most {MAX_TRACE_LEN} bytes, "
            f"not {short_repr(trace, 40)}"
        )


def _numbers_error(
    kind: object, ttl_ms: object, mid: object, hops: object, trace: object
) -> ProtocolError:
    """What is wrong with an envelope's kind, TTL, message id, hops or
    trace id (one of them is)."""
    if type(kind) is not int or kind not in _KINDS:
        return ProtocolError(f"native envelope: kind {short_repr(kind, 40)} is not 1 or 2")
    if type(ttl_ms) is not int or ttl_ms < 1:
        return ProtocolError(
            f"native envelope: ttl_ms {short_repr(ttl_ms, 40)} is not a positive int"
        )
    if type(mid) is not int or not 0 <= mid <= MAX_MESSAGE_ID:
        return ProtocolError(f"native envelope: message id {short_repr(mid, 40)} is out of range")
    if type(hops) is not int or not 0 <= hops <= MAX_HOPS:
        return ProtocolError(
            f"native envelope: hops {short_repr(hops, 40)} is not an int in 0..{MAX_HOPS}"
        )
    return ProtocolError(
        f"native envelope: trace id {short_repr(trace, 40)} is neither nil nor at most "
        f"{MAX_TRACE_LEN} bytes"
    )


def _check_version(version: object) -> None:
    if type(version) is not int or version != NATIVE_VERSION:
        raise ProtocolError(
            f"native envelope: version {short_repr(version, 40)} is not {NATIVE_VERSION}"
        )


def _unpack(frame: object) -> tuple[list[Any], bool]:
    """The frame's fields, and whether a map in them was refused
    (``unpacking.unpack_marking``: the message holding it is refused)."""
    try:  # msgpack reads any buffer (zmq.Frame too) without a copy first
        fields, refused = unpack_marking(frame)
    except Exception as exc:  # any malformed input: msgpack raises many kinds
        raise ProtocolError(f"native envelope: not MessagePack ({type(exc).__name__})") from exc
    if type(fields) is not list or len(fields) not in (_FIELDS, 2):
        raise ProtocolError(f"native envelope: not an array of {_FIELDS} fields (or a batch)")
    return fields, refused


class _Refused:
    """A batch's body holding a map of refused keys: its error, raised in turn."""

    __slots__ = ("error",)

    def __init__(self, error: ProtocolError) -> None:
        self.error = error


def _unless_refused(body: object) -> object:
    """``body``, or a ``_Refused`` if it holds a map ``unpack_marking`` refused."""
    error = _refused_error(body, _PAYLOAD)
    return body if error is None else _Refused(error)


def _refused_error(fields: object, payload_at: int) -> ProtocolError | None:
    """The error of envelope ``fields`` (the payload at ``payload_at``) if
    they hold a map ``unpack_marking`` refused: a payload's names the field
    (``"payload"``); elsewhere it is the frame's fault."""
    refused = holds_refused(fields)
    if refused is None:
        return None
    where = fields[payload_at] if type(fields) is list and len(fields) > payload_at else None
    if holds_refused(where) is None:
        return ProtocolError(f"native envelope: a field that is no payload: {refused.why}")
    error = ProtocolError(f"native envelope: payload: {refused.why}")
    error.__cause__ = MessageError("payload", "<a map>", refused.why)
    return error


def _identity(frame: object) -> bytes:
    try:
        return frame if type(frame) is bytes else memoryview(frame).tobytes()  # type: ignore[arg-type]
    except Exception as exc:
        raise ProtocolError("native envelope: the identity frame is not bytes") from exc


def plain(value: object) -> object:
    """msgpack's ``default``: any read-only mapping packs as a map (shared with
    ``codec``)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, int):  # msgpack hands over the ints it cannot pack
        raise OverflowError("int outside MessagePack's range -2**63..2**64-1")
    raise TypeError(f"cannot serialize {type(value).__name__!r} object")
