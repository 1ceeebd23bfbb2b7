"""A PeerConnection with a real CURVE DEALER, sending to a real CURVE ROUTER
guarded by ZAP (pyzmq's ``zmq.auth``) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from p2p0mq_actors.core.codec import WireShape, encode
from p2p0mq_actors.core.errors import PeerRefusedError
from p2p0mq_actors.core.message import Message, Priority
from p2p0mq_actors.core.policy import FailurePolicy
from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.runtime.sender import Sender
from p2p0mq_actors.testing.recorder import OutcomeBook, RecordingConcern
from p2p0mq_actors.transport.sockets import CurveDealerFactory

pytestmark = pytest.mark.integration


class Chat(RecordingConcern):
    command = b"chat"


class Server:
    """A CURVE ROUTER that admits exactly the client keys found in ``keys_dir``."""

    def __init__(self, tmp: Path, client_public: bytes) -> None:
        self.ctx = zmq.Context()
        pub, sec = zmq.curve_keypair()
        self.keys = KeyPair(pub, sec)
        allowed = tmp / "allowed"
        allowed.mkdir()
        (allowed / "alice.key").write_text(
            'metadata\ncurve\n    public-key = "' + client_public.decode() + '"\n'
        )
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allowed))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.curve_server = True
        self.router.curve_secretkey = sec
        self.router.curve_publickey = pub
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.last_endpoint.decode()

    def receive(self, timeout: float) -> list[bytes] | None:
        if not self.router.poll(int(timeout * 1000)):
            return None
        return self.router.recv_multipart()

    def close(self) -> None:
        self.router.close(linger=0)
        self.auth.stop()
        self.ctx.term()


@pytest.fixture
def alice_keys() -> KeyPair:
    return KeyPair(*zmq.curve_keypair())


@pytest.fixture
def server(tmp_path: Path, alice_keys: KeyPair) -> Iterator[Server]:
    s = Server(tmp_path, alice_keys.public)
    yield s
    s.close()


@pytest.fixture
def alice(alice_keys: KeyPair) -> Iterator[tuple[Sender, OutcomeBook]]:
    ctx = zmq.Context()
    sender = Sender(
        b"alice",
        sockets=CurveDealerFactory(ctx, b"alice", alice_keys),
        unreachable_after=0.5,
    )
    book = OutcomeBook()
    sender.add_concern(Chat, book=book, policy=FailurePolicy(max_attempts=0))
    yield sender, book
    sender.stop()
    ctx.term()


def test_the_router_receives_exactly_the_seven_frames_the_codec_promises(server, alice) -> None:  # type: ignore[no-untyped-def]
    sender, book = alice
    sender.add_peer(b"bob", server.endpoint, server.keys.public)
    sender.connect_peers()
    m = Message.create(
        b"alice",
        b"bob",
        b"chat",
        {"text": "hi", "blob": b"\x00\x01"},
        now=sender.clock.now(),
        priority=Priority.FAST,
    )
    sender.enqueue_fast(m)
    frames = server.receive(timeout=5)
    assert frames == [b"alice", *encode(m, WireShape.V011)]
    assert len(frames) == 7
    assert frames[1:4] == [b"", b"", b"\x01"]
    book.wait_for(lambda b: len(b.sent) == 1)
    assert book.sent == [m] and book.failed == [] and book.dropped == []


def test_the_p2p0mq_0_1_0_shape_sends_six_frames(server, alice) -> None:  # type: ignore[no-untyped-def]
    sender, book = alice
    sender.add_peer(b"bob", server.endpoint, server.keys.public, shape=WireShape.V010)
    sender.connect_peers()
    m = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=sender.clock.now())
    sender.enqueue_medium(m)
    frames = server.receive(timeout=5)
    assert frames == [b"alice", b"", b"", b"\x01", b"chat", b"\x81\xa1n\x01"]
    book.wait_for(lambda b: len(b.sent) == 1)
    assert book.sent == [m]


def test_a_wrong_server_key_delivers_nothing_and_the_failure_reaches_the_concern(
    server,
    alice,  # type: ignore[no-untyped-def]
) -> None:
    sender, book = alice
    wrong_public, _ = zmq.curve_keypair()
    sender.add_peer(b"bob", server.endpoint, wrong_public)
    sender.connect_peers()
    m = Message.create(b"alice", b"bob", b"chat", {"n": 1}, now=sender.clock.now())
    sender.enqueue_medium(m)
    book.wait_for(lambda b: len(b.failed) == 1, timeout=10)
    ((failed, error),) = book.failed
    assert failed == m
    assert isinstance(error, PeerRefusedError), error  # the monitor saw the handshake fail
    book.wait_for(lambda b: len(b.dropped) == 1)
    assert book.dropped == [(m, "attempts")]
    assert server.receive(timeout=0.2) is None
