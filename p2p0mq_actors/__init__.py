"""p2p0mq-actors: an encrypted peer-to-peer message router built from Pykka
actors on ZeroMQ, wire-compatible with p2p0mq.

The send path in a few lines::

    import zmq
    from p2p0mq_actors import CurveDealerFactory, Message, Priority, Sender, generate_keypair

    keys = generate_keypair()
    with Sender(b"alice", sockets=CurveDealerFactory(zmq.Context(), b"alice", keys)) as sender:
        sender.add_peer(b"bob", "tcp://127.0.0.1:5555", bob_public_key)
        sender.connect_peers()
        sender.enqueue_fast(Message.create(b"alice", b"bob", b"chat", {"text": "hi"},
                                           now=sender.clock.now()))
"""

from .concerns.base import Concern, DefaultConcern
from .core.codec import WireShape, decode, encode
from .core.errors import (
    ConfigurationError,
    EncodeError,
    MessageError,
    NodeStoppedError,
    NoPeerError,
    P2P0MQError,
    PeerError,
    PeerRefusedError,
    PeerUnreachableError,
    ProtocolError,
    SendError,
    TransportError,
    UnencodableError,
    UnknownPeerError,
    WouldBlock,
)
from .core.message import DEFAULT_TTL, Kind, Message, Priority, next_message_id
from .core.policy import Action, Decision, FailurePolicy
from .core.ports import Clock, KeyPair, PeerAddress, PeerSocket, SocketEvent, SocketFactory
from .runtime.clock import MonotonicClock
from .runtime.peer import PeerConnection
from .runtime.scheduler import Scheduler
from .runtime.sender import Sender
from .transport.keys import generate_keypair
from .transport.sockets import CurveDealerFactory

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 - grouped by topic, as STYLE.md asks
    # messages and the wire
    "DEFAULT_TTL",
    "Kind",
    "Message",
    "Priority",
    "WireShape",
    "decode",
    "encode",
    "next_message_id",
    # the send path
    "Concern",
    "DefaultConcern",
    "PeerConnection",
    "Scheduler",
    "Sender",
    # failure handling
    "Action",
    "Decision",
    "FailurePolicy",
    # sockets, keys, time
    "Clock",
    "CurveDealerFactory",
    "KeyPair",
    "MonotonicClock",
    "PeerAddress",
    "PeerSocket",
    "SocketEvent",
    "SocketFactory",
    "generate_keypair",
    # errors
    "ConfigurationError",
    "EncodeError",
    "MessageError",
    "NoPeerError",
    "NodeStoppedError",
    "P2P0MQError",
    "PeerError",
    "PeerRefusedError",
    "PeerUnreachableError",
    "ProtocolError",
    "SendError",
    "TransportError",
    "UnencodableError",
    "UnknownPeerError",
    "WouldBlock",
]
