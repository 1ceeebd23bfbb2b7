"""Shared pieces for the actor tests: a send path on fake sockets and a manual clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import count
from typing import Any

from p2p0mq_actors.core.codec import decode
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.core.policy import FailurePolicy
from p2p0mq_actors.core.ports import PeerAddress
from p2p0mq_actors.runtime.messages import AddPeer
from p2p0mq_actors.runtime.outcomes import ConcernRegistry
from p2p0mq_actors.runtime.peer import PeerConnection
from p2p0mq_actors.runtime.scheduler import Scheduler
from p2p0mq_actors.runtime.sender import Sender
from p2p0mq_actors.testing.clock import ManualClock
from p2p0mq_actors.testing.fake_socket import FakeSocketFactory
from p2p0mq_actors.testing.recorder import MessageLog, OutcomeBook, Recorder, RecordingConcern

ME = b"me"
KEY = b"k" * 40
_ids = count(1)


class Recording(RecordingConcern):
    command = b"t"


def make(
    clock: ManualClock, peer: bytes, *, prio: Priority = Priority.MEDIUM, ttl: float = 30.0
) -> Message:
    return Message.create(
        ME, peer, b"t", {"n": 1}, now=clock.now(), ttl=ttl, priority=prio, message_id=next(_ids)
    )


class Journal:
    """Every message any fake socket sent, in one global order: (peer, message id).

    ``hook(peer, entries)`` runs after each send, in the sending actor's thread.
    """

    def __init__(
        self,
        factory: FakeSocketFactory,
        peers: list[bytes],
        hook: Callable[[bytes, int], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[bytes, int]] = []
        self.hook = hook
        for peer in peers:
            sock = factory.prepare(peer)
            sock.send_frames = self._wrap(peer, sock.send_frames)  # type: ignore[method-assign]

    def _wrap(self, peer: bytes, send: Callable[[list[bytes]], None]) -> Callable[..., None]:
        def journaled(frames: list[bytes]) -> None:
            with self._lock:
                send(frames)
                mid = decode([ME, *frames], peer, now=0.0).message_id
                self.entries.append((peer, mid))
                n = len(self.entries)
            if self.hook is not None:
                self.hook(peer, n)

        return journaled

    def ids(self) -> list[int]:
        with self._lock:
            return [mid for _, mid in self.entries]


class Path:
    """A Sender on fake sockets, a manual clock and a recording Concern."""

    def __init__(self, peers: list[bytes], **options: object) -> None:
        self.clock = ManualClock()
        self.factory = FakeSocketFactory()
        self.book = OutcomeBook()
        self.peers = peers
        self.journal = Journal(self.factory, peers)
        options.setdefault("shuffle", lambda order: None)
        self.sender = Sender(ME, sockets=self.factory, clock=self.clock, **options)  # type: ignore[arg-type]
        self.concern = self.sender.add_concern(
            Recording, book=self.book, policy=options.get("policy") or FailurePolicy()
        )
        for peer in peers:
            self.sender.add_peer(peer, f"tcp://127.0.0.1:1/{peer.decode()}", KEY)
        self.sender.connect_peers()

    def msg(self, peer: bytes, prio: Priority = Priority.MEDIUM, ttl: float = 30.0) -> Message:
        return make(self.clock, peer, prio=prio, ttl=ttl)

    def sock(self, peer: bytes):  # type: ignore[no-untyped-def]
        return self.factory.wait_for_socket(peer)


class Kit:
    """One actor alone: its neighbours are Recorders, its socket a FakeSocket,
    its clock a ManualClock."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.factory = FakeSocketFactory()
        self.log = MessageLog()
        self.recorder = Recorder.start(self.log)
        self.book = OutcomeBook()
        self.registry = ConcernRegistry()
        self.concern = Recording.start(book=self.book, scheduler=self.recorder, clock=self.clock)
        self.registry.add(b"t", self.concern)

    def scheduler_with(self, *peers: bytes, **options: Any) -> tuple[Any, dict[bytes, MessageLog]]:
        """A Scheduler (no shuffling) whose peers are Recorders; returns it
        and what each peer was told."""
        sched = Scheduler.start(
            concerns=self.registry, clock=self.clock, shuffle=lambda order: None, **options
        )
        logs = {}
        for uuid in peers:
            logs[uuid] = MessageLog()
            sched.tell(AddPeer(uuid, Recorder.start(logs[uuid])))
        return sched, logs

    def peer(self, uuid: bytes = b"x", **options: Any) -> Any:
        return PeerConnection.start(
            PeerAddress(uuid, "tcp://127.0.0.1:1", KEY),
            scheduler=self.recorder,
            concerns=self.registry,
            sockets=self.factory,
            clock=self.clock,
            **options,
        )
