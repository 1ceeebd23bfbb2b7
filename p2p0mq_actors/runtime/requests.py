"""Requests waiting for their replies, and the node's outcome counters.

Rules:
- A request's future is registered *before* the request is handed to any
  actor (a reply can beat its request's "sent" report home, trap 10).
- A reply resolves the future whose request has the same message id and
  command, was sent to the reply's source, and came back over the hop the request went
  out on (the peer itself, or the hop it was routed through). The source is
  a claim any admitted peer can make; the previous hop is the sender the
  Receiver authenticated (a routing id must be its CURVE key's owner), and
  message ids are easy to guess. Any other reply goes to its Concern.
- A future reflects its request's fate: it fails at once when the request
  is dropped (any reason), on timeout, or when the node stops, never on a
  failed send alone: the Concern's policy may retry it (a peer that refused
  our key may admit it later), and a caller told "failed" would ask again
  for what gets done anyway. It resolves or fails exactly once.
- The last send error of each pending request is kept until the request
  ends: a dropped request's error names it (and chains it), since the drop
  reason alone ("ttl") hides why it was never sent.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from typing import Any

from ..core.checks import check_seconds
from ..core.errors import (
    ConfigurationError,
    NodeStoppedError,
    RequestError,
    RequestTimeoutError,
    SendError,
)
from ..core.message import Kind, Message
from ..core.ports import Clock, TimerHandle
from .future import ReplyFuture

COMPACT_SLACK = 1024
"""Deadlines of answered requests kept beyond twice the waiting ones before
the heap is rebuilt from the waiting ones (amortised O(1) per request)."""


class PendingRequests:
    """Futures of ``Node.request`` calls, keyed by message id. Thread-safe.

    Timeouts share one clock timer, armed for the earliest deadline: a
    request whose deadline is not the earliest costs no timer (and no timer
    thread wake-up). A resolved request leaves its deadline in the heap; when
    the timer fires, the deadlines of answered requests at the head go with
    the lapsed ones, so under steady traffic the timer fires about once per
    timeout, not once per request. The heap is rebuilt when answered
    requests' deadlines outnumber the waiting ones' (``COMPACT_SLACK``).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # message id -> (asked peer, hop it went out on, future, deadline, command)
        self._pending: dict[int, tuple[bytes, bytes, ReplyFuture[Message], float, bytes]] = {}
        self._errors: dict[int, SendError] = {}  # message id -> its last send error
        self._deadlines: list[tuple[float, int]] = []
        self._armed: float | None = None
        self._timer: TimerHandle | None = None
        self._closed = False  # fail_all ran: the node stops, nothing more is taken
        self.resolved = 0
        self.failed: Counter[str] = Counter()

    def register(self, request: Message, timeout: float) -> ReplyFuture[Message]:
        """The future of ``request``'s reply; it fails after ``timeout`` seconds.

        Raises:
            ConfigurationError: ``timeout`` is not a finite number > 0 (NaN
                would never come due); nothing is registered then.
        """
        check_seconds("timeout", timeout)
        future: ReplyFuture[Message] = ReplyFuture()
        due = self._clock.now() + timeout
        with self._lock:
            if self._closed:
                raise ConfigurationError(
                    f"the node stopped: request #{request.message_id} not sent"
                )
            self._pending[request.message_id] = (
                request.destination,
                request.next_hop,
                future,
                due,
                request.command,
            )
            deadlines = self._deadlines
            if len(deadlines) > 2 * len(self._pending) + COMPACT_SLACK:
                # Mostly answered requests' deadlines: keep the waiting ones'.
                deadlines[:] = [(d, mid) for mid, (_, _, _, d, _) in self._pending.items()]
                heapq.heapify(deadlines)
            else:
                heapq.heappush(deadlines, (due, request.message_id))
            arm = self._armed is None or due < self._armed
            if arm:
                self._armed = due
        if arm:
            self._arm(due)
        return future

    def forget(self, request: Message) -> None:
        """Stop waiting for ``request``'s reply, leaving its future unsettled:
        the request was refused before it left, and its caller got the error
        instead of the future. (Its deadline goes as an answered one's does.)"""
        with self._lock:
            self._pending.pop(request.message_id, None)
            self._errors.pop(request.message_id, None)

    def _arm(self, due: float) -> None:
        try:
            timer = self._clock.call_later(max(0.0, due - self._clock.now()), self._expire)
        except ConfigurationError:  # the node's clock closed: fail_all settles it
            if self._closed:
                return
            raise
        old: TimerHandle | None
        with self._lock:
            if self._armed != due:  # another thread armed an earlier deadline meanwhile
                old = timer
            else:
                old, self._timer = self._timer, timer
        if old is not None:
            old.cancel()

    def _expire(self) -> None:
        now = self._clock.now()
        late: list[tuple[int, bytes, SendError | None]] = []
        with self._lock:
            deadlines, pending = self._deadlines, self._pending
            # Lapsed deadlines fail their requests; deadlines of requests
            # already answered are dropped too while they lead, so the timer
            # is armed for a request still waiting, not for each answered one
            # in turn (a timer wake-up per request under steady traffic).
            while deadlines:
                due, mid = deadlines[0]
                entry = pending.get(mid)
                if entry is not None and due > now:
                    break
                heapq.heappop(deadlines)
                if entry is not None and entry[3] <= now:
                    late.append((mid, entry[0], self._errors.get(mid)))
            self._armed = deadlines[0][0] if deadlines else None
            again = self._armed
        for mid, peer, cause in late:
            text = f"no reply from peer {peer!r} to request #{mid} in time"
            if cause is not None:  # still being retried: why it was not sent yet
                text = f"{text}; last send error: {type(cause).__name__}: {cause}"
            error = RequestTimeoutError(text)
            error.__cause__ = cause
            self._fail(mid, error)
        if again is not None:
            self._arm(again)

    def resolve(self, reply: Message) -> bool:
        """Resolve the future waiting for ``reply``; False if none was waiting
        for a reply from its source over its previous hop (see the rules)."""
        if reply.kind is not Kind.REPLY:
            return False
        with self._lock:
            entry = self._pending.get(reply.message_id)
            if (
                entry is None
                or entry[0] != reply.source
                or reply.previous_hop not in (entry[0], entry[1])
                or entry[4] != reply.command
            ):
                return False
            del self._pending[reply.message_id]
            self._errors.pop(reply.message_id, None)
            self.resolved += 1
        entry[2].set(reply)
        return True

    def _fail(self, mid: int, error: RequestError | SendError) -> None:
        with self._lock:
            entry = self._pending.pop(mid, None)
            if entry is None:
                return
            self._errors.pop(mid, None)
            self.failed[getattr(error, "reason", "error")] += 1
        entry[2].set_exception((type(error), error, None))

    def fail_all(self, reason: str = "stopped") -> None:
        """Fail every pending future (the node is stopping)."""
        with self._lock:
            self._closed = True
            mids = list(self._pending)
            timer, self._timer = self._timer, None
            self._deadlines.clear()
            self._armed = None
        if timer is not None:
            timer.cancel()
        for mid in mids:
            self._fail(
                mid, NodeStoppedError(f"the node stopped before request #{mid} got its reply")
            )

    # -- OutcomeObserver -----------------------------------------------------

    def sent(self, messages: list[Message]) -> None:
        """Nothing to do: a request waits for its reply, not for being sent."""

    def failed_items(self, items: list[tuple[Message, SendError]]) -> None:
        """Remember each pending request's last send error, and fail nothing:
        its Concern decides whether the request is retried or dropped."""
        if not self._pending:
            return
        with self._lock:
            pending, errors = self._pending, self._errors
            for message, error in items:
                if message.kind is Kind.REQUEST and message.message_id in pending:
                    errors[message.message_id] = error

    def dropped(self, items: list[tuple[Message, str]]) -> None:
        if not self._pending:
            return
        for message, reason in items:
            mid = message.message_id
            if message.kind is Kind.REQUEST and mid in self._pending:
                self._fail(mid, _dropped_error(message, reason, self._errors.get(mid)))

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


def _dropped_error(
    request: Message, reason: str, cause: SendError | None
) -> RequestError | SendError:
    """The error of ``request`` dropped for ``reason``: the reason, then the
    last send error's text (what the user can act on), chained."""
    text = f"{request!r} was dropped ({reason}) before a reply came"
    if cause is not None:
        text = f"{text}; last send error: {type(cause).__name__}: {cause}"
    error: RequestError | SendError = (
        NodeStoppedError(text) if reason == "stopped" else RequestError(text, reason=reason)
    )
    error.__cause__ = cause
    return error


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
