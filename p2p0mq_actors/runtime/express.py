"""The express gate: one actor hop from the application to an idle peer.

Rules:
- The Scheduler opens a peer's gate when the peer is idle (nothing queued,
  no plan in flight, writable) and counts that peer as having a plan in
  flight from then on: it plans nothing for it until the gate is closed.
- A sender with a fast message for that peer may claim the gate (once:
  claiming closes it) and tell the PeerConnection a one-message plan
  directly, skipping the Scheduler's thread.
- When that plan went out whole (the socket did not block), the
  PeerConnection hands the gate back open (``hand_back``), still counted
  busy, and tells the Scheduler nothing: an express message costs one tell,
  not two, and no Scheduler wake-up. Otherwise (blocked, closed, or the
  Scheduler asked for the gate meanwhile) its result goes to the Scheduler
  like any other plan's, and the Scheduler opens the gate again when the
  peer is idle.
- When the Scheduler gets work for a peer with an open gate it closes the
  gate itself first; whoever takes the gate (claim or close) wins, under one
  lock, so no peer ever has two plans in flight. A close that finds the gate
  claimed takes the claim away: that plan's result then goes to the
  Scheduler, which counts the peer busy until it arrives.
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
        self._claimed: dict[bytes, Any] = {}

    def open(self, peer: bytes, ref: Any) -> None:
        """Let one fast message go straight to ``peer`` (the Scheduler calls this)."""
        with self._lock:
            self._open[peer] = ref

    def close(self, peer: bytes) -> bool:
        """Take the gate back; False if someone claimed it first (its plan's
        result then comes to the Scheduler)."""
        with self._lock:
            return self._close_one(peer)

    def close_locked(self, peers: set[bytes]) -> list[bytes]:
        """Close several gates; the caller holds the lock. Returns those closed."""
        return [peer for peer in peers if self._close_one(peer)]

    def _close_one(self, peer: bytes) -> bool:
        if self._open.pop(peer, None) is not None:
            return True
        self._claimed.pop(peer, None)
        return False

    def claim_locked(self, peer: bytes) -> Any:
        """Take the gate to tell ``peer`` directly (the caller holds the lock):
        its PeerConnection ref, or None if the gate is shut."""
        ref = self._open.pop(peer, None)
        if ref is not None:
            self._claimed[peer] = ref
        return ref

    def hand_back(self, peer: bytes, *, reopen: bool) -> bool:
        """End a claim (the PeerConnection calls this when the claimed plan is
        done). With ``reopen``, open the gate again if the claim still
        stands: True means the Scheduler needs no result for that plan."""
        with self._lock:
            ref = self._claimed.pop(peer, None)
            if ref is None or not reopen:
                return False
            self._open[peer] = ref
            return True

    def close_all(self) -> None:
        with self._lock:
            self._open.clear()
            self._claimed.clear()

    def __repr__(self) -> str:
        return f"<ExpressGate open={len(self._open)} claimed={len(self._claimed)}>"
