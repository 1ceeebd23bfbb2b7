"""p2p0mq-actors: an encrypted peer-to-peer message router built from Pykka
actors on ZeroMQ, wire-compatible with p2p0mq.

In a few lines::

    from p2p0mq_actors import KeyStore, Node, Priority

    with Node(b"alice", listen="tcp://127.0.0.1:*", keys=KeyStore("keys")) as alice:
        alice.add_concern(MyConcern)
        alice.add_peer(b"bob", "tcp://127.0.0.1:5555", public_key=bob_public)
        alice.send(b"bob", b"chat", {"text": "hi"}, priority=Priority.FAST)
        reply = alice.request(b"bob", b"echo", {"n": 1}, timeout=5).get()
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
    RequestError,
    RequestTimeoutError,
    SendError,
    TransportError,
    UnencodableError,
    UnexpectedSendError,
    WouldBlock,
)
from .core.message import DEFAULT_TTL, Kind, Message, Priority, next_message_id
from .core.policy import Action, Decision, FailurePolicy
from .core.ports import Clock, KeyPair, PeerAddress, PeerSocket, SocketEvent, SocketFactory
from .node import LocalPeer, Node
from .runtime.clock import MonotonicClock
from .runtime.future import ReplyFuture
from .runtime.intake import IntakeFullError
from .runtime.peer import PeerConnection
from .runtime.receiver import Receiver
from .runtime.scheduler import Scheduler
from .runtime.sender import Sender
from .transport.keys import generate_keypair
from .transport.keystore import KeyStore
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
    # the node
    "KeyStore",
    "LocalPeer",
    "Node",
    "ReplyFuture",
    # the actors
    "Concern",
    "DefaultConcern",
    "PeerConnection",
    "Receiver",
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
    "IntakeFullError",
    "MessageError",
    "NoPeerError",
    "NodeStoppedError",
    "P2P0MQError",
    "PeerError",
    "PeerRefusedError",
    "PeerUnreachableError",
    "ProtocolError",
    "RequestError",
    "RequestTimeoutError",
    "SendError",
    "TransportError",
    "UnencodableError",
    "UnexpectedSendError",
    "WouldBlock",
]
