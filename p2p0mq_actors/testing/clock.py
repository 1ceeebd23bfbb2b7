"""A clock that moves only when the test says so.

``ManualClock`` implements the same ``Clock`` protocol as the real
``MonotonicClock``: give it to the actors under test instead, then move time
with ``advance`` or ``set``. Due callbacks run in the test's own thread, in
due-time order, so a test needs no sleeps and no timer thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..core.checks import finite
from ..core.errors import ConfigurationError
from ..core.ports import TimerHandle
from ..core.timers import Timer, TimerQueue


class ManualClock:
    """A ``Clock`` for tests: time stands still until ``advance`` or ``set`` moves it.

    ``now()`` is safe to call from any thread (actors read it from theirs), and
    so are ``call_later`` and ``cancel``. Callbacks never run on their own:
    ``advance(seconds)`` moves time forward and runs, in the calling thread,
    every callback that falls due within the window, in due-time order (ties in
    the order they were scheduled), including callbacks that those callbacks
    schedule inside the window. While a callback runs, ``now()`` is its due time.
    Moves from several threads take turns: each runs its callbacks whole.

    Example::

        def test_a_failed_send_is_retried_after_the_backoff(manual_clock):
            sender = Sender(b"me", sockets=FakeSocketFactory(), clock=manual_clock)
            ...  # make a send fail
            manual_clock.wait_for_pending(1)  # the retry is scheduled (by an actor)
            manual_clock.advance(0.05)  # its timer fires, here and now
            ...

    (The ``manual_clock`` pytest fixture gives a fresh ``ManualClock()``.)

    Args:
        start: The time ``now()`` returns until the clock is moved.

    Raises:
        ConfigurationError: ``start`` is not a finite number.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(_finite("start", start))
        self._lock = threading.Lock()
        self._scheduled = threading.Condition(self._lock)  # notified at each call_later
        # Held while time moves (advance, set): one move at a time, its
        # callbacks in order; a callback may move the clock itself.
        self._moving = threading.RLock()
        self._timers = TimerQueue(on_cancel=self._cancel)

    def now(self) -> float:
        """The current manual time, in seconds."""
        with self._lock:
            return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` for ``now() + delay``; it runs in a later ``advance``/``set``.

        A negative delay counts as zero; a zero delay runs on the next
        ``advance``, even ``advance(0)``, never inside ``call_later``.

        Args:
            delay: Seconds from ``now()``.
            callback: Called with no arguments by the thread that moves the clock.

        Returns:
            A handle whose ``cancel()`` stops the callback if it has not run.

        Raises:
            ConfigurationError: ``delay`` is not a finite number or
                ``callback`` is not callable.
        """
        delay = max(0.0, _finite("delay", delay))
        if not callable(callback):
            raise ConfigurationError(f"invalid callback={callback!r}: must be callable")
        with self._lock:
            timer = self._timers.push(self._now + delay, callback)
            self._scheduled.notify_all()
            return timer

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and neither cancelled nor run."""
        with self._lock:
            return len(self._timers)

    def wait_for_pending(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` callbacks are pending.

        Actors schedule their timers from their own threads (a retry is
        scheduled after its Concern decides and the Scheduler hears of it),
        so a test that is about to ``advance`` past a timer waits for it
        first: an ``advance`` before it is scheduled runs nothing.

        Raises:
            TimeoutError: fewer were pending after ``timeout`` seconds.
        """
        with self._scheduled:
            if not self._scheduled.wait_for(lambda: len(self._timers) >= count, timeout):
                raise TimeoutError(
                    f"{self!r}: {len(self._timers)} callbacks pending after {timeout} s,"
                    f" not {count}; is the actor that schedules them running, and on"
                    " this clock?"
                )

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds`` and run every callback due by then.

        Callbacks run in this thread. If one raises, the exception propagates,
        time stays at that callback's due time, and the callbacks after it stay
        pending (a further ``advance(0)`` runs them).

        Args:
            seconds: How far to move, at least 0.

        Returns:
            How many callbacks ran.

        Raises:
            ConfigurationError: ``seconds`` is negative or not a finite number.
        """
        seconds = _finite("seconds", seconds)
        if seconds < 0:
            raise ConfigurationError(
                f"invalid seconds={seconds!r}: a monotonic clock cannot go back"
            )
        with self._moving:
            with self._lock:
                target = self._now + seconds
            return self._run_until(_finite("the time advanced to", target))

    def set(self, t: float) -> int:
        """Move time forward to ``t`` and run every callback due by then.

        Works as ``advance(t - now())``, without rounding.

        Args:
            t: The new time, not earlier than ``now()``.

        Returns:
            How many callbacks ran.

        Raises:
            ConfigurationError: ``t`` is earlier than ``now()`` or not a finite number.
        """
        t = float(_finite("t", t))
        with self._moving:
            with self._lock:
                if t < self._now:
                    raise ConfigurationError(
                        f"invalid t={t!r}: earlier than now={self._now!r}; "
                        "a monotonic clock cannot go back"
                    )
            return self._run_until(t)

    def __repr__(self) -> str:
        return f"<ManualClock now={self._now:.6f} pending={len(self._timers)}>"

    def _cancel(self, timer: Timer) -> None:
        with self._lock:
            self._timers.cancel(timer)

    def _run_until(self, target: float) -> int:
        ran = 0
        while (timer := self._take_due(target)) is not None:
            timer.callback()
            ran += 1
        return ran

    def _take_due(self, target: float) -> Timer | None:
        """Pop the earliest live timer due by ``target`` and move time to it; else move to
        ``target`` and return None."""
        with self._lock:
            timer = self._timers.pop_due(target)
            # max: a callback may itself have advanced the clock past target
            self._now = max(self._now, target if timer is None else timer.due)
            return timer


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite(value):
        raise ConfigurationError(f"invalid {name}={value!r}: must be a finite number of seconds")
    return value
