"""The future ``Node.request`` returns: a ``pykka.Future`` on one C lock.

Why: a request's future is made, set and read once per round trip, and all
three are on the round trip's path (the reply's waiter wakes, then reads it).
``pykka.ThreadingFuture`` runs a ``threading.Condition`` in Python for each;
measured here, make + set + get cost 3.3 µs against 1.1 µs for this one.

Pykka's contract is kept: ``get(timeout=...)`` returns the value or raises
the exception set (``pykka.Timeout`` when none came in time, and every
waiter sees the result); a second ``set`` or ``set_exception`` raises
``queue.Full``; ``map``, ``filter``, ``join``, ``reduce``, ``await`` and
``pykka.get_all`` work as on any Pykka future.

Pykka's ``map`` and friends are lazy (they run in ``get``), so a future
alone could not make anything happen when its reply comes: one that must
not block a thread (a Concern answering a request with a request of its
own) needs ``add_done_callback``. A future ``map``, ``filter``, ``join``
or ``reduce`` made of ``ReplyFuture``s is done once they all are (its
callbacks run then); one that joins another kind of future, or whose get
hook someone else set, is taken as done at once.
"""

from __future__ import annotations

import _thread
import logging
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

from ..core.errors import APPLICATION_ERRORS

T = TypeVar("T")

log = logging.getLogger("p2p0mq_actors.runtime.future")


class ReplyFuture(pykka.Future[T]):
    """A future set once, by any thread, and read by any number of threads."""

    def __init__(self) -> None:
        super().__init__()
        self._outcome: tuple[Any, Any] | None = None  # (value, exc_info)
        self._done = _thread.allocate_lock()  # held until the outcome is in
        self._done.acquire()
        self._guard = _thread.allocate_lock()  # one outcome, or one hook
        self._finished = False  # an outcome is in, or a get hook stands for it
        self._callbacks: list[Callable[[ReplyFuture[T]], object]] | None = None

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        outcome = self._outcome
        if outcome is None:
            wait = -1.0 if timeout is None else max(0.0, timeout)
            if not self._done.acquire(True, wait):
                raise pykka.Timeout(f"{timeout} seconds")
            self._done.release()  # for the next waiter
            outcome = self._outcome
            if outcome is None:  # woken by set_get_hook
                return super().get(timeout=timeout)
        value, exc_info = outcome
        if exc_info is None:
            return value
        try:
            raise _exception_of(exc_info)
        finally:
            # The error's traceback now holds this frame: with the future
            # and its outcome among its locals, a cycle only the collector
            # frees, holding whatever the error holds (as concurrent.futures).
            del self, outcome, exc_info

    def set(self, value: Any | None = None) -> None:
        self._settle((value, None))

    def set_exception(self, exc_info: Any | None = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        assert len(exc_info) == 3
        self._settle((None, exc_info))

    def set_get_hook(self, func: Any) -> None:
        with self._guard:
            if self._outcome is not None or self._get_hook is not None:
                raise queue.Full
            super().set_get_hook(func)
        if not getattr(_DERIVING, "on", False):  # else _follow finishes it
            self._finish()

    def map(self, func: Callable[[T], Any]) -> pykka.Future[Any]:
        return self._derived(super().map, (self,), func)

    def filter(self, func: Callable[[Any], bool]) -> pykka.Future[Any]:
        parent: Any = super()  # pykka types it for futures of iterables only
        return self._derived(parent.filter, (self,), func)

    def reduce(self, func: Callable[..., Any], *args: Any) -> pykka.Future[Any]:
        parent: Any = super()
        return self._derived(parent.reduce, (self,), func, *args)

    def join(self, *futures: pykka.Future[Any]) -> pykka.Future[Any]:
        return self._derived(super().join, (self, *futures), *futures)

    def _derived(
        self, combine: Callable[..., pykka.Future[Any]], sources: tuple[Any, ...], *args: Any
    ) -> pykka.Future[Any]:
        """Pykka's ``combine(*args)``, a future done once ``sources`` are."""
        _DERIVING.on = True
        try:
            future = combine(*args)
        finally:
            _DERIVING.on = False
        if isinstance(future, ReplyFuture):
            _follow(future, sources)
        return future

    def _finish(self) -> None:
        """Its get hook stands for its outcome from now on: run its callbacks."""
        with self._guard:
            if self._finished:
                return
            self._finished = True
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        self._run(callbacks)

    def add_done_callback(self, callback: Callable[[ReplyFuture[T]], object]) -> None:
        """Call ``callback(self)`` once the outcome is in: at once, in this
        thread, if it is; else in the thread that sets it (for a request,
        one of the node's own: the Receiver when the reply comes, its timer
        on a timeout, the Scheduler or a Concern when it is dropped), after
        every ``get`` waiting has been let go. So it must be quick and never
        block, nor call the node's methods that wait (``add_peer``,
        ``stop``...): tell an actor, set an event (``get(timeout=0)`` in it
        gives the outcome). What it raises is logged, not raised.

        Example::

            future = node.request(b"carol", b"lookup", {"k": 1})
            future.add_done_callback(lambda f: self.actor_ref.tell(("looked up", f)))
        """
        with self._guard:
            if not self._finished:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        self._run([callback])

    def _settle(self, outcome: tuple[Any, Any]) -> None:
        with self._guard:
            if self._outcome is not None or self._get_hook is not None:
                raise queue.Full
            self._outcome, self._finished = outcome, True
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        if callbacks:
            self._run(callbacks)

    def _run(self, callbacks: list[Callable[[ReplyFuture[T]], object]] | None) -> None:
        for callback in callbacks or ():
            try:
                callback(self)
            except APPLICATION_ERRORS:
                log.exception("a done callback of %r raised (ignored)", self)


_DERIVING = threading.local()
"""``on`` while a ``ReplyFuture`` makes a derived future: its get hook, set
then, does not finish it (``_follow`` does)."""


def _follow(future: ReplyFuture[Any], sources: tuple[Any, ...]) -> None:
    """Finish ``future`` once every one of ``sources`` is done; at once if
    one is not a ``ReplyFuture`` (nothing says when another kind is done)."""
    if not all(isinstance(source, ReplyFuture) for source in sources):
        future._finish()
        return
    left = [len(sources)]
    lock = _thread.allocate_lock()

    def one_done(_source: object) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            future._finish()

    for source in sources:
        source.add_done_callback(one_done)


def _exception_of(exc_info: tuple[Any, Any, Any]) -> BaseException:
    """The exception of a future's ``exc_info``, with the traceback it was
    set with (raising it again in ``get`` would add to that one)."""
    exc_type, exc_value, traceback = exc_info
    if exc_value is None:
        exc_value = exc_type()
    if exc_value.__traceback__ is not traceback:
        exc_value = exc_value.with_traceback(traceback)
    return exc_value  # type: ignore[no-any-return]
