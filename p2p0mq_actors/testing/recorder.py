"""Recording what reaches a Concern, for tests.

``OutcomeBook`` is a thread-safe record of outcomes (sent, failed, dropped)
that a test can wait on; ``RecordingConcern`` is a Concern that writes every
outcome into a book and otherwise behaves as the default (the failure policy
decides retries). Subclass it to set ``command``::

    class Chat(RecordingConcern):
        command = b"chat"

    book = OutcomeBook()
    ref = sender.add_concern(Chat, book=book)
    ...
    book.wait_for(lambda b: len(b.sent) == 10, timeout=5)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from ..concerns.base import Concern
from ..core.errors import SendError
from ..core.message import Message
from ..core.policy import Decision
from ..runtime.messages import Received


class OutcomeBook:
    """Outcomes in the order they arrived: ``sent``, ``failed`` (message,
    error), ``dropped`` (message, reason). Read them under ``wait_for``, or
    once the actors are flushed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.sent: list[Message] = []
        self.failed: list[tuple[Message, SendError]] = []
        self.dropped: list[tuple[Message, str]] = []

    def record(self, kind: str, items: Sequence[Any]) -> None:
        """Append ``items`` to the list named ``kind`` and wake the waiters."""
        with self._cond:
            getattr(self, kind).extend(items)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[OutcomeBook], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(book)`` holds; TimeoutError after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError(f"{self!r}: condition not met within {timeout} s")

    def ended(self) -> dict[int, str]:
        """Each message id that ended, with how: ``"sent"`` or ``"dropped:<reason>"``."""
        with self._cond:
            out = {m.message_id: "sent" for m in self.sent}
            out.update({m.message_id: f"dropped:{r}" for m, r in self.dropped})
            return out

    def __repr__(self) -> str:
        return (
            f"<OutcomeBook sent={len(self.sent)} failed={len(self.failed)} "
            f"dropped={len(self.dropped)}>"
        )


class RecordingConcern(Concern):
    """A Concern that records every outcome in ``book`` (pass ``book=``)."""

    def __init__(self, *, book: OutcomeBook, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.book = book

    def on_sent(self, messages: Sequence[Message]) -> None:
        self.book.record("sent", messages)

    def on_send_failed(self, message: Message, error: SendError) -> Decision:
        self.book.record("failed", [(message, error)])
        return super().on_send_failed(message, error)

    def on_dropped(self, message: Message, reason: str) -> None:
        self.book.record("dropped", [(message, reason)])


class MessageLog:
    """A thread-safe list of what a ``Recorder`` was told, with a bounded wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def append(self, item: Any) -> None:
        """Record ``item`` and wake whoever waits for it (``wait_for``)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def items(self) -> list[Any]:
        """Everything recorded so far, in order."""
        with self._cond:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Block until ``count`` items were recorded; returns them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds (the message
                lists what did arrive).
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} messages within {timeout} s, saw "
                    f"{len(self._items)}: {self._items!r}"
                )
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Recorder(pykka.ThreadingActor):
    """An actor that records every message told to it in a ``MessageLog``: a
    stand-in for the Scheduler (or a peer, or a Concern: a ``Received`` it
    records counts as handled) when a test drives one actor alone.

    Example::

        log = MessageLog()
        scheduler = Recorder.start(log)
        concern = MyConcern.start(scheduler=scheduler, clock=manual_clock)
        concern.tell(Failed(((message, error),)))
        (retry,) = log.wait_for(1)
    """

    def __init__(self, log: MessageLog) -> None:
        super().__init__()
        self.log = log

    def on_receive(self, message: Any) -> Any:
        self.log.append(message)
        if isinstance(message, Received) and message.done is not None:
            message.done()  # recorded is handled: the Receiver may read on
        return None
