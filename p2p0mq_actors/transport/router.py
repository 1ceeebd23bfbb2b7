"""The receiving socket of a node: a ROUTER bound as a CURVE server, guarded
by pyzmq's ZAP authenticator.

Rules:
- ZAP admits exactly the client public keys in ``allowed`` (Z85). Keys can be
  added and removed while it runs: a removed key is refused from the next
  handshake on. pyzmq's ``zmq.auth`` does the ZAP protocol; this module only
  answers "is this key known".
- One ZAP authenticator per zmq context (it binds ``inproc://zeromq.zap.01``),
  so a ``CurveRouter`` wants a context of its own.
- Used by one thread only (the owner's); ``close`` stops the authenticator
  and closes the socket with linger 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..core.ports import KeyPair
from .errors import bind_error
from .keys import check_key_pair, check_public_key

log = logging.getLogger("p2p0mq_actors.transport")

_NOBLOCK = int(zmq.NOBLOCK)


class AllowedKeys:
    """The set of client keys ZAP admits; thread-safe (ZAP asks from its thread)."""

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._lock = threading.Lock()
        self._keys = {check_public_key(k) for k in keys}
        self.refused = 0

    def add(self, key: bytes) -> None:
        with self._lock:
            self._keys.add(check_public_key(key))

    def discard(self, key: bytes) -> None:
        with self._lock:
            self._keys.discard(key)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: True admits ``key`` (Z85)."""
        with self._lock:
            ok = key in self._keys
            if not ok:
                self.refused += 1
        if not ok:
            log.info("ZAP refused client key %r (domain %r)", key, domain)
        return ok

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys


class CurveRouter:
    """A ROUTER socket bound as a CURVE server, admitting only ``allowed`` keys.

    Args:
        context: a zmq context of its own (one ZAP authenticator per context).
        keys: the server's key pair.
        allowed: the client public keys ZAP admits.
    """

    def __init__(self, context: zmq.Context[Any], keys: KeyPair, allowed: AllowedKeys) -> None:
        check_key_pair(keys)
        self.allowed = allowed
        self._auth = ThreadAuthenticator(context, log=log)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=allowed)
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.curve_server = True
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        self._socket: zmq.Socket[Any] | None = sock
        self.endpoint = ""

    def bind(self, endpoint: str) -> str:
        """Bind and return the real endpoint (``tcp://127.0.0.1:*`` works)."""
        sock = self._live()
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise bind_error(exc, endpoint=endpoint) from exc
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def recv_frames(self, timeout: float) -> list[bytes] | None:
        """One whole message (identity first), or None after ``timeout`` seconds."""
        sock = self._live()
        if not sock.poll(int(timeout * 1000)):
            return None
        frames = [sock.recv(_NOBLOCK)]
        while sock.getsockopt(zmq.RCVMORE):
            frames.append(sock.recv(_NOBLOCK))
        return frames

    def _live(self) -> zmq.Socket[Any]:
        if self._socket is None:
            raise RuntimeError("CurveRouter is closed")
        return self._socket

    def close(self) -> None:
        """Stop ZAP and close the socket. Idempotent."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
            self._auth.stop()

    def __repr__(self) -> str:
        state = "closed" if self._socket is None else "open"
        return f"<CurveRouter {self.endpoint or 'unbound'} {state} refused={self.allowed.refused}>"
