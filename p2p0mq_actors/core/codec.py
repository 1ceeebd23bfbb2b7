"""The p2p0mq-compatible wire codec: a ``Message`` to frames and back.

Rules:
- Pure: frames in, ``Message`` out, and back. No sockets, no clock (the
  caller passes ``now``), no logging.
- ``encode`` gives the frames a DEALER connected to the next hop sends: 5 for
  p2p0mq 0.1.0, 6 for 0.1.1. The receiving ROUTER prepends the sender's
  identity, so ``decode`` takes 6 (0.1.0) or 7 (0.1.1) frames.
- An empty source frame means the previous hop; an empty destination frame
  means the receiver. ``encode`` leaves them empty in exactly those cases,
  which is all a 0.1.0 peer understands.
- Payloads are MessagePack maps with str keys; binary and text stay distinct
  (``use_bin_type=True`` / ``raw=False``), as in p2p0mq. Nested map keys
  may be str, bytes, numbers, bools, nil or ext types (``unpacking.py``:
  ``encode`` sends others too, and ``decode`` refuses them).
- ``Encoder`` is ``encode`` for one shape with a msgpack packer of its own:
  ``msgpack.packb`` builds a packer on every call (about 0.5 µs of the
  1.7 µs a native encode took). A packer is not thread-safe: one ``Encoder``
  per user thread (a PeerConnection has one).
- An ``Encoder`` given ``max_frame`` refuses a message whose largest frame
  (the payload's, on p2p0mq's shapes; the envelope, natively) would be
  longer, as it refuses a payload it cannot pack: a receiver whose limit it
  passes drops the whole connection (libzmq's ``MAXMSGSIZE``), and with it
  whatever else was on the way.
- ``decode`` is total: whatever it is given, it returns a valid ``Message`` or
  raises ``ProtocolError`` chained (``from``) to the cause. Its messages name
  the frame and what was wrong, and never dump a whole frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from enum import Enum
from functools import partial
from typing import Any, Final

import msgpack

from .errors import ConfigurationError, EncodeError, MessageError, ProtocolError, short_repr
from .message import (
    DEFAULT_TTL,
    MAX_COMMAND_LEN,
    MAX_MESSAGE_ID,
    MAX_UUID_LEN,
    Kind,
    Message,
    Priority,
    assemble_unchecked,
    make_message,
    next_message_id,
    plain_payload,
    uuid_ok,
)
from .native import decode_native, decode_native_many, encode_native, encode_native_body, plain
from .unpacking import unpack


class WireShape(Enum):
    """The frame layout of a p2p0mq version."""

    V010 = "0.1.0"
    """6 frames as received (no message-id frame); the sender sends 5."""
    V011 = "0.1.1"
    """7 frames as received; the sender sends 6."""
    NATIVE = "native"
    """p2p0mq-actors' own envelope: one frame (2 as received); see ``native.py``."""


MAX_MESSAGE_SIZE: Final = 16 * 2**20
"""The default largest frame, in bytes, a node sends to or takes from a
peer (``Node(max_message_size=...)``)."""
MIN_MESSAGE_SIZE: Final = 4096
"""The least such limit: libzmq applies it to the CURVE handshake's own
commands too (a few hundred bytes)."""
MAX_MESSAGE_SIZE_LIMIT: Final = 2**62
"""The most it may be: libzmq's ``MAXMSGSIZE`` is an int64, checked on the
frame as it comes encrypted (a few bytes longer)."""
_NO_LIMIT: Final = 2**63


def wire_shape(value: object, what: str = "shape") -> WireShape:
    """``value`` as a ``WireShape``: one, or its value (``"0.1.0"``,
    ``"0.1.1"``, ``"native"``).

    Raises:
        ConfigurationError: anything else (``what`` names the setting).
    """
    if type(value) is WireShape:
        return value
    if type(value) is str:
        try:
            return WireShape(value)
        except ValueError:
            pass
    choices = ", ".join(repr(w.value) for w in WireShape)
    raise ConfigurationError(f"unknown {what} {value!r}: use a WireShape or one of {choices}")


def check_message_size(value: object) -> int | None:
    """``value`` if it is a valid frame size limit (None: no limit).

    Raises:
        ConfigurationError: not None nor an int from ``MIN_MESSAGE_SIZE``
            to ``MAX_MESSAGE_SIZE_LIMIT``.
    """
    if value is None or (
        type(value) is int and MIN_MESSAGE_SIZE <= value <= MAX_MESSAGE_SIZE_LIMIT
    ):
        return value
    raise ConfigurationError(
        f"max_message_size must be None (no limit) or an int from {MIN_MESSAGE_SIZE} "
        f"to 2**62 (bytes), not {short_repr(value)}"
    )


_FRAME_COUNTS: Final = (6, 7)  # as received: 0.1.0, 0.1.1
_BYTES_ONLY: Final = frozenset({bytes})
_KIND_FRAMES: Final = {Kind.REQUEST: b"\x01", Kind.REPLY: b"\x02"}
_KINDS: Final = {b"\x01": Kind.REQUEST, b"\x02": Kind.REPLY}
_EMPTY_MAP: Final = b"\x80"
_FIXINTS: Final = tuple(bytes((n,)) for n in range(0x80))
_UINT8: Final = struct.Struct(">BB")
_UINT16: Final = struct.Struct(">BH")
_UINT32: Final = struct.Struct(">BI")
_UINT64: Final = struct.Struct(">BQ")
_unpackb: Final = msgpack.unpackb
_UINT_SIZES: Final = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}  # uint 8..64 head: frame length
_PREVIEW: Final = 16
_FIELD_ORIGINS: Final = {
    "source": "frame 1 (source)",
    "destination": "local uuid",
    "next_hop": "local uuid",
    "command": "frame 4 (command)",
    "message_id": "new_id()",
    "deadline": "now + ttl",
    "priority": "priority",
}


class Encoder:
    """``encode`` for one wire shape, reusing one msgpack packer; for one
    thread at a time.

    Args:
        shape: the wire shape.
        max_frame: the longest frame it may give, in bytes (None: no limit);
            a message that would need a longer one raises ``EncodeError``.

    Example::

        encoder = Encoder(WireShape.NATIVE)
        frames = encoder(message, now)
    """

    __slots__ = ("limit", "max_frame", "pack", "shape")

    def __init__(self, shape: WireShape = WireShape.V011, max_frame: int | None = None) -> None:
        self.shape = shape
        self.max_frame = check_message_size(max_frame)
        self.limit = _NO_LIMIT if max_frame is None else max_frame
        """``max_frame``, or 2**63 for none: what frames are compared with."""
        # Public: a caller may hand it to ``native.encode_native_body`` itself.
        self.pack = msgpack.Packer(use_bin_type=True, default=plain).pack

    def __call__(self, message: Message, now: float = 0.0) -> list[bytes]:
        """The frames for ``message``, as ``encode(message, self.shape, now)``.

        Raises:
            EncodeError: the payload cannot be packed as MessagePack, or a
                frame would be longer than ``max_frame``.
        """
        frames = _encode(message, self.shape, now, self.pack)
        # The last frame is the longest: the payload, or the envelope; the
        # others are at most 255 bytes (uuids, command) and the limit is not.
        if len(frames[-1]) > self.limit:
            raise too_large(message, len(frames[-1]), self.limit)
        return frames

    def many(self, messages: Sequence[Message], now: float = 0.0) -> list[list[bytes]]:
        """The frames of each of ``messages``, in order, up to the first whose
        encoding raises anything, or is too long (left out, with all after
        it): calling the encoder on that one names the fault, for that
        message alone.

        On p2p0mq's shapes, one loop with the packer at hand, not
        ``encode``'s calls for each message: 0.39 against 0.69 µs a message
        (measured, hot). A connection encodes a plan's messages so.
        """
        out: list[list[bytes]] = []
        if self.shape is WireShape.NATIVE:
            for message in messages:
                try:
                    out.append(self(message, now))
                except Exception:
                    break
            return out
        append, frames_of = out.append, _p2p0mq_frames
        pack, with_id, limit = self.pack, self.shape is WireShape.V011, self.limit
        for message in messages:
            try:
                frames = frames_of(message, pack, with_id)
            except Exception:  # not only msgpack's refusals: a payload's own bug too
                break
            if len(frames[-1]) > limit:
                break
            append(frames)
        return out

    def body(self, message: Message, now: float) -> bytes:
        """``message``'s native envelope body, for a batch frame
        (``native.batch_frame``); for ``WireShape.NATIVE`` only.

        Raises:
            EncodeError: the payload cannot be packed as MessagePack, or the
                body would not fit a frame of ``max_frame`` bytes.
        """
        body = encode_native_body(message, now, pack=self.pack)
        if len(body) + 1 > self.limit:  # as a frame of its own: a byte more
            raise too_large(message, len(body) + 1, self.limit)
        return body

    def __repr__(self) -> str:
        limit = "" if self.max_frame is None else f", max_frame={self.max_frame}"
        return f"Encoder({self.shape}{limit})"


def too_large(message: Message, size: int, limit: int) -> EncodeError:
    """The error of a message whose frame would be ``size`` bytes, over ``limit``."""
    return EncodeError(
        f"message #{message.message_id} {message.command!r} needs a frame of {size:,} "
        f"bytes, over the limit of {limit:,} (max_message_size)"
    )


def encode(message: Message, shape: WireShape = WireShape.V011, now: float = 0.0) -> list[bytes]:
    """The frames to send for ``message`` on a DEALER connected to its next hop.

    Args:
        message: The message; its ``previous_hop`` is the sending node.
        shape: ``WireShape.V011`` (with the message id), ``WireShape.V010``
            for a p2p0mq 0.1.0 peer (without it), or ``WireShape.NATIVE``.
        now: The current monotonic time (the native envelope carries the
            remaining TTL; the p2p0mq shapes carry none).

    Raises:
        EncodeError: the payload cannot be packed as MessagePack.
    """
    return _encode(message, shape, now, None)


def _encode(
    message: Message, shape: WireShape, now: float, pack: Callable[[object], bytes] | None
) -> list[bytes]:
    if shape is WireShape.NATIVE:
        return [encode_native(message, now, pack=pack)]
    try:
        return _p2p0mq_frames(message, pack or _packb, shape is WireShape.V011)
    except _REFUSALS as exc:
        raise EncodeError(
            f"cannot encode the payload of message #{message.message_id} "
            f"{message.command!r}: {_reason(exc)}"
        ) from exc


def _p2p0mq_frames(
    message: Message, pack: Callable[[object], bytes], with_id: bool
) -> list[bytes]:
    """p2p0mq's frames of ``message`` (0.1.1 ``with_id``, else 0.1.0);
    raises what ``pack`` raises for a payload it refuses."""
    payload, source, destination = message.payload, message.source, message.destination
    packed = pack(payload) if payload else _EMPTY_MAP
    frames = [
        b"" if source == message.previous_hop else source,
        b"" if destination == message.next_hop else destination,
        _KIND_FRAMES[message.kind],
        message.command,
    ]
    if with_id:
        number = message.message_id
        frames.append(_FIXINTS[number] if number < 0x80 else _pack_uint(number))
    frames.append(packed)
    return frames


_REFUSALS: Final = (TypeError, ValueError, OverflowError)
"""msgpack's ways to refuse a value."""


def decode(
    frames: object,
    local_uuid: bytes,
    *,
    now: float,
    ttl: float = DEFAULT_TTL,
    new_id: Callable[[], int] = next_message_id,
    priority: Priority = Priority.MEDIUM,
) -> Message:
    """The message in ``frames``, as a ROUTER bound by ``local_uuid`` received them.

    Args:
        frames: A list (or tuple) of 6 frames (p2p0mq 0.1.0), 7 (0.1.1) or
            2 (native), each bytes-like (bytes, bytearray, memoryview,
            ``zmq.Frame``).
        local_uuid: This node's uuid: the next hop, and the destination when
            the destination frame is empty.
        now: The current monotonic time; the deadline is ``now + ttl``.
        ttl: Seconds the message may live from now (for a native message:
            the most it may live, whatever TTL it carries).
        new_id: Gives the message id of a 0.1.0 message, which carries none.
        priority: The lane the message will wait in.

    Raises:
        ProtocolError: for anything but a valid message, never another error.
    """
    if type(frames) in (list, tuple) and len(frames) == 2:  # type: ignore[arg-type]
        return decode_native(
            frames[0],  # type: ignore[index]
            frames[1],  # type: ignore[index]
            local_uuid,
            now=now,
            max_ttl=ttl,
            priority=priority,
        )
    return decode_p2p0mq(frames, local_uuid, now + ttl, priority, new_id)


def decode_p2p0mq(
    frames: object,
    local_uuid: bytes,
    deadline: float,
    priority: Priority = Priority.MEDIUM,
    new_id: Callable[[], int] = next_message_id,
) -> Message:
    """``decode`` of p2p0mq's shapes only (6 or 7 frames; any other count
    is refused), for a caller that reads many messages at one time and
    computes their ``deadline`` (``now + ttl``) once: the Receiver, which
    saves ``decode``'s keywords and its test for the native shape (0.2 us a
    message, measured).

    Raises:
        ProtocolError: for anything but a valid message, never another error.
    """
    if type(frames) is list and len(frames) == 7:
        # The quick path; anything it leaves is built, or named, below.
        a, b, c, d, e, f, g = frames
        if (
            type(a) is bytes
            and type(b) is bytes
            and type(c) is bytes
            and type(d) is bytes
            and type(e) is bytes
            and type(f) is bytes
            and type(g) is bytes
            and _context_ok(local_uuid, deadline, priority)
        ):
            received = _read_011((local_uuid, deadline, priority), a, b, c, d, e, f, g)
            if received is not None:
                return received
    parts = _as_frames(frames)
    message_id = _message_id(parts[5]) if len(parts) == 7 else None
    return _build(
        parts,
        local_uuid,
        deadline=deadline,
        priority=priority,
        message_id=message_id,
        new_id=new_id,
    )


QUICK_PAYLOAD: Final = 16 * 1024
"""The longest payload frame ``p2p0mq_reader``'s readers decode, in bytes:
a transport's reader runs while it reads (the Receiver's, under the turns
lock), which a long payload's decoding would hold up; ``decode_p2p0mq``
decodes longer ones after the read."""

Reader011 = Callable[[bytes, bytes, bytes, bytes, bytes, bytes, bytes], "Message | None"]
"""A reader of 0.1.1 messages (``p2p0mq_reader``)."""


def p2p0mq_reader(
    local_uuid: bytes, deadline: float, priority: Priority = Priority.MEDIUM
) -> Reader011 | None:
    """A reader of p2p0mq 0.1.1 messages for a transport that reads many at
    one time (the Receiver's, ``CurveRouter.recv_batch``): given the
    sender (the previous hop) and a message's six frames, each ``bytes``,
    it gives the message ``decode_p2p0mq`` gives for those seven, with
    ``deadline`` and ``priority``, when every field passes its quick
    checks, and None for anything else, never raising: ``decode_p2p0mq``
    of the frames then builds the message the long way, or names its
    fault; so it does for a payload over ``QUICK_PAYLOAD`` bytes. Reading
    the frames into its arguments, not a list, and building the message
    at once saves the Receiver about 0.45 us a message (measured, CURVE,
    one process).

    None if ``local_uuid``, ``deadline`` or ``priority`` are not ones it
    takes quickly (a deadline must be a finite float).
    """
    if not _context_ok(local_uuid, deadline, priority):
        return None
    read: Reader011 = partial(_read_011, (local_uuid, deadline, priority))
    return read


def _context_ok(local_uuid: object, deadline: object, priority: object) -> bool:
    return (
        type(deadline) is float
        and deadline - deadline == 0.0  # finite
        and type(priority) is Priority
        and uuid_ok(local_uuid)
    )


def _read_011(  # noqa: PLR0917 - a message's frames, in order
    context: tuple[bytes, float, Priority],
    previous: bytes,
    source: bytes,
    destination: bytes,
    kind_frame: bytes,
    command: bytes,
    mid: bytes,
    payload: bytes,
) -> Message | None:
    """``p2p0mq_reader``'s reader, ``context`` being its arguments (checked)."""
    kind = _KINDS.get(kind_frame)
    if kind is None or not previous or len(payload) > QUICK_PAYLOAD:
        return None
    if len(mid) == 1 and mid[0] < 0x80:
        number = mid[0]
    elif _UINT_SIZES.get(mid[0] if mid else 0) == len(mid):
        number = int.from_bytes(mid[1:], "big")
    else:
        return None  # another encoding of an id (valid or not): the long way
    try:
        values = _unpackb(payload, raw=False)  # str and bytes keys (see unpacking.py)
    except Exception:
        return None
    if not plain_payload(values):
        return None
    local_uuid, deadline, priority = context
    source = source or previous
    destination = destination or local_uuid
    if not (
        0 < len(source) <= MAX_UUID_LEN
        and 0 < len(destination) <= MAX_UUID_LEN
        and 0 < len(command) <= MAX_COMMAND_LEN
        and len(previous) <= MAX_UUID_LEN
        and source[0] != 0
        and destination[0] != 0
        and previous[0] != 0
    ):
        return None
    return assemble_unchecked(
        source,
        destination,
        command,
        deadline,
        kind,
        values,
        number,
        priority,
        previous,  # previous hop
        local_uuid,  # next hop
        0,  # attempts
    )


def decode_many(
    frames: object,
    local_uuid: bytes,
    *,
    now: float,
    ttl: float = DEFAULT_TTL,
    priority: Priority = Priority.MEDIUM,
) -> tuple[list[Message], list[ProtocolError]]:
    """The messages in ``frames``, which may be a native batch (see
    ``native.py``), in order, and the errors of the batch's envelopes that
    were refused; any other frames give one message, as ``decode``.

    Raises:
        ProtocolError: the frames as a whole are not a valid message or batch.
    """
    if type(frames) in (list, tuple) and len(frames) == 2:  # type: ignore[arg-type]
        return decode_native_many(
            frames[0],  # type: ignore[index]
            frames[1],  # type: ignore[index]
            local_uuid,
            now=now,
            max_ttl=ttl,
            priority=priority,
        )
    return [decode(frames, local_uuid, now=now, ttl=ttl, priority=priority)], []


def _build(
    parts: list[bytes],
    local_uuid: bytes,
    *,
    deadline: float,
    priority: Priority,
    message_id: int | None,
    new_id: Callable[[], int],
) -> Message:
    kind = _kind(parts[3])
    payload = _payload(len(parts) - 1, parts[-1])
    try:
        return make_message(  # positional: the hot path of every received message
            parts[1] or parts[0],  # source
            parts[2] or local_uuid,  # destination
            parts[4],  # command
            deadline,
            kind,
            payload,
            new_id() if message_id is None else message_id,
            priority,
            parts[0],  # previous hop
            local_uuid,  # next hop
            0,  # attempts
        )
    except MessageError as exc:
        raise ProtocolError(f"{_field_origin(exc.field, parts)}: {exc}") from exc


def _packb(value: object) -> bytes:
    """``msgpack.packb`` as an ``Encoder``'s packer packs."""
    packed: bytes = msgpack.packb(value, use_bin_type=True, default=plain)
    return packed


def _pack_uint(value: int) -> bytes:
    """MessagePack's smallest form of an unsigned int, as msgpack.packb gives it
    (about three times faster for the one int every message carries)."""
    if value < 0x80:
        return _FIXINTS[value]
    if value <= 0xFF:
        return _UINT8.pack(0xCC, value)
    if value <= 0xFFFF:
        return _UINT16.pack(0xCD, value)
    if value <= 0xFFFFFFFF:
        return _UINT32.pack(0xCE, value)
    return _UINT64.pack(0xCF, value)


def _as_frames(frames: object) -> list[bytes]:
    if not isinstance(frames, (list, tuple)) or type(frames) not in (list, tuple):
        raise ProtocolError(f"frames must be a list of bytes-like frames, not {_type(frames)}")
    if len(frames) not in _FRAME_COUNTS:
        raise ProtocolError(f"expected 6 frames (p2p0mq 0.1.0) or 7 (0.1.1), got {len(frames)}")
    if _BYTES_ONLY.issuperset(map(type, frames)):  # as the Receiver gives them
        parts: list[bytes] = list(frames)
    else:
        parts = [_as_bytes(index, frame) for index, frame in enumerate(frames)]
    if not parts[0]:  # Message would quietly take the source instead
        raise ProtocolError("frame 0 (previous hop): must not be empty")
    return parts


def _as_bytes(index: int, frame: object) -> bytes:
    if type(frame) is bytes:
        return frame
    try:
        # A zmq.Frame keeps a bytes copy of itself: four times cheaper than
        # going through a memoryview (0.07 against 0.23 us a frame).
        data = getattr(frame, "bytes", None)
        if type(data) is bytes:
            return data
        return memoryview(frame).tobytes()  # type: ignore[arg-type]
    except Exception as exc:  # a Python-level __buffer__ (3.12+) may raise anything
        raise ProtocolError(f"frame {index}: must be bytes-like, not {_type(frame)}") from exc


def _kind(frame: bytes) -> Kind:
    kind = _KINDS.get(frame)
    if kind is None:
        raise ProtocolError(
            f"frame 3 (kind): must be b'\\x01' (request) or b'\\x02' (reply), "
            f"not {_preview(frame)}"
        )
    return kind


def _message_id(frame: bytes) -> int:
    value = _unpack(5, "message id", frame)
    if type(value) is not int or not 0 <= value <= MAX_MESSAGE_ID:
        raise ProtocolError(
            f"frame 5 (message id): must be a MessagePack int in 0..2**64-1, not {_preview(value)}"
        )
    return value


def _payload(index: int, frame: bytes) -> dict[str, Any]:
    value = _unpack(index, "payload", frame)
    if type(value) is not dict:
        raise ProtocolError(
            f"frame {index} (payload): must be a MessagePack map, not {_preview(value)}"
        )
    if plain_payload(value):
        return value
    for key in value:  # as Message checks them, but naming the frame
        if type(key) is not str:
            raise ProtocolError(
                f"frame {index} (payload): map keys must be str, not {_preview(key)}"
            )
    return value


def _unpack(index: int, name: str, frame: bytes) -> object:
    try:
        return unpack(frame)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        # ValueError covers truncated and trailing data, bad UTF-8 and nesting
        # too deep; TypeError an unhashable map key.
        raise ProtocolError(
            f"frame {index} ({name}): not one MessagePack value: {_reason(exc)}"
        ) from exc


def _field_origin(field: str, parts: list[bytes]) -> str:
    """Where the value of a refused ``Message`` field came from."""
    if field == "previous_hop" or (field == "source" and not parts[1]):
        return "frame 0 (previous hop)"
    if field == "destination" and parts[2]:
        return "frame 2 (destination)"
    return _FIELD_ORIGINS.get(field, field)


def _preview(value: object) -> str:
    """A short repr: long bytes and str are cut, containers only named (they
    can be huge)."""
    if isinstance(value, (bytes, str)):
        if len(value) <= _PREVIEW:
            return repr(value)
        unit = "bytes" if isinstance(value, bytes) else "chars"
        return f"{value[:_PREVIEW]!r}... ({len(value)} {unit})"
    if value is None or isinstance(value, (int, float)):
        return repr(value)
    return type(value).__name__


def _reason(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return name if not text else f"{name}: {text[:80]}"


def _type(value: object) -> str:
    return type(value).__name__
