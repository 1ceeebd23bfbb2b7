"""What the actors tell each other. Plans and plan results come from
``core.fairness``; the rest is here. All are frozen and carry batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ConfigurationError, SendError
from ..core.message import Message


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Scheduler: queue these messages (each on the lane its priority names)."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Retry:
    """Scheduler: a Concern's decisions; ``now`` re-enqueued at once, ``later``
    held until their due time (absolute clock seconds)."""

    now: tuple[Message, ...] = ()
    later: tuple[tuple[Message, float], ...] = ()


@dataclass(frozen=True, slots=True)
class AddPeer:
    """Scheduler: a PeerConnection exists for ``uuid``."""

    uuid: bytes
    ref: Any


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Scheduler: forget ``uuid``; what was queued for it fails."""

    uuid: bytes


@dataclass(frozen=True, slots=True)
class PeerWritable:
    """Scheduler: the peer's socket accepts messages again."""

    uuid: bytes
    medium_len: int


@dataclass(frozen=True, slots=True)
class PeerBlocked:
    """Scheduler: a peer still not writable dropped messages of its medium
    queue (their TTL ran out); ``medium_len`` is its length now. The peer
    owns that count; a stale one would hold back the intake."""

    uuid: bytes
    medium_len: int


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """Scheduler: the peer gave up on its queue with ``error``; fail the rest too."""

    uuid: bytes
    error: SendError


@dataclass(frozen=True, slots=True)
class PeerGone:
    """Scheduler: ``urn``, the connection of ``uuid``, died (its socket could
    not be made, or a bug): forget the peer, as ``RemovePeer`` does, and
    fail what it holds with ``error``. Only for that connection: a peer
    connected again meanwhile has another."""

    uuid: bytes
    urn: str
    error: SendError


@dataclass(frozen=True, slots=True)
class Sent:
    """Concern: these messages left their socket."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    """Concern: these messages could not be sent; decide what to do with each."""

    items: tuple[tuple[Message, SendError], ...]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Concern: these messages are gone, each for the reason given."""

    items: tuple[tuple[Message, str], ...]


@dataclass(frozen=True, slots=True)
class Received:
    """Concern: requests and replies for us that arrived, in arrival order.

    ``done``, when given, is called once they are handled: the Receiver
    counts what Concerns hold and reads no more past its bound (see
    ``backlog.py``). ``Concern`` calls it; an actor that takes ``Received``
    in its own ``on_receive`` must call it too. ``lost``, when given, is
    called instead if the actor stops before handling them: the Receiver
    counts them dropped (``"concern-stopped"``).
    """

    messages: tuple[Message, ...]
    done: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    lost: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Scheduler or PeerConnection: drop everything held with reason
    ``"stopped"`` and refuse new work from now on (asked before ``stop``).

    With ``error`` (a PeerConnection whose peer is removed while the node
    goes on), what it holds fails with that error instead: its Concerns
    decide, as for what the Scheduler held for the peer."""

    error: SendError | None = None


@dataclass(frozen=True, slots=True)
class Flush:
    """Any of our actors: answered once everything told before it is handled."""


SHUTDOWN = Shutdown()
FLUSH = Flush()


@dataclass(frozen=True, slots=True)
class Bind:
    """Receiver: listen on ``endpoint``. Ask it: the answer is the real endpoint
    (``tcp://127.0.0.1:*`` picks a free port), or a ``ConfigurationError``
    when zmq cannot bind it (the port is taken, the address is wrong)."""

    endpoint: str

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, str) or "://" not in self.endpoint:
            raise ConfigurationError(
                f"Bind needs an endpoint such as 'tcp://127.0.0.1:*', got {self.endpoint!r}"
            )
