"""Timer bookkeeping shared by the clocks: handles, their states, the due-time queue.

Rules:
- Pure: the caller passes due times and ``now``; nothing here reads a clock,
  starts a thread, takes a lock or logs. The clocks (``runtime/clock.py``,
  ``testing/clock.py``) own the locking and decide when callbacks run.
- Timers leave in (due, push order): equal due times keep the order they were
  pushed in.
- A timer is ``PENDING`` until it is cancelled (``CANCELLED``) or taken by
  ``pop_due`` (``FIRED``); both are final, and cancelling a timer that is no
  longer pending changes nothing.
- ``len(queue)`` counts pending timers only. Cancelled timers stay stored
  until they reach the head, or until they are at least ``compact_at`` and
  the majority, when the queue drops them all at once: memory stays bounded
  under heavy cancelling, and the order of what is left does not change.
- ``Timer.cancel()`` goes through the queue's ``on_cancel`` (by default
  ``TimerQueue.cancel``), so a clock can take its lock first.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from enum import Enum

from .errors import ConfigurationError

COMPACT_AT = 64
"""The default ``compact_at``: how many stored cancelled timers allow a compaction."""


class TimerState(Enum):
    """Where a timer is in its life."""

    PENDING = "pending"
    CANCELLED = "cancelled"
    FIRED = "fired"


class Timer:
    """One scheduled callback: the handle ``call_later`` gives back.

    Read ``due``, ``callback`` and ``state``; call ``cancel()`` to stop the
    callback from running. Only a ``TimerQueue`` creates timers.
    """

    __slots__ = ("_queue", "_state", "callback", "due")

    def __init__(self, queue: TimerQueue, due: float, callback: Callable[[], None]) -> None:
        self._queue = queue
        self._state = TimerState.PENDING
        self.due = due
        self.callback = callback

    @property
    def state(self) -> TimerState:
        """``PENDING``, then ``CANCELLED`` or ``FIRED`` for good."""
        return self._state

    def cancel(self) -> None:
        """Stop the callback from running; no effect once it has fired (started or run)."""
        self._queue._on_cancel(self)

    def __repr__(self) -> str:
        # Named after the ``TimerHandle`` protocol: what the user of a clock holds.
        return f"<TimerHandle due={self.due:.6f} {self._state.value}>"


class TimerQueue:
    """Pending timers ordered by due time, then by push order.

    Example::

        queue = TimerQueue()
        timer = queue.push(1001.0, callback)
        queue.next_due()  # 1001.0
        queue.pop_due(1000.5)  # None: nothing due yet
        queue.pop_due(1001.0)  # timer, now FIRED; the caller runs timer.callback

    Args:
        on_cancel: What ``Timer.cancel()`` calls with the timer; a clock
            passes a method that takes its lock and calls ``cancel``. By
            default ``cancel`` itself.
        compact_at: How many stored cancelled timers, when they are also the
            majority, make the queue drop them all; at least 1.

    Raises:
        ConfigurationError: ``compact_at`` is below 1.
    """

    def __init__(
        self,
        on_cancel: Callable[[Timer], object] | None = None,
        compact_at: int = COMPACT_AT,
    ) -> None:
        if compact_at < 1:
            raise ConfigurationError(f"invalid compact_at={compact_at!r}: must be at least 1")
        self._on_cancel: Callable[[Timer], object] = (
            _cancel_in_its_queue if on_cancel is None else on_cancel
        )
        self._compact_at = compact_at
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._live = 0
        self._stale = 0

    def push(self, due: float, callback: Callable[[], None]) -> Timer:
        """Add a pending timer due at ``due`` and return it.

        Raises:
            ConfigurationError: ``due`` is NaN, which has no place in the order.
        """
        if math.isnan(due):
            raise ConfigurationError(f"invalid due={due!r}: must be a number, not NaN")
        timer = Timer(self, due, callback)
        heapq.heappush(self._heap, (due, next(self._order), timer))
        self._live += 1
        return timer

    def cancel(self, timer: Timer) -> bool:
        """Mark a pending timer cancelled; True if it was pending, False if it had ended.

        Raises:
            ConfigurationError: ``timer`` belongs to another queue (nothing changes).
        """
        if timer._queue is not self:
            raise ConfigurationError(f"cannot cancel {timer!r}: it belongs to another queue")
        if timer._state is not TimerState.PENDING:
            return False
        timer._state = TimerState.CANCELLED
        self._live -= 1
        self._stale += 1
        if self._stale >= self._compact_at and self._stale * 2 > len(self._heap):
            self._compact()
        return True

    def peek(self) -> Timer | None:
        """The pending timer that leaves next, or None; drops cancelled ones ahead of it."""
        while self._heap:
            timer = self._heap[0][2]
            if timer._state is TimerState.PENDING:
                return timer
            heapq.heappop(self._heap)
            self._stale -= 1
        return None

    def next_due(self) -> float | None:
        """The due time of the next pending timer, or None when none is pending."""
        timer = self.peek()
        return None if timer is None else timer.due

    def pop_due(self, now: float) -> Timer | None:
        """Take the next pending timer if it is due by ``now`` (``due <= now``), else None.

        The timer comes back ``FIRED``: the caller runs its callback.
        """
        timer = self.peek()
        if timer is None or timer.due > now:
            return None
        heapq.heappop(self._heap)
        timer._state = TimerState.FIRED
        self._live -= 1
        return timer

    def forget_on_cancel(self) -> None:
        """From now on ``Timer.cancel()`` cancels in this queue directly, as
        with no ``on_cancel``: what its owner calls once it is done with the
        queue (a closed clock), so that the queue holds nothing of it."""
        self._on_cancel = _cancel_in_its_queue

    def clear(self) -> int:
        """Cancel every pending timer and forget them all; returns how many were pending."""
        dropped = self._live
        for _, _, timer in self._heap:
            if timer._state is TimerState.PENDING:
                timer._state = TimerState.CANCELLED
        self._heap.clear()
        self._live = self._stale = 0
        return dropped

    def __len__(self) -> int:
        """How many timers are pending (neither cancelled nor fired)."""
        return self._live

    def __repr__(self) -> str:
        return f"<TimerQueue pending={self._live} stale={self._stale}>"

    def _compact(self) -> None:
        # (due, order) keys are unique, so rebuilding the heap keeps the order.
        self._heap = [entry for entry in self._heap if entry[2]._state is TimerState.PENDING]
        heapq.heapify(self._heap)
        self._stale = 0


def _cancel_in_its_queue(timer: Timer) -> None:
    """``Timer.cancel`` where the queue was given no ``on_cancel``: its own
    ``cancel`` (not the bound method, which would tie the queue in a cycle)."""
    timer._queue.cancel(timer)
