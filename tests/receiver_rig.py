"""A Receiver listening on 127.0.0.1 with a recording Concern, and raw CURVE
DEALER clients to feed it: shared by the Receiver's runtime and integration tests.

Every wait is bounded; ``close`` stops the Receiver (which ends its own
context) and terminates the clients' context.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka
import zmq

from p2p0mq_actors.core.codec import WireShape, encode
from p2p0mq_actors.core.message import Message
from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.runtime.messages import FLUSH, Bind, Received
from p2p0mq_actors.runtime.outcomes import ConcernRegistry
from p2p0mq_actors.runtime.receiver import Receiver
from p2p0mq_actors.testing import ManualClock, MessageLog, Recorder
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import AllowedKeys

BOB = b"bob"
ALICE = b"alice"
COMMAND = b"cmd"
TIMEOUT = 5.0


class Contexts:
    """A ``context_factory`` that keeps every context it made, in order."""

    def __init__(self) -> None:
        self.made: list[zmq.Context[Any]] = []

    def __call__(self) -> zmq.Context[Any]:
        self.made.append(zmq.Context())
        return self.made[-1]


def end_and_expect_let_go(rig: Rig, context: zmq.Context[Any], why: str) -> None:
    """End ``context`` from another thread, as an application would: its
    ``term`` must return (the Receiver closed its sockets, state BROKEN),
    and the Receiver still stops."""
    ender = threading.Thread(target=context.term, name="test-ender", daemon=True)
    ender.start()
    ender.join(TIMEOUT)
    assert not ender.is_alive(), why
    assert rig.stats()["state"] == "BROKEN"
    assert rig.ref.stop(timeout=TIMEOUT) is True


class Rig:
    """Bob's Receiver (uuid ``BOB`` unless told) admitting Alice's key, with a
    ``Recorder`` as the Concern of ``COMMAND``. ``options`` go to ``Receiver.start``."""

    def __init__(self, *, uuid: bytes = BOB, **options: Any) -> None:
        self.uuid = uuid
        self.server_keys = generate_keypair()
        self.alice_keys = generate_keypair()
        self.allowed = AllowedKeys([self.alice_keys.public])
        self.clock = ManualClock()
        self.log = MessageLog()
        self.recorder = Recorder.start(self.log)
        self.concerns = ConcernRegistry()
        self.concerns.add(COMMAND, self.recorder)
        self.ctx: zmq.Context[Any] = zmq.Context()
        # Kept here: a socket nobody references is closed by the garbage
        # collector, and with linger 0 what it still held is lost.
        self.clients: list[zmq.Socket[Any]] = []
        self.ref = Receiver.start(
            uuid=uuid,
            keys=self.server_keys,
            allowed=self.allowed,
            concerns=self.concerns,
            clock=self.clock,
            **options,
        )
        self.proxy = self.ref.proxy()
        self.endpoint: str = self.ref.ask(Bind("tcp://127.0.0.1:*"), timeout=TIMEOUT)

    # -- clients -------------------------------------------------------------

    def client(
        self,
        *,
        identity: bytes | None = ALICE,
        keys: KeyPair | None = None,
        server_key: bytes | None = None,
        curve: bool = True,
    ) -> zmq.Socket[Any]:
        """A DEALER connected to the Receiver: Alice's admitted CURVE client by default."""
        sock: zmq.Socket[Any] = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        if identity is not None:
            sock.identity = identity
        if curve:
            keys = keys or self.alice_keys
            sock.curve_publickey = keys.public
            sock.curve_secretkey = keys.secret
            sock.curve_serverkey = server_key or self.server_keys.public
        sock.connect(self.endpoint)
        self.clients.append(sock)
        return sock

    def send(
        self, sock: zmq.Socket[Any], *messages: Message | Sequence[bytes], refused: bool = False
    ) -> None:
        """Send each message (encoded as 0.1.1) or raw frame list, never blocking.

        With ``refused``, the client is expected to be refused: libzmq may
        already have dropped its only connection (a refused client does not
        reconnect), and a DEALER without one cannot queue; that is not an error.
        """
        for message in messages:
            frames = encode(message, WireShape.V011) if isinstance(message, Message) else message
            try:
                sock.send_multipart(list(frames), flags=zmq.NOBLOCK)
            except zmq.Again:
                if not refused:
                    raise

    def message(self, n: int, **fields: Any) -> Message:
        """Alice's request ``n`` for Bob, as Bob's Receiver decodes it (same deadline)."""
        defaults: dict[str, Any] = {
            "source": ALICE,
            "destination": self.uuid,
            "command": COMMAND,
            "payload": {"n": n},
            "message_id": n,
        }
        defaults.update(fields)
        return Message.create(
            defaults.pop("source"),
            defaults.pop("destination"),
            defaults.pop("command"),
            defaults.pop("payload"),
            now=self.clock.now(),
            **defaults,
        )

    # -- what the Receiver did -------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.proxy.stats().get(timeout=TIMEOUT)
        return stats

    def wait_stats(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """Ask ``stats()`` until ``predicate`` holds. No sleep is needed: each
        ask waits behind the Receiver's current step (up to one poll)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"stats never matched within {timeout} s: {stats}")

    def received(self) -> list[Received]:
        """Every tell the Concern got so far (the Recorder is flushed first)."""
        self.recorder.ask(FLUSH, timeout=TIMEOUT)
        return [item for item in self.log.items() if item is not FLUSH]

    def delivered(self) -> list[Message]:
        """The messages of ``received()``, flattened."""
        return [m for r in self.received() for m in r.messages]

    def close(self) -> None:
        for actor in (self.ref, self.recorder):
            with contextlib.suppress(pykka.ActorDeadError):
                actor.stop(timeout=TIMEOUT)
        self.ctx.destroy(linger=0)
