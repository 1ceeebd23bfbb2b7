"""The express gate: one actor hop from the application to an idle peer.

Rules:
- The Scheduler opens a peer's gate when the peer is idle (nothing queued,
  no plan in flight, writable) and counts that peer as having a plan in
  flight from then on: it plans nothing for it until the gate is closed.
- A sender with a fast message for that peer may ``claim`` the gate (once:
  claiming closes it) and tell the PeerConnection a one-message plan
  directly, skipping the Scheduler's thread. The plan's result goes to the
  Scheduler like any other, which opens the gate again when the peer is idle.
- When the Scheduler gets work for a peer with an open gate it closes the
  gate itself first; whoever takes the gate (claim or close) wins, under one
  lock, so no peer ever has two plans in flight.
- The gate shares the intake's lock: a sender claims only while the intake
  is empty, and the Scheduler closes the gates of the peers it takes work
  for in the same step as it empties the intake, so a direct message never
  overtakes one of the same sender's that is still on its way.
"""

from __future__ import annotations

import threading
from typing import Any


class ExpressGate:
    """Which idle peers may be sent to directly; thread-safe."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._open: dict[bytes, Any] = {}

    def open(self, peer: bytes, ref: Any) -> None:
        """Let one fast message go straight to ``peer`` (the Scheduler calls this)."""
        with self._lock:
            self._open[peer] = ref

    def close(self, peer: bytes) -> bool:
        """Take the gate back; False if someone claimed it first."""
        with self._lock:
            return self._open.pop(peer, None) is not None

    def close_locked(self, peers: set[bytes]) -> list[bytes]:
        """Close several gates; the caller holds the lock. Returns those closed."""
        return [peer for peer in peers if self._open.pop(peer, None) is not None]

    def claim_locked(self, peer: bytes) -> Any:
        """Take the gate to tell ``peer`` directly (the caller holds the lock):
        its PeerConnection ref, or None if the gate is shut."""
        return self._open.pop(peer, None)

    def close_all(self) -> None:
        with self._lock:
            self._open.clear()

    def __repr__(self) -> str:
        return f"<ExpressGate open={len(self._open)}>"
