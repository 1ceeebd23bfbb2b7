"""Which Concern owns a message, and how outcomes reach it: one tell per
Concern per batch, never one per message."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import pykka

from ..core.errors import ConfigurationError, SendError
from ..core.message import Message
from .messages import Dropped, Failed, Sent

log = logging.getLogger("p2p0mq_actors.runtime")


class OutcomeObserver(Protocol):
    """Sees every batch of outcomes before the Concerns do (counters, pending
    requests). Called from actor threads: must be thread-safe and quick."""

    def sent(self, messages: list[Message]) -> None: ...

    def failed(self, items: list[tuple[Message, SendError]]) -> None: ...

    def dropped(self, items: list[tuple[Message, str]]) -> None: ...


class ConcernRegistry:
    """Maps a command to the ref of the Concern actor that owns it.

    Reads are lock-free (the map is replaced, never changed in place), so
    actors can look up owners on every batch; writes take a lock. Messages
    whose command has no Concern go to the ``default`` one.
    """

    def __init__(self, default: Any = None) -> None:
        self._lock = threading.Lock()
        self._owners: Mapping[bytes, Any] = {}
        self.default = default
        self.observer: OutcomeObserver | None = None

    def add(self, command: bytes, ref: Any) -> None:
        """Register ``ref`` for ``command``; a second owner is an error."""
        with self._lock:
            if command in self._owners:
                raise ConfigurationError(
                    f"command {command!r} already has a Concern ({self._owners[command]}); "
                    "remove it first"
                )
            self._owners = {**self._owners, command: ref}

    def remove(self, command: bytes) -> Any:
        """Unregister and return the Concern of ``command`` (KeyError-free: None if none)."""
        with self._lock:
            owners = dict(self._owners)
            ref = owners.pop(command, None)
            self._owners = owners
            return ref

    def get(self, command: bytes) -> Any:
        """The owner of ``command``, else the default Concern (may be None)."""
        return self._owners.get(command, self.default)

    def owner(self, command: bytes) -> Any:
        """The Concern registered for ``command`` itself, else None (one read:
        a command removed meanwhile is not taken for the default's)."""
        return self._owners.get(command)

    def refs(self) -> list[Any]:
        """Every registered Concern, the default last."""
        out = list(self._owners.values())
        if self.default is not None:
            out.append(self.default)
        return out

    def __contains__(self, command: object) -> bool:
        return command in self._owners

    def __repr__(self) -> str:
        return f"<ConcernRegistry commands={sorted(self._owners)!r}>"


def report_sent(registry: ConcernRegistry, messages: Iterable[Message]) -> None:
    """Tell each owner, in one batch, which of its messages were sent (only
    Concerns that override ``on_sent`` are told)."""
    observer = registry.observer
    _report(
        registry,
        list(messages),
        observer.sent if observer is not None else None,
        Sent,
        None,  # the items are the messages
    )


def report_failed(registry: ConcernRegistry, items: Iterable[tuple[Message, SendError]]) -> None:
    """Tell each owner, in one batch, which of its messages failed and why."""
    observer = registry.observer
    _report(
        registry, list(items), observer.failed if observer is not None else None, Failed, _first
    )


def report_dropped(registry: ConcernRegistry, items: Iterable[tuple[Message, str]]) -> None:
    """Tell each owner, in one batch, which of its messages were dropped and why."""
    observer = registry.observer
    _report(
        registry, list(items), observer.dropped if observer is not None else None, Dropped, _first
    )


def _report(
    registry: ConcernRegistry,
    items: list[Any],
    observe: Callable[[list[Any]], None] | None,
    event: Callable[[tuple[Any, ...]], object],
    message_of: Callable[[Any], Message] | None,
) -> None:
    """The observer first, then one tell per owning Concern."""
    if not items:
        return
    if observe:
        observe(items)
    for ref, batch in _group(registry, items, message_of).items():
        if event is Sent and not listens_to_sent(ref):
            continue
        if not _tell(ref, event(tuple(batch)), len(batch)):
            _to_the_next_owner(registry, ref, batch, event, message_of)


def _to_the_next_owner(
    registry: ConcernRegistry,
    gone: Any,
    items: list[Any],
    event: Callable[[tuple[Any, ...]], object],
    message_of: Callable[[Any], Message] | None,
) -> None:
    """Tell the outcomes a stopped Concern missed (it was removed after they
    were routed to it) to their commands' owners now: the default Concern,
    unless another was added since. Once: one that stopped too is logged."""
    for ref, batch in _group(registry, items, message_of).items():
        owner = registry.default if ref is gone else ref
        if owner is gone or owner is None or (event is Sent and not listens_to_sent(owner)):
            log.warning("Concern %s stopped; %d outcome(s) not delivered", gone, len(batch))
            continue
        if not _tell(owner, event(tuple(batch)), len(batch)):
            log.warning("Concern %s stopped too; %d outcome(s) not delivered", owner, len(batch))


def listens_to_sent(ref: Any) -> bool:
    """Whether the Concern behind ``ref`` overrides ``on_sent`` (False for None)."""
    return ref is not None and bool(getattr(getattr(ref, "actor_class", None), "wants_sent", True))


def _first(item: tuple[Message, Any]) -> Message:
    return item[0]


def _group(registry: ConcernRegistry, items: Iterable[Any], key: Any) -> dict[Any, list[Any]]:
    """``items`` by the Concern that owns each one's command, in order. The
    owner is looked up once per run of one command (a plan's messages are
    mostly one command: every sent message passes here)."""
    groups: dict[Any, list[Any]] = {}
    owner_of = registry.get
    command: bytes | None = None
    group: list[Any] = []
    for item in items:
        message = item if key is None else key(item)
        if message.command != command:
            command = message.command
            ref = owner_of(message.command)
            group = groups.get(ref) or groups.setdefault(ref, [])
        group.append(item)
    return groups


def _tell(ref: Any, event: object, count: int) -> bool:
    """Tell ``ref`` of ``event``; False if it has stopped."""
    if ref is None:
        log.warning("no Concern to tell of %d message(s): %r", count, event)
        return True  # (no one to hand them to)
    try:
        ref.tell(event)
    except pykka.ActorDeadError:
        return False
    return True
