"""The actor kind every actor of the node is: a Pykka thread actor whose
inbox is the standard library's C ``queue.SimpleQueue``.

Why: ``pykka.ThreadingActor``'s inbox is a ``queue.Queue``, whose ``put``
and ``get`` run a ``threading.Condition`` in Python. Measured here, a tell
into it cost about 5 µs of the sender's GIL time; into a ``SimpleQueue``
about 0.6 µs, and the sleeping actor wakes a few µs sooner. Tells are the
actors' only way to talk (a plan, a batch of reports, a batch of received
messages), so this is paid on every boundary.

Pykka builds its actor kinds this way (``_create_actor_inbox`` is its hook
for new actor types). The inbox keeps Pykka's contract: ``put``, a
blocking ``get`` and ``empty``; messages are taken in the order put, from
any number of threads.

Each actor's thread is known while it runs (``in_own_thread``): whoever
waits for an actor to answer or to stop must not be that actor (a node
stopped from one of its Concern's handlers waited for that very thread).

An actor that goes idle after a message carrying messages (a plan, a
received batch, outcome reports, a plan's result) tells itself a
``_Release``, which it takes at once and ignores: Pykka's loop keeps the
last message taken in a local variable until the next one comes, and an
idle Concern kept its last batch that way (measured: 3,000 messages of 4
KB, 11.7 MiB, kept for as long as the Concern stayed idle), a connection
its last plan.

What is told to an actor as it stops ends somewhere, exactly once (its
``on_left``). Pykka's ``tell`` asks whether the actor is alive, then puts
the message in its inbox: a message put between the two by a thread that
asked just before the stop was left in the inbox of a stopped actor, and
lost (a review measured 1 outcome in 200 runs of a Concern removed while
outcomes flowed). Here a tell holds the actor's *door* (a lock) for both
steps, and the stopping actor takes the door once its stop is set: every
message is then either in the inbox it empties, or refused. It hands what
it finds on before ``on_stop``, and before its stop is answered.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pykka

from ..core.fairness import Plan, PlanResult
from .messages import Dropped, Enqueue, Failed, Received, Retry, Sent

log = logging.getLogger("p2p0mq_actors.runtime.actor")


class Actor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` with a C inbox. Use it as you would Pykka's
    (``start``, ``tell``, ``ask``, proxies, ``on_receive``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._door = threading.Lock()  # held for a tell's check and put, and at the stop
        self._actor_ref = _Ref(self)

    @staticmethod
    def _create_actor_inbox() -> Any:
        return queue.SimpleQueue()

    def _stop(self) -> None:  # Pykka's, with what was told and left handed on first
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        self._hand_on_left()
        try:
            self.on_stop()
        except Exception:
            self._handle_failure(*sys.exc_info())

    def _handle_receive(self, message: Any) -> Any:  # Pykka's entry for every message
        if message is _RELEASE:
            return None
        try:
            return super()._handle_receive(message)
        finally:
            if (
                type(message) in _CARRIERS
                and self.actor_inbox.empty()
                and not self.actor_stopped.is_set()
            ):
                with contextlib.suppress(pykka.ActorDeadError):
                    self.actor_ref.tell(_RELEASE)

    def _actor_loop(self) -> None:  # Pykka's thread target
        _THREADS[self.actor_urn] = threading.get_ident()
        try:
            super()._actor_loop()
        finally:
            _THREADS.pop(self.actor_urn, None)

    def _actor_loop_teardown(self) -> None:  # Pykka's: the inbox left at the stop
        self._hand_on_left()  # (stopped by a failure, it has not yet)
        super()._actor_loop_teardown()

    def _hand_on_left(self) -> None:
        """Pykka drops what was told and never handled (told after the stop
        was asked for, before the actor stopped): it goes to ``on_left``.
        Asks are put back, for Pykka's teardown to fail. Its stop set, the
        actor takes the door: no tell gets in after that (see the module)."""
        kept: list[Any] = []
        left: list[Any] = []
        with self._door:
            while not self.actor_inbox.empty():
                envelope = self.actor_inbox.get()
                (left if envelope.reply_to is None else kept).append(envelope)
            for envelope in kept:
                self.actor_inbox.put(envelope)
        told = [envelope.message for envelope in left if envelope.message is not _RELEASE]
        if told:
            try:
                self.on_left(told)
            except Exception:
                log.exception("%r: handing on what it was told as it stopped failed", self)

    def on_left(self, messages: list[Any]) -> None:
        """What was told to this actor and never handled (it stopped first),
        in order; nothing by default. An actor whose tells carry messages
        that must end somewhere (a plan, a received batch) hands them on."""


class _Ref(pykka.ActorRef[Any]):
    """Pykka's ref, its ``tell`` and ``ask`` under the actor's door."""

    def __init__(self, actor: Actor) -> None:
        super().__init__(actor)
        self._door = actor._door

    def tell(self, message: Any) -> None:
        with self._door:
            super().tell(message)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        with self._door:
            future = super().ask(message, block=False)
        return future.get(timeout=timeout) if block else future


class _Release:
    """Self-message of an actor going idle: see the module's note."""


_RELEASE = _Release()
_CARRIERS = frozenset({Received, Sent, Failed, Dropped, Retry, Enqueue, Plan, PlanResult})
"""The messages that carry messages (held by Pykka's loop until the next)."""

_THREADS: dict[str, int] = {}
"""Each running actor's thread (urn -> thread ident)."""
_ACTING = threading.local()  # .urn: the actor whose code this thread runs for it


@contextlib.contextmanager
def acting_as(urn: str) -> Iterator[None]:
    """This thread runs the code of actor ``urn`` meanwhile (an inline
    Concern's handler, in the Receiver's thread): waiting for that actor
    from here would wait for itself."""
    before = getattr(_ACTING, "urn", None)
    _ACTING.urn = urn
    try:
        yield
    finally:
        _ACTING.urn = before


def thread_of(ref: Any) -> int | None:
    """The ident of the thread ``ref``'s actor runs in, while it runs."""
    return _THREADS.get(ref.actor_urn)


def in_own_thread(ref: Any) -> bool:
    """Whether the calling thread is the thread of ``ref``'s actor, or runs
    its code for it (``acting_as``)."""
    urn = ref.actor_urn
    return _THREADS.get(urn) == threading.get_ident() or getattr(_ACTING, "urn", None) == urn
