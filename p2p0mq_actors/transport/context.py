"""zmq contexts: made and ended here, so that nothing above ``transport/``
imports zmq.

Rules:
- A node's sending sockets share one context; its receiving ROUTER (and its
  ZAP authenticator) gets its own (one authenticator per context).
- ``end_context`` never hangs and never raises: sockets are closed with
  linger 0 by their owners; a context whose sockets are still open after
  ``timeout`` is left to end by itself once they are closed.
- Descriptors are counted before libzmq takes them (``check_descriptors``):
  libzmq aborts the whole process when its reaper or I/O thread cannot get
  one, and a socket it cannot make fails far from the cause.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import sys
import threading
from typing import Any

import zmq

from ..core.errors import ConfigurationError, TransportError

log = logging.getLogger("p2p0mq_actors.transport")

Context = zmq.Context[Any]


DEFAULT_MAX_SOCKETS = 16_384
"""libzmq allows 1,023 sockets per context by default, and a monitored peer
costs three: a node asks for this many instead (bounded by the open-file limit)."""

CONTEXT_DESCRIPTORS = 1
"""Descriptors ``zmq.Context()`` takes: its termination mailbox (an eventfd)."""
START_DESCRIPTORS = 4
"""Descriptors a context takes at its first socket: an epoll and a mailbox
for each of its reaper and I/O threads. libzmq aborts the process (in
``epoll.cpp`` or ``ctx.cpp``) when it cannot get them, and whether a context
has started cannot be asked, so every check keeps room for them.

Measured on libzmq 4.3.5 by counting ``/proc/self/fd`` before and after."""

_FD_DIR = "/proc/self/fd"
_STATUS = "/proc/self/status"
_FD_SIZE = re.compile(rb"^FDSize:\s*(\d+)", re.MULTILINE)
_ENDERS: dict[int, threading.Thread] = {}  # id(ctx) -> the thread running its one term()
_ENDERS_LOCK = threading.Lock()


def new_context(max_sockets: int | None = None) -> Context:
    """A new zmq context able to hold ``max_sockets`` sockets.

    By default the process's open-file soft limit is raised to its hard limit
    (each socket needs a descriptor) and the context allows as many sockets as
    that leaves room for, up to ``DEFAULT_MAX_SOCKETS`` (at least 1,023,
    libzmq's own default). Running out later is reported as a
    ``TransportError`` that says which limit to raise.

    Raises:
        ConfigurationError: ``max_sockets`` is not an int from 1 to the
            open-file limit.
        TransportError: too few descriptors are free for a context (see
            ``check_descriptors``).
    """
    files = raise_file_limit()
    if max_sockets is None:
        max_sockets = max(1023, min(DEFAULT_MAX_SOCKETS, files - 64))
    elif isinstance(max_sockets, bool) or not isinstance(max_sockets, int):
        raise ConfigurationError(f"max_sockets must be an int, got {max_sockets!r}")
    elif not 1 <= max_sockets <= max(files, DEFAULT_MAX_SOCKETS):
        # libzmq sizes a table by it at start (2**31 - 1 aborts the process);
        # more than descriptors allow does no harm, as libzmq's own 1,023 may.
        raise ConfigurationError(
            f"max_sockets must be from 1 to {max(files, DEFAULT_MAX_SOCKETS)} (each socket "
            f"needs a file descriptor: RLIMIT_NOFILE is {files}), got {max_sockets!r}"
        )
    check_descriptors(CONTEXT_DESCRIPTORS, "a zmq context")
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


def check_descriptors(needed: int, what: str, *, peer: bytes | None = None) -> None:
    """Raise unless ``needed`` more descriptors (and ``START_DESCRIPTORS``)
    can be opened under RLIMIT_NOFILE, before making ``what``.

    Cheap while the process is far from its limit: the size of its
    descriptor table (``FDSize`` in ``/proc/self/status``, 16 µs) bounds how
    many are open. Near it, the open ones are counted (``/proc/self/fd``:
    O(open), 1.6 ms with 4,000 open). Not checked where ``/proc`` is
    missing (not Linux); libzmq then reports EMFILE where it can.

    Raises:
        TransportError: (errno EMFILE) too few descriptors are free; the
            message names the limit, how many are open and how many are needed.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return
    needed += START_DESCRIPTORS
    try:
        if soft - _table_size() >= needed:
            return
        opened = len(os.listdir(_FD_DIR)) - 1  # less the one listdir itself used
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            return  # no /proc: cannot tell
        opened = soft
    if soft - opened >= needed:
        return
    raise TransportError(
        f"cannot make {what}: it needs up to {needed} file descriptors and "
        f"{max(0, soft - opened)} are free ({opened} open, RLIMIT_NOFILE {soft}); raise the "
        "open-file limit (ulimit -n) or close files, sockets or peers",
        errno=errno.EMFILE,
        peer=peer,
    )


def _table_size() -> int:
    """The size of this process's descriptor table: above its highest open one
    (``sys.maxsize`` if the kernel does not say)."""
    with open(_STATUS, "rb") as status:
        found = _FD_SIZE.search(status.read())
    return int(found[1]) if found else sys.maxsize


def end_context(ctx: Context, timeout: float = 5.0) -> bool:
    """Terminate ``ctx``; True if it ended within ``timeout`` seconds.

    Never raises and never waits longer than ``timeout``. ``term`` blocks
    until every socket of the context is closed, so it runs in a helper
    thread (a daemon); when sockets are still open after ``timeout``, a
    warning names them and False is returned. The helper thread then stays,
    and ends the context as soon as their owners close them (a later call
    waits for that same thread: ``term`` runs once).

    Why not ``ctx.destroy(linger=0)`` then, as pyzmq offers: it closes the
    sockets from this thread, while their owners may still use them (pyzmq
    warns that ``Socket.close`` is not thread-safe), and calls ``term`` a
    second time while the first still runs. Measured: ``ZMQError: Bad
    address``, hangs, and libzmq aborting the process (``signaler.cpp``).
    """
    with _ENDERS_LOCK:
        if ctx.closed:
            return True
        ender = _ENDERS.get(id(ctx))
        if ender is None:
            ender = threading.Thread(
                target=_term, args=(ctx,), name="p2p0mq-ctx-term", daemon=True
            )
            _ENDERS[id(ctx)] = ender
            ender.start()
    ender.join(timeout)
    if ender.is_alive():
        log.warning(
            "zmq context did not end within %.1f s: %s; it ends once they are closed",
            timeout,
            _open_sockets(ctx),
        )
        return False
    return bool(ctx.closed)


def _term(ctx: Context) -> None:
    try:
        ctx.term()
    except zmq.ZMQError as exc:
        log.warning("terminating a zmq context failed: %s", exc)
    finally:
        with _ENDERS_LOCK:
            del _ENDERS[id(ctx)]


def _open_sockets(ctx: Context) -> str:
    """The context's sockets not closed yet, as pyzmq names them (its private
    set of them, read as ``Context.destroy`` does; a repr reads no option)."""
    try:
        names = [repr(s) for s in list(getattr(ctx, "_sockets", None) or ()) if not s.closed]
    except RuntimeError:  # the set changed while read, in another thread
        return "some of its sockets are still open"
    return f"{len(names)} socket(s) still open: {', '.join(names)}" if names else "closing"
