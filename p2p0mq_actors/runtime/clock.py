"""The real clock: monotonic time and delayed callbacks on one timer thread.

``MonotonicClock`` is what a node uses in production; tests use
``p2p0mq_actors.testing.ManualClock``, which has the same two methods.

How it works: pending timers sit in a ``core.timers.TimerQueue``, ordered by
due time (ties in call order) and guarded by one condition. One thread,
``p2p0mq-timer``, started by the first ``call_later``, waits on that condition
until the earliest due time, or without a timeout when nothing is pending, so
an idle clock costs no CPU. Callbacks run one after
another on that thread, outside the lock: they must be quick and thread-safe
(typically an actor ``tell``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from ..core.checks import finite
from ..core.errors import APPLICATION_ERRORS, ConfigurationError
from ..core.ports import TimerHandle
from ..core.timers import Timer, TimerQueue

logger = logging.getLogger(__name__)

THREAD_NAME = "p2p0mq-timer"


class MonotonicClock:
    """``time.monotonic()`` and ``call_later`` callbacks on one timer thread.

    Example::

        clock = MonotonicClock()
        handle = clock.call_later(0.5, lambda: actor_ref.tell(Tick()))
        handle.cancel()  # if it is no longer wanted
        clock.close()  # stops the timer thread; pending callbacks are dropped

    It is also a context manager that closes itself on exit.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._timers = TimerQueue(on_cancel=self._cancel)
        self._closed = False
        self._thread: threading.Thread | None = None

    now = staticmethod(time.monotonic)
    """Seconds on the monotonic clock: ``time.monotonic`` itself, called
    with no Python frame in between (every send reads the clock)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the timer thread ``delay`` seconds from now.

        A negative delay counts as zero. Callbacks due at the same time run in
        the order they were scheduled. An exception from a callback is logged
        and the clock goes on.

        Args:
            delay: Seconds from now.
            callback: Called with no arguments on the timer thread; it must be
                quick and thread-safe (typically an actor ``tell``).

        Returns:
            A handle whose ``cancel()`` stops the callback if it has not started.

        Raises:
            ConfigurationError: ``delay`` is not a finite number, ``callback``
                is not callable, or the clock is closed.
        """
        due = time.monotonic() + _delay_seconds(delay)
        if not callable(callback):
            raise ConfigurationError(f"invalid callback={callback!r}: must be callable")
        with self._cond:
            if self._closed:
                raise ConfigurationError(
                    f"call_later({delay!r}, {callback!r}) on a closed MonotonicClock: "
                    "create a new clock, or close it only after its last use"
                )
            timer = self._timers.push(due, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=THREAD_NAME)
                # A clock that nobody closed must not keep the interpreter alive;
                # the test kit's thread-leak check still catches it.
                self._thread.daemon = True
                self._thread.start()
            elif self._timers.peek() is timer:
                self._cond.notify()
        return timer

    @property
    def pending(self) -> int:
        """How many callbacks are scheduled and neither cancelled nor started."""
        with self._cond:
            return len(self._timers)

    @property
    def thread(self) -> threading.Thread | None:
        """The timer thread, once a first ``call_later`` started it."""
        return self._thread

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    def close(self, timeout: float = 2.0) -> int:
        """Stop the timer thread and drop every pending callback. Idempotent.

        A callback already running is allowed to finish: the thread is joined
        for up to ``timeout`` seconds (not when called from a callback itself).

        Args:
            timeout: Seconds to wait for the timer thread to end.

        Returns:
            How many pending callbacks were dropped (0 on later calls).
        """
        with self._cond:
            dropped = 0 if self._closed else self._timers.clear()
            self._closed = True
            # Every timer is cancelled now, and none can be made: letting go
            # of ``_cancel`` breaks the cycle clock -> queue -> clock.
            self._timers.forget_on_cancel()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(
                    "timer thread %s still runs a callback %.1f s after close()",
                    thread.name,
                    timeout,
                )
        return dropped

    def __enter__(self) -> MonotonicClock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._thread is None:
            state = "idle"
        else:
            state = "running"
        return f"<MonotonicClock {state} pending={len(self._timers)}>"

    def _cancel(self, timer: Timer) -> None:
        with self._cond:
            self._timers.cancel(timer)

    def _run(self) -> None:
        while (timer := self._next_due()) is not None:
            try:
                timer.callback()
            except APPLICATION_ERRORS:  # SystemExit too: it would end this thread
                logger.exception("timer callback %r raised; the clock goes on", timer.callback)

    def _next_due(self) -> Timer | None:
        """Wait for the earliest pending timer to fall due and take it; None once closed."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                timer = self._timers.pop_due(now)
                if timer is not None:
                    return timer
                due = self._timers.next_due()
                # a finite but huge delay would overflow the lock's timeout
                self._cond.wait(None if due is None else min(due - now, threading.TIMEOUT_MAX))
            return None


def _delay_seconds(delay: object) -> float:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not finite(delay):
        raise ConfigurationError(f"invalid delay={delay!r}: must be a finite number of seconds")
    return max(0.0, float(delay))
