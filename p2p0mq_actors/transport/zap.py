"""ZAP (ZeroMQ's authentication protocol, RFC 27) for one zmq context,
answered in a thread of its own.

pyzmq's ``Authenticator`` speaks the protocol: it reads a request, asks the
credentials provider about the client's CURVE key, and replies with the
status and the User-Id (the key in Z85) that libzmq then attaches to every
message of that connection. This module only runs it.

Why not pyzmq's ``ThreadAuthenticator``: its thread waits in an asyncio
event loop, which does not notice its context being terminated. When
someone else terminates the context (a node's ``context_factory`` may hand
out a context that the application ends), that thread never closes its two
sockets, and ``Context.term`` waits for them forever (measured, pyzmq 27.3;
``tests/transport/test_zap.py``). It also needs an event loop, which cannot
be made when the process is out of file descriptors; the thread then died
unseen and ``stop`` waited for it forever.

Rules:
- The thread waits in a plain ``zmq.Poller`` on the ZAP socket and on a
  stop pipe. When its context ends, the poll raises ``ContextTerminated``:
  it closes its sockets and ends, and so ``Context.term`` can return.
- A request is answered by ``Authenticator.handle_zap_message``, driven in
  this thread without an event loop: a credentials provider must answer
  at once (``AllowedKeys`` does). One that raises, or answers with an
  awaitable, refuses that client (status 500) and the thread goes on.
- The listening socket sets ``ZAP_DOMAIN`` to ``ZAP_DOMAIN`` and enforces it
  (``ZAP_ENFORCE_DOMAIN``): without that, libzmq admits any CURVE client,
  with no User-Id, whenever no ZAP handler is bound, as after this thread
  ended.
- ``start`` from one thread; ``stop`` is idempotent and waits for the
  thread at most ``STOP_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from typing import Any, Final

import zmq
from zmq.auth.base import Authenticator

ZAP_DOMAIN: Final = "p2p0mq"
"""The ZAP domain a listening socket names in its requests, and the one
``ZapThread`` answers for (another domain is refused: "Unknown domain")."""
STOP_TIMEOUT: Final = 5.0
"""How long ``stop`` waits for the thread to end, in seconds."""
MAX_FAILURES: Final = 100
"""zmq errors in a row after which the thread stops answering (a socket in
a state it cannot leave would make it spin)."""
_INTERNAL_ERROR: Final = b"500"

_log = logging.getLogger(__name__)
_pipes = itertools.count()


class ZapThread(Authenticator):
    """Answers the ZAP requests of ``context`` with ``provider`` (an object
    with ``callback(domain, z85_key) -> bool``), in a daemon thread.

    Raises (``start``):
        zmq.ZMQError: ``EADDRINUSE`` if the context already has a ZAP handler
            (libzmq allows one a context); nothing is left running then.
    """

    def __init__(self, context: zmq.Context[Any], provider: Any, log: Any = None) -> None:
        super().__init__(context, log=log or _log)
        self.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=provider)
        self._thread: threading.Thread | None = None
        self._stopper: zmq.Socket[Any] | None = None

    def start(self) -> None:
        """Bind the ZAP endpoint and start answering."""
        endpoint = f"inproc://p2p0mq-zap-stop-{next(_pipes)}"
        stopper: zmq.Socket[Any] | None = None
        listener: zmq.Socket[Any] | None = None
        try:
            super().start()  # binds inproc://zeromq.zap.01: EADDRINUSE if taken
            stopper = self.context.socket(zmq.PAIR, socket_class=zmq.Socket)
            stopper.linger = 0
            stopper.bind(endpoint)
            listener = self.context.socket(zmq.PAIR, socket_class=zmq.Socket)
            listener.linger = 0
            listener.connect(endpoint)
            thread = threading.Thread(
                target=self._run, args=(listener,), name="p2p0mq-zap", daemon=True
            )
            thread.start()  # hands the ZAP socket and the listener to it
        except BaseException:
            for sock in (listener, stopper, self.zap_socket):
                if sock is not None:
                    sock.close(linger=0)
            self.zap_socket = None  # type: ignore[assignment]
            raise
        self._stopper, self._thread = stopper, thread

    def stop(self) -> None:
        """Stop answering: the thread closes its sockets and ends. Idempotent;
        safe after the context ended."""
        thread, stopper = self._thread, self._stopper
        self._thread = self._stopper = None
        if stopper is not None:
            with contextlib.suppress(zmq.ZMQError):  # the context ended: the thread saw it
                stopper.send(b"", zmq.NOBLOCK)
            if thread is not None:
                thread.join(STOP_TIMEOUT)
                if thread.is_alive():
                    self.log.warning("the ZAP thread did not end within %s s", STOP_TIMEOUT)
            stopper.close(linger=0)
        if thread is None or not thread.is_alive():
            self.zap_socket = None  # type: ignore[assignment]  # the thread closed it

    def is_alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end (its context
        ended, or ``stop``); True if it is not running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.is_alive()

    def _run(self, listener: zmq.Socket[Any]) -> None:
        zap = self.zap_socket
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(listener, zmq.POLLIN)
        failures = 0  # zmq errors in a row while answering
        try:
            while failures < MAX_FAILURES:
                try:
                    ready = dict(poller.poll())
                    if listener in ready:
                        return
                    if zap in ready:
                        self._answer(zap.recv_multipart())
                    failures = 0
                except zmq.ContextTerminated:
                    return
                except zmq.ZMQError:  # a reply that could not go: the next one may
                    failures += 1
                    self.log.exception("ZAP: a request could not be answered")
            self.log.error(
                "ZAP: %d errors in a row; it stops answering, and no client gets in "
                "from now on (the listening socket enforces ZAP)",
                failures,
            )
        finally:
            listener.close(linger=0)
            zap.close(linger=0)

    def _answer(self, request: list[bytes]) -> None:
        """Answer one request, driving ``handle_zap_message`` to its end
        without an event loop (it awaits only an awaitable provider)."""
        answering = self.handle_zap_message(request)
        try:
            answering.send(None)
        except StopIteration:
            return  # answered
        except zmq.ZMQError:  # the socket's, not the provider's
            raise
        except Exception:
            self.log.exception("ZAP: the credentials provider failed; the client is refused")
        else:
            answering.close()
            self.log.error(
                "ZAP: the credentials provider answered with an awaitable; this thread "
                "takes immediate answers only, so the client is refused"
            )
        if len(request) >= 2:  # (a shorter one was answered, or cannot be)
            self._send_zap_reply(request[1], _INTERNAL_ERROR, b"Internal error")
