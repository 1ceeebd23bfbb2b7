"""Backlog: received messages handed to Concerns and not yet handled.

A Concern's inbox is a pykka inbox, which never pushes back (trap 5 of
PERFORMANCE.md): a Receiver that reads as fast as peers send would pile
everything a slow Concern has not handled yet in memory, without bound,
while the peers believe it delivered. The Receiver counts here what it
hands each Concern, and each Concern counts off what it handled; when the
count reaches the limit the Receiver stops reading until it is down to
half. What peers send meanwhile waits in the socket and in the peers' own
queues (zmq's high-water marks and TCP carry the pressure back to them),
where their deadlines and failure reports apply as usual.

Rules:
- ``add`` (the Receiver, before it tells) returns the callback the Concern
  calls once it handled that batch (``Received.done``); calling it twice
  counts off once. ``done(False)`` (``Received.lost``): the Concern
  stopped before handling it; the batch is counted ``lost``.
- A Concern that stopped counts off nothing more: ``forget_stopped`` drops
  what such Concerns held, so a stopped Concern never holds the Receiver,
  and counts it ``lost``.
- Thread-safe; one lock, taken once per batch on each side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Backlog:
    """How many received messages the Concerns were handed and have not
    handled yet, per Concern, and a wait for that number to fall."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.resume_at = limit // 2
        """``wait`` returns once the count is at most this."""
        self._cond = threading.Condition(threading.Lock())
        self._held: dict[str, list[Any]] = {}  # actor urn -> [ref, count]
        self.total = 0
        """Messages handed and not yet handled (read without the lock: a
        snapshot)."""
        self.lost = 0
        """Messages handed to Concerns that stopped before handling them."""

    @property
    def full(self) -> bool:
        """Whether the Receiver should read no more for now."""
        return self.total >= self.limit

    def add(self, ref: Any, count: int) -> Callable[..., None]:
        """Count ``count`` messages handed to the Concern ``ref``; returns what
        that Concern calls once it handled them (``done(False)``: it stopped
        first, and they are counted ``lost``)."""
        urn = ref.actor_urn
        with self._cond:
            entry = self._held.get(urn)
            if entry is None:
                self._held[urn] = [ref, count]
            else:
                entry[1] += count
            self.total += count
        once: list[bool] = []

        def done(handled: bool = True) -> None:
            if not once:
                once.append(True)
                self._release(urn, count, handled)

        return done

    def _release(self, urn: str, count: int, handled: bool) -> None:
        with self._cond:
            entry = self._held.get(urn)
            if entry is None:  # forgotten (counted lost then): its Concern had stopped
                return
            count = min(count, entry[1])
            entry[1] -= count
            if not entry[1]:
                del self._held[urn]
            self.total -= count
            if not handled:
                self.lost += count
            if self.total <= self.resume_at:
                self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the count to fall to
        ``resume_at``; True if it has."""
        with self._cond:
            return self._cond.wait_for(lambda: self.total <= self.resume_at, timeout)

    def forget_stopped(self) -> int:
        """Drop the counts of Concerns that are no longer running; returns how
        many messages they held."""
        with self._cond:
            gone = [urn for urn, (ref, _) in self._held.items() if not ref.is_alive()]
            dropped: int = sum(self._held.pop(urn)[1] for urn in gone)
            self.total -= dropped
            self.lost += dropped
            return dropped

    def held_by(self, ref: Any) -> int:
        """How many received messages the Concern ``ref`` holds (a snapshot)."""
        entry = self._held.get(ref.actor_urn)
        return 0 if entry is None else int(entry[1])

    def holders(self) -> list[tuple[Any, int]]:
        """Each Concern that holds messages, with how many, most first."""
        with self._cond:
            held = [(ref, count) for ref, count in self._held.values()]
        return sorted(held, key=lambda item: -item[1])

    def __repr__(self) -> str:
        return f"<Backlog {self.total}/{self.limit} held by {len(self._held)}>"
