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
import resource
import threading
from typing import Any

import zmq

log = logging.getLogger("p2p0mq_actors.transport")

Context = zmq.Context[Any]


DEFAULT_MAX_SOCKETS = 16_384
"""libzmq allows 1,023 sockets per context by default, and a monitored peer
costs three: a node asks for this many instead (bounded by the open-file limit)."""


def new_context(max_sockets: int | None = None) -> Context:
    """A new zmq context able to hold ``max_sockets`` sockets.

    By default the process's open-file soft limit is raised to its hard limit
    (each socket needs a descriptor) and the context allows as many sockets as
    that leaves room for, up to ``DEFAULT_MAX_SOCKETS``. Running out later is
    reported as a ``TransportError`` that says which limit to raise.
    """
    files = raise_file_limit()
    if max_sockets is None:
        max_sockets = max(1023, min(DEFAULT_MAX_SOCKETS, files - 64))
    ctx: Context = zmq.Context()
    ctx.MAX_SOCKETS = max_sockets
    return ctx


def raise_file_limit() -> int:
    """Raise the open-file soft limit to the hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            log.debug("raised the open-file limit from %d to %d", soft, wanted)
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 65_536


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
