"""The message model.

Rules:
- A ``Message`` is immutable and validated when built: a bad field raises
  ``MessageError`` naming the field and the value; nothing half-valid exists.
- Time is absolute monotonic seconds passed in by the caller (``now``); the
  model never reads a clock. ``deadline = now + ttl`` at creation.
- ``previous_hop`` is the node that hands the message on (the sending socket's
  identity on the wire); ``next_hop`` is the peer it goes to next. Both
  default to the two ends of a direct message.
- Message ids come from one process-wide counter unless given.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Final, TypeGuard

from .checks import finite
from .errors import MessageError, short_repr

DEFAULT_TTL = 30.0
"""p2p0mq's default time-to-live, in seconds."""

MAX_UUID_LEN = 255
MAX_COMMAND_LEN = 255
MAX_MESSAGE_ID = 2**64 - 1

_ids = itertools.count(1)


def next_message_id() -> int:
    """A new message id, unique within this process (thread-safe under the GIL)."""
    return next(_ids)


class Kind(IntEnum):
    """What a message is, as the one-byte kind frame of p2p0mq says it."""

    REQUEST = 1
    REPLY = 2


class Priority(IntEnum):
    """The lane a message waits in: fast (all each round), medium (one per peer
    per round), slow (one per round)."""

    FAST = 0
    MEDIUM = 1
    SLOW = 2


_set = object.__setattr__
_new = object.__new__


@dataclass(frozen=True, slots=True, repr=False, init=False)
class Message:
    """One request or reply travelling between peers.

    Build it with ``Message.create`` (which computes the deadline from a TTL)
    or directly with an absolute ``deadline``.
    """

    source: bytes
    destination: bytes
    command: bytes
    deadline: float
    kind: Kind = Kind.REQUEST
    payload: Mapping[str, Any] = field(default_factory=dict)
    message_id: int = 0
    priority: Priority = Priority.MEDIUM
    previous_hop: bytes = b""
    next_hop: bytes = b""
    attempts: int = 0

    def __init__(  # noqa: PLR0917 - the fields, in the dataclass's order
        self,
        source: bytes,
        destination: bytes,
        command: bytes,
        deadline: float,
        kind: Kind = Kind.REQUEST,
        payload: Mapping[str, Any] | None = None,
        message_id: int = 0,
        priority: Priority = Priority.MEDIUM,
        previous_hop: bytes = b"",
        next_hop: bytes = b"",
        attempts: int = 0,
    ) -> None:
        # Built by ``make_message`` (the one place the fields are checked),
        # then its fields become this object's: the fast path, for messages
        # sent and received, calls ``make_message`` itself.
        built: Any = make_message(
            source,
            destination,
            command,
            deadline,
            kind,
            payload,
            message_id,
            priority,
            previous_hop,
            next_hop,
            attempts,
        )
        _set(self, "__class__", _Fields)
        draft: Any = self
        for name in _FIELD_NAMES:
            setattr(draft, name, getattr(built, name))
        draft.__class__ = Message

    def _validate(self) -> None:
        _check_uuid("source", self.source)
        _check_uuid("destination", self.destination)
        if self.previous_hop == b"":
            object.__setattr__(self, "previous_hop", self.source)
        else:
            _check_uuid("previous_hop", self.previous_hop)
        if self.next_hop == b"":
            object.__setattr__(self, "next_hop", self.destination)
        else:
            _check_uuid("next_hop", self.next_hop)
        _check_command(self.command)
        self._check_numbers()
        if type(self.kind) is not Kind:
            object.__setattr__(self, "kind", _enum("kind", Kind, self.kind))
        if type(self.priority) is not Priority:
            object.__setattr__(self, "priority", _enum("priority", Priority, self.priority))
        _check_payload(self.payload)

    def _check_numbers(self) -> None:
        deadline = self.deadline
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise MessageError("deadline", deadline, "must be a number of seconds")
        if not finite(deadline):
            raise MessageError("deadline", deadline, "must be finite")
        mid = self.message_id
        if isinstance(mid, bool) or not isinstance(mid, int) or not 0 <= mid <= MAX_MESSAGE_ID:
            raise MessageError("message_id", mid, f"must be an int in 0..{MAX_MESSAGE_ID}")
        tries = self.attempts
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 0:
            raise MessageError("attempts", tries, "must be an int >= 0")

    @classmethod
    def create(
        cls,
        source: bytes,
        destination: bytes,
        command: bytes,
        payload: Mapping[str, Any] | None = None,
        *,
        now: float,
        ttl: float = DEFAULT_TTL,
        kind: Kind = Kind.REQUEST,
        priority: Priority = Priority.MEDIUM,
        message_id: int | None = None,
        next_hop: bytes = b"",
    ) -> Message:
        """Build a message that lives ``ttl`` seconds from ``now``."""
        # The same make_message call as new_message's (see there, on purpose).
        if (
            type(ttl) is not float and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)))
        ) or not ttl > 0:
            raise MessageError("ttl", ttl, "must be a positive number of seconds")
        try:
            deadline = now + ttl
        except OverflowError:  # an int too large for a float
            raise MessageError("ttl", ttl, "must be a finite number of seconds") from None
        return make_message(
            source,
            destination,
            command,
            deadline,
            kind,
            {} if payload is None else payload,
            next(_ids) if message_id is None else message_id,
            priority,
            b"",
            next_hop,
            0,  # attempts
        )

    def reply(
        self,
        payload: Mapping[str, Any] | None = None,
        *,
        now: float,
        ttl: float = DEFAULT_TTL,
        priority: Priority | None = None,
    ) -> Message:
        """The reply to this request, as p2p0mq builds it: ends swapped, same id
        and command, sent back to the hop the request came from."""
        if (
            type(ttl) is not float and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)))
        ) or not ttl > 0:
            raise MessageError("ttl", ttl, "must be a positive number of seconds")
        return make_message(  # positional: a reply is built per request served
            self.destination,  # source
            self.source,  # destination
            self.command,
            now + ttl,  # deadline
            Kind.REPLY,
            {} if payload is None else payload,
            self.message_id,
            self.priority if priority is None else priority,
            b"",  # previous_hop: this node
            self.previous_hop,  # next_hop
            0,  # attempts
        )

    def retried(self) -> Message:
        """A copy with one more attempt counted."""
        return make_message(
            self.source,
            self.destination,
            self.command,
            self.deadline,
            self.kind,
            self.payload,
            self.message_id,
            self.priority,
            self.previous_hop,
            self.next_hop,
            self.attempts + 1,
        )

    def expired(self, now: float) -> bool:
        """True once ``now`` has reached the deadline."""
        return now >= self.deadline

    def __hash__(self) -> int:
        # The payload is a (mutable, unhashable) map: hash the identity fields;
        # equal messages still hash equal.
        return hash((self.source, self.destination, self.kind, self.command, self.message_id))

    def __repr__(self) -> str:
        hop = "" if self.next_hop == self.destination else f" via {self.next_hop!r}"
        return (
            f"<Message {self.kind.name.lower()} {self.command!r} #{self.message_id} "
            f"{self.source!r}->{self.destination!r}{hop} {self.priority.name} "
            f"attempts={self.attempts}>"
        )


def make_message(  # noqa: PLR0917 - the fields, in Message's order
    source: bytes,
    destination: bytes,
    command: bytes,
    deadline: float,
    kind: Kind,
    payload: Mapping[str, Any] | None,
    message_id: int,
    priority: Priority,
    previous_hop: bytes,
    next_hop: bytes,
    attempts: int,
    /,
) -> Message:
    """``Message(...)`` by the shortest way, every field given in order (None
    for an empty payload, ``b""`` for a hop that is the end itself): what
    the node calls for every message it sends or receives.

    Written by hand: the common case is checked on the arguments in one
    pass, anything unusual goes to ``Message._validate``, which names it.
    The object is built by ``assemble_unchecked`` first (see there).
    """
    if payload is None:
        payload = {}
    if previous_hop == b"":
        previous_hop = source
    if next_hop == b"":
        next_hop = destination
    draft: Any = assemble_unchecked(
        source,
        destination,
        command,
        deadline,
        kind,
        payload,
        message_id,
        priority,
        previous_hop,
        next_hop,
        attempts,
    )
    if not (
        ends_ok(source, destination, command)
        # the hops are most often the very same objects as the ends
        and (previous_hop is source or uuid_ok(previous_hop))
        and (next_hop is destination or uuid_ok(next_hop))
        and type(message_id) is int
        and 0 <= message_id <= MAX_MESSAGE_ID
        and type(attempts) is int
        and attempts >= 0
        and type(deadline) is float
        and deadline - deadline == 0.0  # finite
        and type(kind) is Kind
        and type(priority) is Priority
        and plain_payload(payload)
    ):
        draft._validate()  # raises, naming the field (or accepts a read-only mapping)
    result: Message = draft
    return result


def new_message(  # noqa: PLR0917 - Message.create's arguments, in its order
    source: bytes,
    destination: bytes,
    command: bytes,
    payload: Mapping[str, Any] | None,
    now: float,
    ttl: float,
    kind: Kind,
    priority: Priority,
    /,
) -> Message:
    """``Message.create(source, destination, command, payload, now=now,
    ttl=ttl, kind=kind, priority=priority)`` by the shortest way: what the
    node calls for every message an application sends (its keywords and
    checks cost 0.15-0.2 us more a message, measured). A ``ttl`` that is
    not a positive float goes to ``Message.create``, which takes ints and
    names what is wrong.

    The ``make_message`` call below is ``create``'s own, kept twice on
    purpose: ``create`` routed through here cost it 0.09 us a message
    (0.98 -> 1.07 us, measured), and the bench's codec ceilings build
    with ``create``. A change to one call belongs in both."""
    if type(ttl) is not float or not ttl > 0.0:
        return Message.create(
            source, destination, command, payload, now=now, ttl=ttl, kind=kind, priority=priority
        )
    return make_message(
        source,
        destination,
        command,
        now + ttl,
        kind,
        {} if payload is None else payload,
        next(_ids),
        priority,
        b"",
        b"",
        0,  # attempts
    )


def new_messages(  # noqa: PLR0917 - new_message's arguments, in its order
    source: bytes,
    destination: bytes,
    command: bytes,
    payloads: Iterable[Mapping[str, Any] | None],
    now: float,
    ttl: float,
    kind: Kind,
    priority: Priority,
    /,
) -> list[Message]:
    """``new_message`` for each payload, in order, every message with its own
    id: what ``Node.messages`` builds a stream to one peer with.

    The fields the messages share are checked once, on the first message
    (by ``new_message``); each later one costs its payload's check and the
    object (0.4 against 0.9 us a message, measured). A payload that is not a
    plain dict goes through ``new_message`` itself, which names what is
    wrong with it.

    Raises:
        MessageError: a field, or one of the payloads, is not valid (no
            message is returned then).
    """
    messages: list[Message] = []
    append = messages.append
    first: Message | None = None
    for payload in payloads:
        if first is None:
            first = new_message(source, destination, command, payload, now, ttl, kind, priority)
            append(first)
            # the shared fields as the first message holds them (checked)
            source, destination, command = first.source, first.destination, first.command
            deadline, kind, priority = first.deadline, first.kind, first.priority
            continue
        if plain_payload(payload):
            append(
                assemble_unchecked(
                    source,
                    destination,
                    command,
                    deadline,
                    kind,
                    payload,
                    next(_ids),
                    priority,
                    source,
                    destination,
                    0,
                )
            )
        else:
            append(new_message(source, destination, command, payload, now, ttl, kind, priority))
    return messages


def assemble_unchecked(  # noqa: PLR0917 - the fields, in Message's order
    source: bytes,
    destination: bytes,
    command: bytes,
    deadline: float,
    kind: Kind,
    payload: Mapping[str, Any],
    message_id: int,
    priority: Priority,
    previous_hop: bytes,
    next_hop: bytes,
    attempts: int,
    /,
) -> Message:
    """A ``Message`` of exactly these fields, **none of them checked**: for
    the core's hot paths (``make_message``, the codecs' decoders,
    ``new_messages``), each of which has checked every field first, or
    checks the result. Nothing else may call it: a ``Message`` is valid
    by construction.

    The fields are set on a ``_Fields`` (same slots, plain attribute
    stores: a quarter of the cost of eleven ``object.__setattr__`` calls),
    which then becomes a ``Message``: one class change, where ``__init__``,
    given an object already made, needs two (about 0.15 us more).
    """
    draft: Any = _new(_Fields)
    draft.source = source
    draft.destination = destination
    draft.command = command
    draft.deadline = deadline
    draft.kind = kind
    draft.payload = payload
    draft.message_id = message_id
    draft.priority = priority
    draft.previous_hop = previous_hop
    draft.next_hop = next_hop
    draft.attempts = attempts
    draft.__class__ = Message
    result: Message = draft
    return result


def ends_ok(source: object, destination: object, command: object) -> bool:
    """Whether these are a valid source, destination and command (bytes,
    1 to 255 long, the uuids not starting with a zero byte): the common
    case of their checks in ``Message``, without naming what is wrong."""
    return (
        type(source) is bytes
        and type(destination) is bytes
        and type(command) is bytes
        and 0 < len(source) <= MAX_UUID_LEN
        and 0 < len(destination) <= MAX_UUID_LEN
        and 0 < len(command) <= MAX_COMMAND_LEN
        and source[0] != 0
        and destination[0] != 0
    )


def plain_payload(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether ``value`` is a payload that needs no more checking: a dict
    whose keys are all str (the common case of ``_check_payload``)."""
    if type(value) is not dict:
        return False
    if len(value) > FEW_KEYS:
        return _STR_ONLY.issuperset(map(type, value))
    for key in value:  # noqa: SIM110 - a loop is cheaper than all() for a few keys
        if type(key) is not str:
            return False
    return True


def uuid_ok(value: object) -> bool:
    """Whether ``value`` is a valid uuid (bytes, 1 to ``MAX_UUID_LEN`` long,
    not starting with a zero byte): the common case of ``_check_uuid``,
    without naming what is wrong."""
    return type(value) is bytes and 0 < len(value) <= MAX_UUID_LEN and value[0] != 0


_STR_ONLY: Final = frozenset({str})
FEW_KEYS: Final = 8
"""Up to this many payload keys are checked one by one in a loop (cheaper
than one C-level pass for the few keys most payloads have), by
``plain_payload``, which the codecs use too."""


class _Fields:
    """A ``Message``'s slots without its frozen ``__setattr__``: what
    ``make_message`` fills before the object becomes a ``Message`` (same
    slots, so ``__class__`` can change between the two)."""

    __slots__ = Message.__slots__


_FIELD_NAMES: Final = tuple(f.name for f in fields(Message))


def _check_uuid(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise MessageError(name, value, "must be bytes")
    if not 0 < len(value) <= MAX_UUID_LEN:
        raise MessageError(name, value, f"must be 1..{MAX_UUID_LEN} bytes long")
    if value[0] == 0:
        raise MessageError(name, value, "must not start with a zero byte (zmq reserves it)")


def _check_command(value: object) -> None:
    if type(value) is not bytes:
        raise MessageError("command", value, "must be bytes")
    if not 0 < len(value) <= MAX_COMMAND_LEN:
        raise MessageError("command", value, f"must be 1..{MAX_COMMAND_LEN} bytes long")


def _check_payload(value: object) -> None:
    if not isinstance(value, Mapping):
        raise MessageError("payload", value, "must be a mapping with str keys")
    for key in value:
        if type(key) is not str:
            raise MessageError("payload", value, f"key {short_repr(key)} is not a str")


def _enum(name: str, enum: type[IntEnum], value: object) -> Any:
    # Member by member, as ``enum(value)`` finds one, whose error would
    # quote the value whole (RecursionError for one nested 1000 deep).
    for member in enum:
        if member.value == value:
            return member
    choices = ", ".join(f"{m.name}={m.value}" for m in enum)
    raise MessageError(name, value, f"must be one of {choices}")
