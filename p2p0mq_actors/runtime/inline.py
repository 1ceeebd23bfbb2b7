"""Inline handling: Concerns whose received messages the Receiver may handle
in its own thread.

Why: a request handed to a Concern costs a thread wake-up before the
Concern runs (the tell, then the woken thread waiting for a CPU): about 40
µs of a round trip on this 2-core machine, where raw pyzmq's whole round
trip is 160-210 µs. A Concern that declares its ``on_request`` and
``on_reply`` short and never blocking (``Concern.inline``) offers a handle
here; while it is idle, the Receiver calls that handle instead of telling.

Rules:
- The handle runs the Concern's handlers under the Concern's own lock, which
  its thread holds for every message it handles: one thread at a time ever
  runs the Concern's code, as in any actor. A busy or stopped Concern
  refuses (the handle returns False) and gets a tell as usual.
- The Receiver uses a handle only for a lone message (a drain of one zmq
  message holding one message, as in a round trip: a drain of several, or
  a native batch frame, is told, so that the
  Concern's thread works beside the Receiver's), and only while the
  Concern holds none of the received messages it was told before
  (``Backlog.held_by``), so received messages keep their order.
- Handles are held weakly, keyed by actor urn: a Concern that went away
  leaves nothing behind.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..core.message import Message

InlineHandle = Callable[[Sequence[Message]], bool]
"""Handles received messages in the caller's thread; False if it did not."""

# Reentrant: a handle's weakref callback (``gone``) may run in the middle of
# ``offer`` or ``withdraw``, in the same thread, when the garbage collector
# frees a Concern there.
_lock = threading.RLock()
_handles: dict[str, weakref.WeakMethod[InlineHandle]] = {}


def offer(urn: str, handle: InlineHandle) -> None:
    """Let the Receiver call ``handle`` (a bound method) for the actor ``urn``."""

    def gone(method: weakref.WeakMethod[InlineHandle]) -> None:
        with _lock:
            if _handles.get(urn) is method:
                del _handles[urn]

    with _lock:
        _handles[urn] = weakref.WeakMethod(handle, gone)


def withdraw(urn: str) -> None:
    """Forget the handle of the actor ``urn`` (stopping)."""
    with _lock:
        _handles.pop(urn, None)


def handle_of(ref: Any) -> InlineHandle | None:
    """The handle the Concern ``ref`` offered, if any and still alive."""
    method = _handles.get(ref.actor_urn)
    return None if method is None else method()
