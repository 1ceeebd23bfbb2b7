"""ZAP (ZeroMQ's authentication protocol, RFC 27) for one zmq context,
answered in a thread of its own.

pyzmq's ``Authenticator`` speaks the protocol: it reads a request, asks the
credentials provider about the client's CURVE key, and replies with the
status and the User-Id (the key in Z85) that libzmq then attaches to every
message of that connection. This module only runs it.

Why not pyzmq's ``ThreadAuthenticator``: its thread waits in an asyncio
event loop, which does not notice its context being terminated. When
someone else terminates the context (a Receiver's ``context_factory`` may
hand out a context that the application ends), that thread never closes its two
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
  at once (``AllowedKeys`` does). Every request gets exactly one reply,
  which a REP socket needs to take the next: a provider that raises
  (anything, a zmq error too), or answers with an awaitable, and a
  request too short for pyzmq to answer, get status 500, and the thread
  goes on. After ``MAX_FAILURES`` zmq errors in a row it stops instead of
  spinning (logged).
- The ZAP socket is the thread's from ``start`` on (handed over by the
  thread's start); ``start`` runs once; ``stop`` may come from any
  thread, and more than once.
- The listening socket sets ``ZAP_DOMAIN`` to ``ZAP_DOMAIN`` and enforces it
  (``ZAP_ENFORCE_DOMAIN``): without that, libzmq admits any CURVE client,
  with no User-Id, whenever no ZAP handler is bound, as after this thread
  ended.
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
        RuntimeError: ``start`` was called before, whether it succeeded or
            not (make a new ``ZapThread`` to try again).
    """

    def __init__(self, context: zmq.Context[Any], provider: Any, log: Any = None) -> None:
        super().__init__(context, log=log or _log)
        self.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=provider)
        self._lock = threading.Lock()  # start and stop, from any thread
        self._started = False
        self._thread: threading.Thread | None = None
        self._stopper: zmq.Socket[Any] | None = None
        self._replied = False  # (the thread's) whether the request in hand has its reply

    def start(self) -> None:
        """Bind the ZAP endpoint and start answering (once).

        After this, ``zap_socket`` belongs to the thread: nothing else
        touches it.
        """
        with self._lock:
            if self._started:
                raise RuntimeError(f"{self!r} was started already (it starts once)")
            self._started = True
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
                raise
            self._stopper, self._thread = stopper, thread

    def stop(self) -> None:
        """Stop answering: the thread closes its sockets and ends (waited
        for up to ``STOP_TIMEOUT`` seconds). Idempotent, from any thread;
        safe after the context ended."""
        with self._lock:
            stopper, self._stopper = self._stopper, None
            if stopper is None:
                return
            try:
                with contextlib.suppress(zmq.ZMQError):  # the context ended: the thread saw it
                    stopper.send(b"", zmq.NOBLOCK)
                thread = self._thread
                # (not from the thread itself, a provider's: it ends after this request)
                if thread is not None and thread is not threading.current_thread():
                    thread.join(STOP_TIMEOUT)
                    if thread.is_alive():
                        self.log.warning("the ZAP thread did not end within %s s", STOP_TIMEOUT)
            finally:
                stopper.close(linger=0)

    def is_alive(self) -> bool:
        """Whether the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

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
        failures = 0  # errors in a row while answering
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
                except Exception:  # a reply that could not go: the next one may
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
        """Answer one request exactly once (a REP socket that does not reply
        takes no more requests), driving ``handle_zap_message`` to its end
        without an event loop (it awaits only an awaitable provider).
        Whatever goes wrong refuses the client (500)."""
        self._replied = False
        try:
            answering = self.handle_zap_message(request)
            try:
                answering.send(None)
            except StopIteration:
                pass  # answered (or, for a request too short, not: below)
            else:
                answering.close()
                self.log.error(
                    "ZAP: the credentials provider answered with an awaitable; this "
                    "thread takes immediate answers only, so the client is refused"
                )
        except BaseException:  # the provider's (even SystemExit), or a reply that failed
            # (If the context ended, the refusal's send raises ContextTerminated
            # itself, and the thread ends.)
            self.log.exception("ZAP: answering failed; the client is refused")
        if not self._replied:
            request_id = request[1] if len(request) >= 2 else b""
            self._send_zap_reply(request_id, _INTERNAL_ERROR, b"Internal error")

    def _send_zap_reply(
        self,
        request_id: bytes,
        status_code: bytes,
        status_text: bytes,
        user_id: str = "anonymous",
    ) -> None:
        """pyzmq's reply, noted as sent (``_answer``)."""
        super()._send_zap_reply(request_id, status_code, status_text, user_id)
        self._replied = True
