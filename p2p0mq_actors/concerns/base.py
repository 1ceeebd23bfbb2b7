"""The Concern: the actor that owns one command and decides about its messages.

Subclass it, set ``command``, override the hooks you need. Every hook is
guarded: an exception is logged and counted (``errors``), and never stops the
Concern or anything else; for ``on_send_failed`` the default policy decides
instead, as it does when the hook returns something that is not a
``Decision`` (a forgotten ``return`` is a bug, not a wish to retry). A retry
that would fall due at or past the message's deadline drops it with reason
``"ttl"`` at once (``policy.within_deadline``). Decisions go back to the
Scheduler with one ``tell`` per batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import pykka

from ..core.errors import APPLICATION_ERRORS, SendError, UnencodableError
from ..core.message import Kind, Message, Priority
from ..core.policy import Action, Decision, FailurePolicy, within_deadline
from ..core.ports import Clock
from ..runtime import inline as inline_handling
from ..runtime.actor import Actor, acting_as
from ..runtime.messages import FLUSH, Dropped, Enqueue, Failed, Flush, Received, Retry, Sent
from ..runtime.outcomes import OutcomeObserver

log = logging.getLogger("p2p0mq_actors.concerns")

_OFFER_INLINE = object()
"""Told to itself by an inline Concern: offer its handle to the Receiver."""


class Concern(Actor):
    """Base class of command handlers.

    Args:
        scheduler: ref of the Scheduler that re-enqueues retries (the node
            passes it; in a unit test pass a ``testing.Recorder`` ref).
        clock: time source for deadlines and delays (a ``ManualClock`` in tests).
        policy: the failure policy ``on_send_failed`` applies by default.
        observer: told of the messages this Concern gives up (the node's
            counters and pending requests); the node passes it.
        intake: the node's intake, for replies (the node passes it; without
            it replies go to the Scheduler with a tell).

    A subclass with its own ``__init__`` must accept and pass on these
    keyword arguments: ``super().__init__(**kwargs)``.

    Example::

        class Chat(Concern):
            command = b"chat"

            def on_dropped(self, message, reason):
                print("lost", message, reason)
    """

    command: ClassVar[bytes] = b""
    wants_sent: ClassVar[bool] = False
    """Whether ``on_sent`` is overridden: "sent" reports go only to Concerns
    that listen (each one costs an actor message and a thread wake-up)."""

    inline: ClassVar[bool] = False
    """Set True when ``on_request`` and ``on_reply`` are short and never block
    (no waiting on a future, a lock held elsewhere, I/O): while this Concern
    has nothing else to do, the node's Receiver then runs them for a lone
    message it receives (as in a round trip; a drain of several is told) in
    its own thread, saving a thread wake-up (about 40 µs of a round trip on
    a 2-core machine). Everything else still runs
    in this actor's thread, and never at the same time: received messages
    keep their order, and a busy Concern gets them told as usual. A handler
    that blocks would hold up all receiving, so the default is False."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.wants_sent = cls.on_sent is not Concern.on_sent

    def __init__(
        self,
        *,
        scheduler: Any = None,
        clock: Clock | None = None,
        policy: FailurePolicy | None = None,
        observer: OutcomeObserver | None = None,
        intake: Any = None,
    ) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.observer = observer
        self.intake = intake
        self.clock = clock
        self.policy = policy or FailurePolicy()
        self.counts = {
            "sent": 0,
            "failed": 0,
            "retried": 0,
            "dropped": 0,
            "received": 0,
            "errors": 0,
        }
        self._turn = threading.Lock()  # held while this Concern's code runs (``inline``)
        if self.inline:  # offered from its own thread, once ``on_start`` has run
            self.actor_ref.tell(_OFFER_INLINE)

    # -- hooks: override these -----------------------------------------------

    def on_sent(self, messages: Sequence[Message]) -> None:
        """These messages left their socket, in sending order."""

    def on_send_failed(self, message: Message, error: SendError) -> Decision:
        """Decide what happens to ``message``; the default applies ``policy``."""
        return self.policy.decide(message, error, self._now())

    def on_dropped(self, message: Message, reason: str) -> None:
        """``message`` is gone for good (``"ttl"``, ``"stopped"``, a give-up reason...)."""

    def on_request(self, message: Message) -> Message | Mapping[str, Any] | None:
        """A request for us arrived. Return a reply payload (a mapping), a reply
        ``Message`` (build it with ``message.reply(...)``), or None for no reply.
        Replies go out on the fast lane."""
        return None

    def on_reply(self, message: Message) -> None:
        """A reply for us arrived that no ``Node.request`` future was waiting for."""

    # -- plumbing --------------------------------------------------------------

    def _handle_receive(self, message: Any) -> Any:  # Pykka's entry for every message
        if not self.inline:
            return super()._handle_receive(message)
        # Under the turn: everything this thread runs of the Concern (its
        # messages, proxy calls, its stop and ``on_stop``) waits for a
        # handler the Receiver runs inline, and the other way round.
        with self._turn:
            return super()._handle_receive(message)

    def on_left(self, messages: list[Any]) -> None:
        # Received batches told as it stopped (a remove_concern racing the
        # Receiver) would be dropped unseen, and the Receiver's backlog
        # would count them for ever: they are let go here, and said.
        # Outcomes told as it stopped were its messages' when they were
        # routed: it handles them still (a failed one is decided, so it is
        # retried or dropped), else they would never end.
        lost = 0
        for message in messages:
            if isinstance(message, Received):
                let_go = message.lost or message.done
                if let_go is not None:  # lost: counted dropped by the Receiver
                    let_go()
                lost += len(message.messages)
            elif isinstance(message, (Sent, Failed, Dropped)):
                self._on_message(message)
        if lost:
            log.warning("%r: stopped with %d received message(s) not handled", self, lost)

    def on_receive(self, message: Any) -> Any:
        if message is _OFFER_INLINE:
            inline_handling.offer(self.actor_urn, self._handle_inline)
            return None
        return self._on_message(message)

    def on_stop(self) -> None:
        if self.inline:
            inline_handling.withdraw(self.actor_urn)

    def _handle_inline(self, messages: Sequence[Message]) -> bool:
        """Handle received ``messages`` in the calling thread (the
        Receiver's), if this Concern is idle; False if it is busy or
        stopped, and they must be told."""
        if not self._turn.acquire(blocking=False):
            return False
        try:
            if self.actor_stopped.is_set():
                return False
            with acting_as(self.actor_urn):  # (it may stop this Concern, or the node)
                self._received(messages)
            return True
        finally:
            self._turn.release()

    def _on_message(self, message: Any) -> Any:
        if isinstance(message, Received):  # first: a request waits for its reply
            try:
                self._received(message.messages)
            finally:
                if message.done is not None:  # the Receiver may read on
                    message.done()
        elif isinstance(message, Sent):
            self.counts["sent"] += len(message.messages)
            self._guard(self.on_sent, message.messages)
        elif isinstance(message, Failed):
            self._decide(message.items)
        elif isinstance(message, Dropped):
            self._drop(message.items)
        elif isinstance(message, Flush):
            return FLUSH
        else:
            return self._guard(self.on_other, message)
        return None

    def on_other(self, message: Any) -> Any:
        """Any message that is not an outcome; logs it by default."""
        log.warning("%r: unexpected message %r", self, message)
        return None

    def stats(self) -> dict[str, int]:
        """Counters: sent (only counted when ``on_sent`` is overridden), failed,
        retried, dropped, received, errors (hooks that raised)."""
        return dict(self.counts)

    def _now(self) -> float:
        if self.clock is None:
            raise RuntimeError(f"{self!r} has no clock: pass clock=... when starting it")
        return self.clock.now()

    def _guard(self, hook: Any, *args: Any) -> Any:
        try:
            return hook(*args)
        except APPLICATION_ERRORS:
            self.counts["errors"] += 1
            log.exception("%r: %s raised; carrying on", self, getattr(hook, "__name__", hook))
            return None

    def _decide(self, items: Sequence[tuple[Message, SendError]]) -> None:
        self.counts["failed"] += len(items)
        now_list: list[Message] = []
        later: list[tuple[Message, float]] = []
        drops: list[tuple[Message, str]] = []
        for message, error in items:
            now = self._now()
            decision = within_deadline(self._decision(message, error, now), message, now)
            if decision.action is Action.GIVE_UP:
                drops.append((message, decision.reason))
            elif decision.delay > 0:
                later.append((message.retried(), now + decision.delay))
            else:
                now_list.append(message.retried())
        if now_list or later:
            self.counts["retried"] += len(now_list) + len(later)
            self._tell_scheduler(Retry(tuple(now_list), tuple(later)))
        self._give_up(drops)

    def _decision(self, message: Message, error: SendError, now: float) -> Decision:
        """``on_send_failed``'s Decision; the policy's if the hook raised or
        returned anything else; a give-up (``"error"``) if the policy raised
        too (logged and counted either way: a hook never stops the Concern).
        The default hook is the policy itself: a policy that fails is asked
        once, not twice."""
        if type(self).on_send_failed is not Concern.on_send_failed:
            try:
                decision = self.on_send_failed(message, error)
            except APPLICATION_ERRORS:
                self.counts["errors"] += 1
                log.exception("%r: on_send_failed raised; carrying on", self)
            else:
                if isinstance(decision, Decision):
                    return decision
                self.counts["errors"] += 1
                log.error(
                    "%r: on_send_failed returned %r for %r; expected a Decision, "
                    "so the policy decides",
                    self,
                    decision,
                    message,
                )
        try:
            decision = self.policy.decide(message, error, now)
        except APPLICATION_ERRORS:  # a policy of the application's: the message is given up
            self.counts["errors"] += 1
            log.exception("%r: its policy raised deciding on %r; giving it up", self, message)
            return Decision.give_up("error")
        if isinstance(decision, Decision):
            return decision
        self.counts["errors"] += 1
        log.error(
            "%r: its policy returned %r for %r; expected a Decision, so it is given up",
            self,
            decision,
            message,
        )
        return Decision.give_up("error")

    def _give_up(self, items: list[tuple[Message, str]]) -> None:
        """Drops decided here (not reported by another actor): tell the observer too."""
        if items and self.observer is not None:
            self.observer.dropped(items)
        self._drop(items)

    def _received(self, messages: Sequence[Message]) -> None:
        self.counts["received"] += len(messages)
        replies: list[Message] = []
        on_request, reply_kind = self.on_request, Kind.REPLY
        for message in messages:
            if message.kind is reply_kind:
                self._guard(self.on_reply, message)
                continue
            try:  # _guard, inlined: a call less on every request received
                answer = on_request(message)
            except APPLICATION_ERRORS:
                self.counts["errors"] += 1
                log.exception("%r: on_request raised; carrying on", self)
                continue
            if answer is not None:
                reply = self._as_reply(message, answer)
                if reply is not None:
                    replies.append(reply)
        if replies:
            self._send_replies(replies)

    def _send_replies(self, replies: list[Message]) -> None:
        """Replies take the shortest way: straight to an idle peer's connection
        through the express gate, else into the intake, room or not (a handler
        must not block, and a reply that took another way could be overtaken
        by the next one), else (stopping, or no intake) a tell to the Scheduler."""
        intake = self.intake
        if intake is None:
            self._tell_scheduler(Enqueue(tuple(replies)))
            return
        rest: list[Message] = []
        for reply in replies:
            if rest or not intake.express(reply):
                rest.append(reply)  # once one waits, the later ones wait behind it
        if rest and not intake.put_now(rest):  # closed: the Scheduler drops them
            self._tell_scheduler(Enqueue(tuple(rest)))

    def _as_reply(self, request: Message, answer: object) -> Message | None:
        """The reply ``answer`` (not None) stands for; None if it is no answer."""
        if isinstance(answer, Message):
            if not answers(answer, request):
                self.counts["errors"] += 1
                log.error(
                    "%r: on_request returned %r, which is no reply to %r (build it with"
                    " request.reply(...)); it is not sent",
                    self,
                    answer,
                    request,
                )
                return None
            reply = answer
        elif type(answer) is dict or isinstance(answer, Mapping):
            try:
                reply = request.reply(answer, now=self._now(), priority=Priority.FAST)
            except APPLICATION_ERRORS:  # MessageError, or a mapping of its own that raised
                self.counts["errors"] += 1
                log.exception("%r: on_request returned a bad reply payload", self)
                return None
        else:
            self.counts["errors"] += 1
            log.error(
                "%r: on_request returned %r; expected a mapping, a Message or None", self, answer
            )
            return None
        return reply if reply.priority is Priority.FAST else replace(reply, priority=Priority.FAST)

    def _drop(self, items: Sequence[tuple[Message, str]]) -> None:
        self.counts["dropped"] += len(items)
        for message, reason in items:
            if reason == UnencodableError.reason and message.kind is Kind.REPLY:
                # A reply the handler built wrong that only encoding finds out
                # (a set, an object, an int over 64 bits, a payload over the
                # size limit): its requester will time out.
                self.counts["errors"] += 1
                log.error(
                    "%r: the reply %r cannot be encoded (what msgpack cannot pack, or"
                    " over max_message_size); it is dropped",
                    self,
                    message,
                )
            self._guard(self.on_dropped, message, reason)

    def _tell_scheduler(self, work: Retry | Enqueue) -> None:
        if isinstance(work, Retry):
            held = [*work.now, *(m for m, _ in work.later)]
        else:
            held = list(work.messages)
        if self.scheduler is None:
            log.warning("%r: no scheduler; %d messages dropped", self, len(held))
            self._give_up([(m, "stopped") for m in held])
            return
        try:
            self.scheduler.tell(work)
        except pykka.ActorDeadError:
            self._give_up([(m, "stopped") for m in held])

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"<{type(self).__name__} {self.command!r} sent={c['sent']} failed={c['failed']} "
            f"retried={c['retried']} dropped={c['dropped']} errors={c['errors']}>"
        )


class DefaultConcern(Concern):
    """Owns messages whose command has no Concern: default policy, drops logged."""

    def on_dropped(self, message: Message, reason: str) -> None:
        log.info("dropped %r: %s", message, reason)


def answers(reply: Message, request: Message) -> bool:
    """Whether ``reply`` is a reply to ``request``: what ``request.reply``
    builds (kind, id, command, and back to the request's source)."""
    return (
        reply.kind is Kind.REPLY
        and reply.message_id == request.message_id
        and reply.command == request.command
        and reply.destination == request.source
    )
