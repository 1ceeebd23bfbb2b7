"""Node: one local peer, wired and owned whole. ``LocalPeer`` is an alias for
p2p0mq users.

It owns a key store's pair for its uuid, a send path (``Sender``: Scheduler,
PeerConnections, Concerns), a ``Receiver`` bound to its listen endpoint, the
requests waiting for replies and the node's counters; ``stop`` ends them all.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import pykka

from .concerns.base import Concern
from .core.checks import check_count, check_seconds
from .core.codec import MAX_MESSAGE_SIZE, WireShape, check_message_size, wire_shape
from .core.errors import ConfigurationError, P2P0MQError
from .core.message import DEFAULT_TTL, Kind, Message, Priority, new_message, new_messages
from .core.planner import MAX_ROUNDS
from .core.policy import FailurePolicy
from .core.ports import Clock
from .runtime.actor import thread_of
from .runtime.clock import MonotonicClock
from .runtime.future import ReplyFuture
from .runtime.intake import HANDOFF
from .runtime.messages import Bind
from .runtime.receiver import BACKLOG, Receiver
from .runtime.requests import NodeObserver, PendingRequests
from .runtime.sender import Sender, stop_actor
from .transport.context import end_context, new_context
from .transport.keys import check_public_key
from .transport.keystore import KeyStore
from .transport.router import RECEIVE_HWM, AllowedKeys, check_receive_hwm
from .transport.sockets import SEND_HWM, CurveDealerFactory, check_send_hwm

log = logging.getLogger("p2p0mq_actors.node")

_REQUEST: Final = Kind.REQUEST
STOP_WAIT: Final = 60.0
"""The longest a second ``stop()`` waits for the first to finish, in seconds."""


class Node:
    """One local peer: send, request, receive; every actor and socket it owns.

    Args:
        uuid: this node's uuid (bytes).
        listen: where to listen; ``tcp://127.0.0.1:*`` picks a free port
            (read ``node.endpoint`` after start).
        keys: the key store holding our key pair (created if missing) and the
            public keys of the peers we admit.
        clock: time source (a ``ManualClock`` in tests); by default a
            ``MonotonicClock`` the node owns.
        policy: the default failure policy of Concerns started by the node.
        shape: the wire shape peers get unless ``add_peer`` says otherwise.
        max_rounds, pacing, unreachable_after: see ``Sender``.
        poll_interval: the Receiver's longest wait (bounds stop latency).
        receive_backlog: the most received messages the Concerns may hold
            unhandled (16,384): beyond it the node reads no more until they
            are down to half, and peers' sends wait in their own queues.
        max_sockets: raise the zmq context's socket limit (up to 16,384 by default;
            a peer costs three sockets with its monitor). Starting a node
            raises the process's open-file soft limit (RLIMIT_NOFILE) to its
            hard limit, for every thread of the process, and leaves it so.
        timeout: how long start-up and ``stop`` wait for each actor.
        intake_capacity, intake_timeout: the bound on messages waiting to be
            sent: ``send`` waits up to ``intake_timeout`` seconds for room,
            then raises ``IntakeFullError`` (the peers are not keeping up);
            ``None`` waits as long as it takes, 0 not at all.
        intake_handoff: how many messages ``send`` lets wait before it waits
            for the Scheduler to take them (512): a thread sending in bulk
            then hands its messages on in batches of this size, while they
            are still in the CPU's cache (about a fifth more throughput on
            the native wire than with no such wait).
        max_message_size: the longest frame, in bytes, sent to a peer or
            taken from one (16 MiB; None: no limit). On p2p0mq's wire that
            is a message's packed payload; on the native wire its whole
            envelope. A message that needs more fails with
            ``UnencodableError``; a peer that sends more is disconnected by
            libzmq before the frame is read. Give every node the same.
        receive_hwm: the most whole messages libzmq keeps per peer
            connection that the node has not read yet (1,000, libzmq's
            default); then that connection waits (TCP carries the pressure
            back). A peer's well-formed messages can make the node hold up
            to ``receive_hwm`` x ``max_message_size`` bytes unread on each
            connection it opens: lower one or both where messages are
            large (README.md).
        send_hwm: the most whole messages libzmq queues for one peer
            (10,000; a native batch frame of up to 64 counts as one); then
            the peer's messages wait in the node's own queues, in the
            intake's bound. For each peer that stops reading, the node
            holds up to ``send_hwm`` zmq messages in libzmq (encoded
            messages, or native frames of up to 64), besides the loopback
            or network buffers: lower it where messages are large.

    Example::

        with Node(uuid=b"alice", listen="tcp://127.0.0.1:*", keys=KeyStore(path)) as alice:
            alice.add_concern(Echo)
            alice.add_peer(b"bob", bob_endpoint, public_key=bob_public)
            alice.send(b"bob", b"chat", {"text": "hi"}, priority=Priority.FAST)
            reply = alice.request(b"bob", b"echo", {"n": 1}, timeout=5).get()
    """

    def __init__(
        self,
        uuid: bytes,
        *,
        keys: KeyStore,
        listen: str = "tcp://127.0.0.1:*",
        clock: Clock | None = None,
        policy: FailurePolicy | None = None,
        shape: WireShape = WireShape.V011,
        max_rounds: int = MAX_ROUNDS,
        pacing: float = 0.0,
        unreachable_after: float = 10.0,
        poll_interval: float = 0.05,
        receive_backlog: int = BACKLOG,
        max_sockets: int | None = None,
        timeout: float = 5.0,
        intake_capacity: int = 100_000,
        intake_handoff: int = HANDOFF,
        intake_timeout: float | None = 10.0,
        max_message_size: int | None = MAX_MESSAGE_SIZE,
        receive_hwm: int = RECEIVE_HWM,
        send_hwm: int = SEND_HWM,
    ) -> None:
        self._stop_lock = threading.Lock()
        self._peers_lock = threading.Lock()
        self._stop_done = threading.Event()
        self._stopped = False
        if type(uuid) is not bytes or not uuid:
            raise ConfigurationError(f"a node's uuid must be non-empty bytes, not {uuid!r}")
        check_seconds("timeout", timeout)
        check_count("receive_backlog", receive_backlog)
        if not callable(getattr(keys, "ensure", None)):
            raise ConfigurationError(f"keys must be a KeyStore, not {keys!r}")
        self.uuid = uuid
        self.keys = keys
        self._timeout = timeout
        self._policy = policy
        self._intake = (intake_capacity, intake_handoff, intake_timeout)
        self._max_message_size = check_message_size(max_message_size)
        self._receive_hwm = check_receive_hwm(receive_hwm)
        self._send_hwm = check_send_hwm(send_hwm)
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.pending = PendingRequests(self.clock)
        self._observer = NodeObserver(self.pending)
        self._context: Any = None
        self._sender: Sender | None = None
        self._receiver: Any = None
        try:
            self._start(
                listen=listen,
                shape=shape,
                max_rounds=max_rounds,
                pacing=pacing,
                unreachable_after=unreachable_after,
                poll_interval=poll_interval,
                receive_backlog=receive_backlog,
                max_sockets=max_sockets,
            )
        except BaseException:
            try:
                self.stop()
            except Exception:  # the error that stopped the start is the one to see
                log.exception("%r: stopping after a failed start failed too", self)
            raise
        _RUNNING.add(self)

    def _start(
        self,
        *,
        listen: str,
        shape: WireShape,
        max_rounds: int,
        pacing: float,
        unreachable_after: float,
        poll_interval: float,
        receive_backlog: int,
        max_sockets: int | None,
    ) -> None:
        pair = self.keys.ensure(self.uuid)
        # Each known key may only be used under its own uuid.
        self.allowed = AllowedKeys(owners=self.keys.public_keys())
        self._context = new_context(max_sockets)
        self._sender = Sender(
            self.uuid,
            sockets=CurveDealerFactory(self._context, self.uuid, pair, sndhwm=self._send_hwm),
            clock=self.clock,
            max_rounds=max_rounds,
            pacing=pacing,
            policy=self._policy,
            shape=shape,
            unreachable_after=unreachable_after,
            timeout=self._timeout,
            observer=self._observer,
            intake_capacity=self._intake[0],
            intake_handoff=self._intake[1],
            intake_timeout=self._intake[2],
            max_message_size=self._max_message_size,
        )
        self._receiver = Receiver.start(
            uuid=self.uuid,
            keys=pair,
            allowed=self.allowed,
            concerns=self._sender.concerns,
            clock=self.clock,
            on_reply=self.pending.resolve,
            poll_interval=poll_interval,
            backlog=receive_backlog,
            max_message_size=self._max_message_size,
            receive_hwm=self._receive_hwm,
        )
        self.endpoint: str = self._receiver.ask(Bind(listen), timeout=self._timeout)

    # -- concerns -------------------------------------------------------------

    def add_concern(self, concern: type[Concern] | Any, *args: Any, **kwargs: Any) -> Any:
        """Start (if a class) and register a Concern for its command; returns its ref.

        Raises ConfigurationError when the command already has a Concern.
        """
        if self._policy is not None:
            kwargs.setdefault("policy", self._policy)
        return self._running().add_concern(concern, *args, **kwargs)

    def remove_concern(self, command: bytes) -> None:
        """Stop and unregister the Concern of ``command``."""
        self._running().remove_concern(command)

    # -- peers ----------------------------------------------------------------

    def add_peer(
        self,
        uuid: bytes,
        endpoint: str,
        public_key: bytes | None = None,
        *,
        shape: WireShape | None = None,
        wire: str | None = None,
    ) -> None:
        """Know ``uuid`` at ``endpoint``, admit its key, and connect to it.

        ``public_key`` defaults to the one in the key store; a given key is
        saved there, and becomes the only key admitted for ``uuid`` (one it
        had before is refused from then on). ``wire`` (or ``shape``) picks
        the frames this peer gets: ``"native"`` (one frame; p2p0mq-actors
        peers), ``"0.1.1"`` or ``"0.1.0"``; by default the node's ``shape``.

        Adding a peer again with the same endpoint, key and wire does
        nothing; to change any of them, ``remove_peer`` it first.

        Raises:
            ConfigurationError: a malformed uuid, key or endpoint; the node's
                own uuid; a key that is another peer's; a peer added already
                with another endpoint, key or wire.
            TransportError: the connection's socket could not be made (the
                socket limit, say). Either way the peer is not added, and the
                key store and the admitted keys are as they were.
        """
        if wire is not None:
            shape = wire_shape(wire, "wire")
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigurationError(
                f"the endpoint of peer {uuid!r} must be a non-empty str, not {endpoint!r}"
            )
        self._not_itself(uuid, "add itself as a peer")
        with self._peers_lock:  # one change of the peers and their keys at a time
            self._add_peer(uuid, endpoint, public_key, shape)

    def _not_itself(self, uuid: bytes, what: str) -> None:
        if uuid == self.uuid:
            raise ConfigurationError(
                f"{self!r} cannot {what} (uuid {uuid!r} is its own): its key pair"
                " stays in its key store"
            )

    def _add_peer(
        self, uuid: bytes, endpoint: str, public_key: bytes | None, shape: WireShape | None
    ) -> None:
        """``add_peer``, its arguments checked, under the peers' lock."""
        sender = self._running()
        stored: bytes | None = None  # a key the store held before, put back if we fail
        if public_key is None:
            public_key = self.keys.public_key(uuid)
            stored = public_key
        else:
            public_key = check_public_key(public_key)
            with contextlib.suppress(ConfigurationError):
                stored = self.keys.public_key(uuid)
        owner = self.allowed.owner(public_key)
        if owner not in (None, uuid):
            raise ConfigurationError(
                f"the public key {public_key!r} given for peer {uuid!r} is peer {owner!r}'s:"
                " a key belongs to one peer (remove_peer the other first)"
            )
        sender.check_peer(uuid, endpoint, public_key, shape)
        replaced = [key for key in self.allowed.keys_of(uuid) if key != public_key]
        if stored != public_key:
            self.keys.add_public_key(uuid, public_key)
        admitted = (public_key in self.allowed, owner)
        try:
            self.allowed.add(public_key, uuid)
            sender.add_peer(uuid, endpoint, public_key, shape=shape)
            sender.connect_peers()
        except BaseException as exc:
            if isinstance(exc, P2P0MQError) and uuid in sender.connections():
                # another peer's connection, made again, failed: this one is added
                log.warning("%r: added peer %r, but: %s", self, uuid, exc)
            else:
                self._unadd(uuid, public_key, stored, admitted)
                raise
        for key in replaced:  # the peer's old key, refused from now on
            self.allowed.discard(key)

    def _unadd(
        self, uuid: bytes, key: bytes, stored: bytes | None, admitted: tuple[bool, bytes | None]
    ) -> None:
        """Undo what ``add_peer`` did for a peer it could not connect: the
        key store as it was, and the key admitted (for its owner) as it was."""
        if stored is None:
            self.keys.remove_public_key(uuid)
        elif stored != key:
            self.keys.add_public_key(uuid, stored)
        was_admitted, owner = admitted
        self.allowed.discard(key)
        if was_admitted:
            self.allowed.add(key, owner)

    def remove_peer(self, uuid: bytes, *, revoke: bool = False) -> None:
        """Close the connection to ``uuid``; with ``revoke`` also refuse its
        keys from now on (every key admitted for it, and the one in the key
        store: their handshakes, and what comes on a connection made
        already) and delete its public key file.

        A revoked peer's open connection is not closed (CURVE cannot close
        one connection of a listening socket): what comes on it is refused,
        counted in ``stats()["receiver"]["rejected"]["revoked"]``, but
        libzmq still reads it, up to ``max_message_size`` a message.
        """
        if revoke:
            self._not_itself(uuid, "revoke its own key")
        with self._peers_lock:
            self._remove_peer(uuid, revoke)

    def _remove_peer(self, uuid: bytes, revoke: bool) -> None:
        """``remove_peer``, under the peers' lock."""
        self._running().remove_peer(uuid)
        if not revoke:
            return
        for key in self.allowed.keys_of(uuid):
            self.allowed.discard(key)
        try:
            self.allowed.discard(self.keys.public_key(uuid))
        except ConfigurationError as exc:  # no key file, or one that does not parse
            log.info("%r: revoking %r: no key in its store to refuse (%s)", self, uuid, exc)
        self.keys.remove_public_key(uuid)

    # -- sending --------------------------------------------------------------

    def message(
        self,
        peer: bytes,
        command: bytes,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: Priority = Priority.MEDIUM,
        ttl: float = DEFAULT_TTL,
        kind: Kind = Kind.REQUEST,
    ) -> Message:
        """A message from this node to ``peer`` (validated; raises MessageError)."""
        now = self.clock.now()
        return new_message(self.uuid, peer, command, payload, now, ttl, kind, priority)

    def messages(
        self,
        peer: bytes,
        command: bytes,
        payloads: Iterable[Mapping[str, Any] | None],
        *,
        priority: Priority = Priority.MEDIUM,
        ttl: float = DEFAULT_TTL,
        kind: Kind = Kind.REQUEST,
    ) -> list[Message]:
        """A message from this node to ``peer`` for each payload, in order,
        each with its own id: a stream for ``send_many``.

        Example::

            node.send_many(node.messages(b"peer-b", b"tick", ticks, priority=Priority.FAST))

        The fields they share are checked once, so each message costs
        about 0.4 µs instead of 1 (measured).

        Raises:
            MessageError: a field, or one of the payloads, is not valid (no
                message is returned then).
        """
        now = self.clock.now()
        return new_messages(self.uuid, peer, command, payloads, now, ttl, kind, priority)

    def send(
        self,
        peer: bytes,
        command: bytes,
        payload: Mapping[str, Any] | None = None,
        *,
        priority: Priority = Priority.MEDIUM,
        ttl: float = DEFAULT_TTL,
    ) -> Message:
        """Queue a request to ``peer``; returns the message (its outcome goes
        to the command's Concern)."""
        sender = self._sender
        if self._stopped or sender is None:
            raise ConfigurationError(f"{self!r} is stopped")
        message = new_message(
            self.uuid, peer, command, payload, self.clock.now(), ttl, _REQUEST, priority
        )
        sender.send_one(message)
        return message

    def send_message(self, message: Message) -> None:
        """Queue a message built elsewhere, on the lane its priority names."""
        if not isinstance(message, Message):
            raise ConfigurationError(f"send_message takes a Message, not {message!r}")
        self._running().enqueue(message, message.priority)

    def send_many(self, messages: Sequence[Message]) -> None:
        """Queue many messages at once, each on the lane its priority names,
        in order."""
        self._running().enqueue_many(messages)

    def request(
        self,
        peer: bytes,
        command: bytes,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float = 5.0,
        priority: Priority = Priority.FAST,
        ttl: float | None = None,
    ) -> ReplyFuture[Message]:
        """Send a request; the future resolves with the reply ``Message``.

        A handler must not wait on it (``get``) while others wait for the
        node's receiving (see README.md): ``future.add_done_callback`` runs a
        function as the reply comes, e.g. one that tells the Concern.

        Only a reply that ``peer`` itself sent us (the sender its key
        authenticates, not the source a message claims) resolves it; any
        other reply goes to the command's Concern. A request the send path
        refuses (``IntakeFullError``: it stayed full) raises here and is not
        left pending. The future fails with ``RequestTimeoutError`` after
        ``timeout`` seconds, with ``RequestError`` (``reason`` says why) if
        the request is dropped, and with ``NodeStoppedError`` if the node
        stops first; each names the last send error of the request, if one
        failed, and chains it (a ``PeerRefusedError`` if the peer refused
        our key). A failed send alone does not fail it: the Concern's
        policy may retry the request.

        ``ttl`` (default: ``timeout``) is how long the request itself may
        wait to be sent and be retried; one longer than ``timeout`` goes on
        being retried after its future has failed, so the peer may still
        act on it.
        """
        check_seconds("timeout", timeout)  # before the ttl it stands in for
        sender = self._running()
        message = new_message(
            self.uuid,
            peer,
            command,
            payload,
            self.clock.now(),
            timeout if ttl is None else ttl,
            _REQUEST,
            priority,
        )
        future = self.pending.register(message, timeout)  # before any actor sees it
        try:
            sender.send_one(message)
        except BaseException:
            self.pending.forget(message)  # never left: nothing to wait for or count
            raise
        return future

    # -- looking in ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: sent, received, dropped by reason, refused (handshakes
        that failed: unknown keys, wrong server keys, plaintext clients),
        rejected (malformed messages), queue depths, the Scheduler's epochs
        and preemptions, per peer its state, medium queue, messages sent
        and how many of them went straight from the application's thread
        (``direct``: express sends), and ``send_hwm``. ``receiver`` has the details.

        Raises:
            ConfigurationError: the node is stopped (or stopping: an actor
                asked is gone).
            P2P0MQError: the Receiver or the Scheduler did not answer within
                the node's ``timeout`` (busy: in an inline Concern's handler
                that blocks, say); ask again later.
        """
        sender = self._running()
        try:
            return self._stats(sender)
        except pykka.ActorDeadError as exc:  # stop() ran meanwhile, in another thread
            raise ConfigurationError(f"{self!r} is stopped") from exc
        except pykka.Timeout as exc:
            raise P2P0MQError(
                f"{self!r}: its Receiver or Scheduler did not answer stats() within"
                f" {self._timeout} s (busy: an inline Concern's handler that blocks runs"
                " in the Receiver's thread); ask again later"
            ) from exc

    def _stats(self, sender: Sender) -> dict[str, Any]:
        out = self._observer.snapshot()
        out["sent"] += sender.intake.gate.quiet_sent()
        out["uuid"] = self.uuid
        out["endpoint"] = self.endpoint
        out["send_hwm"] = self._send_hwm
        receiver = self._receiver.proxy().stats().get(timeout=self._timeout)
        out["received"] = receiver.get("received", 0)
        out["refused"] = sum(
            receiver.get(key, 0)
            for key in (
                "handshake_failed_auth",  # unknown client keys (ZAP said no)
                "handshake_failed_no_detail",
                "handshake_failed_protocol",  # wrong server key, plaintext
            )
        )
        out["rejected"] = sum(receiver.get("rejected", {}).values())
        out["receiver"] = receiver
        scheduler = sender.scheduler.proxy()
        out["queues"] = scheduler.depths().get(timeout=self._timeout)
        out["scheduler"] = scheduler.counters().get(timeout=self._timeout)
        out["peers"] = {
            uuid: _peer_stats(ref, self._timeout) for uuid, ref in sender.connections().items()
        }
        out["requests"] = {
            "pending": len(self.pending),
            "resolved": self.pending.resolved,
            "failed": dict(self.pending.failed),
        }
        return out

    def parts(self) -> tuple[list[Any], list[int]]:
        """The refs of the node's actors (Scheduler, Receiver, Concerns,
        connections) and the idents of its Python threads (theirs, and its
        clock's timer, once started): what the test kit spares of a node a
        test did not start. Empty once stopped."""
        sender, receiver = self._sender, self._receiver
        if self._stopped or sender is None:
            return [], []
        refs = [sender.scheduler, *sender.concerns.refs(), *sender.connections().values()]
        if receiver is not None:
            refs.append(receiver)
        idents = [ident for ident in map(thread_of, refs) if ident is not None]
        timer = getattr(self.clock, "thread", None)
        if isinstance(timer, threading.Thread) and timer.ident is not None:
            idents.append(timer.ident)
        return refs, idents

    def _running(self) -> Sender:
        if self._stopped or self._sender is None:
            raise ConfigurationError(f"{self!r} is stopped")
        return self._sender

    # -- stopping -------------------------------------------------------------

    def stop(self) -> None:
        """Stop every actor, close every socket, end the zmq contexts, fail
        the pending requests. Idempotent.

        Each actor gets ``timeout`` seconds to stop. A thread cannot be
        stopped from outside: a Concern still busy in a handler by then is
        named in a warning and stops by itself once the handler returns
        (what it sends then is dropped, ``"stopped"``); everything else is
        stopped all the same. A second call, from another thread, returns
        once the first has finished (or after ``STOP_WAIT`` seconds, said in
        a warning).
        """
        with self._stop_lock:
            first, self._stopped = not self._stopped, True
        if not first:
            if not self._stop_done.wait(STOP_WAIT):
                log.warning(
                    "%r: still stopping after %.0f s (another thread stops it)", self, STOP_WAIT
                )
            return
        try:
            self._stop()
        finally:
            self._stop_done.set()

    def _stop(self) -> None:
        _RUNNING.discard(self)
        try:  # each later step runs whatever an earlier one raised: a second stop() won't
            if self._receiver is not None:
                stop_actor(self._receiver, self._timeout)
            if self._sender is not None:
                self._sender.stop()
        finally:
            try:
                self.pending.fail_all()
                if self._context is not None:
                    end_context(self._context, self._timeout)
            finally:
                if self._own_clock and isinstance(self.clock, MonotonicClock):
                    self.clock.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<Node {self.uuid!r} {getattr(self, 'endpoint', 'unbound')} {state}>"


LocalPeer = Node

_RUNNING: set[Node] = set()
"""Held strongly: a node nobody references still runs its threads."""


def running_nodes() -> list[Node]:
    """Every Node started and not yet stopped, in this process (the test
    kit's ``actor_test`` fixture stops and names those a test left behind)."""
    return list(_RUNNING)


def _peer_stats(ref: Any, timeout: float) -> dict[str, Any]:
    try:
        proxy = ref.proxy()
        return {
            "state": proxy.state.get(timeout=timeout),
            "medium": proxy.medium_len.get(timeout=timeout),
            "sent": proxy.sent_count.get(timeout=timeout),
            "direct": proxy.direct_count.get(timeout=timeout),
        }
    except (pykka.ActorDeadError, pykka.Timeout, P2P0MQError):
        return {"state": "GONE", "medium": 0, "sent": 0, "direct": 0}
