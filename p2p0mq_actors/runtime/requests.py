"""Requests waiting for their replies, and the node's outcome counters.

Rules:
- A request's future is registered *before* the request is handed to any
  actor (a reply can beat its request's "sent" report home, trap 10).
- A reply resolves the future whose request has the same message id and was
  sent to the reply's source; any other reply goes to its Concern.
- A future fails at once when its request is dropped (any reason), when the
  peer refuses our key, on timeout, or when the node stops. It resolves or
  fails exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pykka

from ..core.errors import (
    NodeStoppedError,
    PeerRefusedError,
    RequestError,
    RequestTimeoutError,
    SendError,
)
from ..core.message import Kind, Message
from ..core.ports import Clock, TimerHandle


class PendingRequests:
    """Futures of ``Node.request`` calls, keyed by message id. Thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[bytes, pykka.ThreadingFuture[Message], TimerHandle]] = {}
        self.resolved = 0
        self.failed: Counter[str] = Counter()

    def register(self, request: Message, timeout: float) -> pykka.ThreadingFuture[Message]:
        """The future of ``request``'s reply; it fails after ``timeout`` seconds."""
        future: pykka.ThreadingFuture[Message] = pykka.ThreadingFuture()
        mid = request.message_id

        def expire() -> None:
            self._fail(mid, RequestTimeoutError(f"no reply to {request!r} within {timeout} s"))

        timer = self._clock.call_later(timeout, expire)
        with self._lock:
            self._pending[mid] = (request.destination, future, timer)
        return future

    def resolve(self, reply: Message) -> bool:
        """Resolve the future waiting for ``reply``; False if none was waiting."""
        if reply.kind is not Kind.REPLY:
            return False
        with self._lock:
            entry = self._pending.get(reply.message_id)
            if entry is None or entry[0] != reply.source:
                return False
            del self._pending[reply.message_id]
            self.resolved += 1
        entry[2].cancel()
        entry[1].set(reply)
        return True

    def _fail(self, mid: int, error: RequestError | SendError) -> None:
        with self._lock:
            entry = self._pending.pop(mid, None)
            if entry is None:
                return
            self.failed[getattr(error, "reason", "error")] += 1
        entry[2].cancel()
        entry[1].set_exception((type(error), error, None))

    def fail_all(self, reason: str = "stopped") -> None:
        """Fail every pending future (the node is stopping)."""
        with self._lock:
            mids = list(self._pending)
        for mid in mids:
            self._fail(
                mid, NodeStoppedError(f"the node stopped before request #{mid} got its reply")
            )

    # -- OutcomeObserver -----------------------------------------------------

    def sent(self, messages: list[Message]) -> None:
        """Nothing to do: a request waits for its reply, not for being sent."""

    def failed_items(self, items: list[tuple[Message, SendError]]) -> None:
        if not self._pending:
            return
        for message, error in items:
            if isinstance(error, PeerRefusedError) and message.message_id in self._pending:
                self._fail(message.message_id, error)

    def dropped(self, items: list[tuple[Message, str]]) -> None:
        if not self._pending:
            return
        for message, reason in items:
            if message.kind is Kind.REQUEST and message.message_id in self._pending:
                text = f"{message!r} was dropped ({reason}) before a reply came"
                error: RequestError | SendError = (
                    NodeStoppedError(text)
                    if reason == "stopped"
                    else RequestError(text, reason=reason)
                )
                self._fail(message.message_id, error)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


class NodeObserver:
    """The node's view of every outcome: counters by kind and drop reason,
    and the pending requests it must fail."""

    def __init__(self, pending: PendingRequests) -> None:
        self.pending = pending
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()

    def sent(self, messages: list[Message]) -> None:
        with self._lock:
            self.counts["sent"] += len(messages)

    def failed(self, items: list[tuple[Message, SendError]]) -> None:
        with self._lock:
            self.counts["failed"] += len(items)
        self.pending.failed_items(items)

    def dropped(self, items: list[tuple[Message, str]]) -> None:
        with self._lock:
            self.counts["dropped"] += len(items)
            self.drops.update(reason for _, reason in items)
        self.pending.dropped(items)

    def snapshot(self) -> dict[str, Any]:
        """Counts so far: sent, failed, dropped and dropped by reason."""
        with self._lock:
            return {
                "sent": self.counts["sent"],
                "failed": self.counts["failed"],
                "dropped": self.counts["dropped"],
                "dropped_by_reason": dict(self.drops),
            }
