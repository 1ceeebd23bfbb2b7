"""zmq contexts: made and ended here, so that nothing above ``transport/``
imports zmq.

Rules:
- A node's sending sockets share one context; its receiving ROUTER (and its
  ZAP authenticator) gets its own (one authenticator per context).
- ``end_context`` never hangs: sockets are closed with linger 0 by their
  owners; whatever is left is destroyed after ``timeout``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import zmq

log = logging.getLogger("p2p0mq_actors.transport")

Context = zmq.Context[Any]


def new_context(max_sockets: int | None = None) -> Context:
    """A new zmq context; ``max_sockets`` raises libzmq's limit (1,023 by default)."""
    ctx: Context = zmq.Context()
    if max_sockets is not None:
        ctx.MAX_SOCKETS = max_sockets
    return ctx


def end_context(ctx: Context, timeout: float = 5.0) -> bool:
    """Terminate ``ctx``; True if it ended cleanly within ``timeout`` seconds.

    A context whose sockets are not all closed would block ``term`` forever;
    after ``timeout`` the remaining sockets are closed with linger 0.
    """
    if ctx.closed:
        return True
    ender = threading.Thread(target=ctx.term, name="p2p0mq-ctx-term", daemon=True)
    ender.start()
    ender.join(timeout)
    if not ender.is_alive():
        return True
    log.warning("zmq context did not end within %.1f s: closing its sockets", timeout)
    ctx.destroy(linger=0)
    ender.join(timeout)
    return False
