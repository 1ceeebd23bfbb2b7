"""Sender: the send path of one local peer, with p2p0mq's ``Sender`` surface.

It wires a Scheduler, one PeerConnection per peer and the Concerns, and
stops them all. Messages go in with ``enqueue*`` and ``send_one`` through a
bounded intake (a lock per call, however many messages; the Scheduler takes
them in batches) or, for a fast message to an idle peer, straight to its
connection; outcomes come out at the Concerns.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

import pykka

from ..concerns.base import Concern, DefaultConcern
from ..core.checks import check_count, check_seconds
from ..core.codec import MAX_MESSAGE_SIZE, WireShape, check_message_size, wire_shape
from ..core.errors import ConfigurationError, NoPeerError, TransportError
from ..core.fairness import Shuffle
from ..core.message import Message, Priority
from ..core.planner import MAX_ROUNDS, REPLY_BACKLOG
from ..core.policy import FailurePolicy
from ..core.ports import Clock, PeerAddress, SocketFactory
from .actor import in_own_thread
from .clock import MonotonicClock
from .intake import HANDOFF, Intake
from .messages import FLUSH, SHUTDOWN, AddPeer, RemovePeer, Shutdown
from .outcomes import ConcernRegistry, OutcomeObserver, report_dropped
from .peer import PeerConnection
from .scheduler import TAKE_INTAKE, Scheduler

log = logging.getLogger("p2p0mq_actors.runtime.sender")

Messages = Message | Iterable[Message]


class Sender:
    """The send path: Scheduler, PeerConnections and Concerns of one node.

    Args:
        uuid: our own uuid (the identity of every socket we connect).
        sockets: creates the sending socket of each peer.
        clock: time source; by default a ``MonotonicClock`` the Sender owns.
        max_rounds: the longest plan, in rounds. Longer plans cost fewer
            tells per message on the medium and slow lanes, and the
            newcomer after a flood waits longer in the worst runs. Measured
            (alternating runs, 16 against 64): backlogs one peer +28-59 %,
            ten peers +12-17 % (native: +22-27 %, our sending side alone
            +79-103 %), slow +14-21 %; the flood bench's newcomer went out
            within one round in every run either way, in a median 0.5-0.6
            ms, but in 1.64 ms at the 90th percentile against 0.81, and
            past 5 ms in 1 run of 100 against none (32: 2 of 100; again
            later, 1.57 against 1.48 ms, and 1 against none). The slow runs
            wait for a CPU (each process on its own CPU: at most 0.4 ms at
            64), and longer plans keep the CPUs busier. The default was 16
            until session 19, which measured 32 against it (two alternating
            pairs of ``bench --only 3,4,6``): ten peers, native, 91-104k ->
            157-168k msg/s (to raw sinks 96-115k -> 149-174k), one peer
            +12-19 %, slow +24-27 %, the flood's newcomer within one round
            either way in 0.46-0.59 against 0.47-0.56 ms; over 180 flood
            runs each, its worst 4.59 against 4.55 ms, and behind nine
            peers flooding (60 runs each) 2.61 against 2.11 ms. Lower it
            (16) where the newcomer's worst case matters most; raise it
            (64) for nodes that mostly drain backlogs.
        pacing: if > 0, the least time between two epochs.
        policy: the default Concern's failure policy.
        shape: the wire shape peers get unless ``add_peer`` says otherwise.
        unreachable_after: seconds a peer may stay unwritable before what is
            queued for it fails.
        shuffle: orders peers within a round (injectable for tests).
        timeout: how long ``stop`` waits for each actor.
        observer: sees every outcome first (the node's counters and requests).
        intake_capacity: the most messages the Scheduler and the medium
            queues hold, waiting to be sent.
        intake_handoff: the most messages ``enqueue`` lets wait for the
            Scheduler to take them (at most ``intake_capacity``): a bulk
            sender hands its messages over in batches of this size while
            they are still in the CPU's cache (``intake.py``).
        intake_timeout: how long ``enqueue`` waits for room before it raises
            ``IntakeFullError``; None waits for ever.
        max_message_size: the longest frame sent to a peer, in bytes (None:
            no limit): a message that needs a longer one fails with
            ``UnencodableError`` rather than make the peer drop the
            connection. Give every node the same.

    Use it as a context manager, or call ``stop()``.
    """

    def __init__(
        self,
        uuid: bytes,
        *,
        sockets: SocketFactory,
        clock: Clock | None = None,
        max_rounds: int = MAX_ROUNDS,
        pacing: float = 0.0,
        policy: FailurePolicy | None = None,
        shape: WireShape = WireShape.V011,
        unreachable_after: float = 10.0,
        shuffle: Shuffle | None = None,
        timeout: float = 5.0,
        observer: OutcomeObserver | None = None,
        intake_capacity: int = 100_000,
        intake_handoff: int = HANDOFF,
        intake_timeout: float | None = 10.0,
        max_message_size: int | None = MAX_MESSAGE_SIZE,
    ) -> None:
        check_count("max_rounds", max_rounds)
        check_seconds("pacing", pacing, zero_ok=True)
        check_seconds("unreachable_after", unreachable_after)
        check_seconds("timeout", timeout)
        shape = wire_shape(shape)
        if intake_timeout is not None:
            check_seconds("intake_timeout", intake_timeout, zero_ok=True)
        if clock is not None and not callable(getattr(clock, "call_later", None)):
            raise ConfigurationError(f"clock must be a Clock (now, call_later), not {clock!r}")
        if policy is not None and not callable(getattr(policy, "decide", None)):
            raise ConfigurationError(f"policy must be a FailurePolicy, not {policy!r}")
        self.uuid = uuid
        self._max_frame = check_message_size(max_message_size)
        self._sockets = sockets
        self._own_clock = clock is None
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._shape = shape
        self._unreachable_after = unreachable_after
        self._timeout = timeout
        self.concerns = ConcernRegistry()
        self.concerns.observer = observer
        self._peers: dict[bytes, tuple[PeerAddress, WireShape]] = {}
        self._connect_lock = threading.Lock()
        self._connections: dict[bytes, Any] = {}
        self._stopped = False
        check_count("intake_capacity", intake_capacity)
        check_count("intake_handoff", intake_handoff)
        self.intake = Intake(
            min(intake_handoff, intake_capacity), self._wake_scheduler, intake_timeout
        )
        self.scheduler = Scheduler.start(
            concerns=self.concerns,
            clock=self.clock,
            max_rounds=max_rounds,
            pacing=pacing,
            shuffle=shuffle,
            intake=self.intake,
            max_held=intake_capacity,
            # The replies to a peer that does not read them hold a quarter of
            # the room at most (10,000 by default: as many as a socket takes).
            reply_backlog=min(REPLY_BACKLOG, max(1, intake_capacity // 4)),
        )
        self.concerns.default = DefaultConcern.start(
            scheduler=self.scheduler,
            clock=self.clock,
            policy=policy,
            observer=observer,
            intake=self.intake,
        )

    # -- peers -------------------------------------------------------------

    def add_peer(
        self, uuid: bytes, endpoint: str, public_key: bytes, *, shape: WireShape | None = None
    ) -> None:
        """Know a peer; ``connect_peers()`` then opens its connection.

        Raises ConfigurationError as ``check_peer`` does.
        """
        self._peers[uuid] = self.check_peer(uuid, endpoint, public_key, shape)

    def check_peer(
        self, uuid: bytes, endpoint: str, public_key: bytes, shape: WireShape | None = None
    ) -> tuple[PeerAddress, WireShape]:
        """What ``add_peer`` would know of this peer, changing nothing.

        Raises:
            ConfigurationError: the sender is stopped; ``uuid`` is not
                non-empty bytes; or the peer is known already with another
                endpoint, key or wire (its connection would keep the old
                ones: ``remove_peer`` it first).
        """
        self._check_running()
        if type(uuid) is not bytes or not uuid:
            raise ConfigurationError(f"peer uuid must be non-empty bytes, not {uuid!r}")
        wire = self._shape if shape is None else wire_shape(shape, f"shape for peer {uuid!r}")
        known = self._peers.get(uuid)
        peer = (PeerAddress(uuid, endpoint, public_key), wire)
        if known is not None and known != peer:
            address, was = known
            raise ConfigurationError(
                f"peer {uuid!r} is known already, at {address.endpoint!r} with key"
                f" {address.public_key!r} on the {was.value} wire: remove_peer it first"
                " to change its endpoint, key or wire"
            )
        return peer

    def connect_peers(self) -> list[bytes]:
        """Start a PeerConnection for every known peer not yet connected (or
        whose connection died).

        One caller at a time: two at once would start two connections to a
        peer. Returns the uuids connected by this call.

        Raises:
            ConfigurationError, TransportError: a connection's socket could
                not be made (a malformed endpoint or key, the socket limit):
                what its factory raised, for the first that failed. The
                peers that failed are forgotten (``add_peer`` them again);
                the others are connected all the same.
        """
        with self._connect_lock:
            return self._connect_peers()

    def _connect_peers(self) -> list[bytes]:
        """``connect_peers``, its lock held."""
        self._check_running()
        connections = self._connections  # (one whose actor died is made again)
        new = [u for u in self._peers if u not in connections or not connections[u].is_alive()]
        failed: dict[str, BaseException] = {}
        done: list[bytes] = []
        for uuid in new:
            address, shape = self._peers[uuid]
            ref = PeerConnection.start(
                address,
                scheduler=self.scheduler,
                concerns=self.concerns,
                sockets=self._sockets,
                clock=self.clock,
                shape=shape,
                unreachable_after=self._unreachable_after,
                gate=self.intake.gate,
                max_frame=self._max_frame,
                start_failed=failed.__setitem__,
            )
            try:
                ref.ask(FLUSH, timeout=self._timeout)  # answered once on_start has run
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                ref.stop(block=False)
                failed[ref.actor_urn] = TransportError(
                    f"the connection to peer {uuid!r} did not start within {self._timeout} s"
                )
            if ref.actor_urn in failed or not ref.is_alive():
                failed.setdefault(  # (a bug of its own: pykka logged it)
                    ref.actor_urn,
                    TransportError(f"the connection to peer {uuid!r} died as it started"),
                )
                self._peers.pop(uuid, None)
                connections.pop(uuid, None)
                continue
            connections[uuid] = ref
            # Asked, not told: once this returns the Scheduler knows the
            # peer. It takes the intake after any message it handles, so a
            # message sent next could reach it before a told AddPeer did,
            # and fail as for an unknown peer.
            try:
                self.scheduler.ask(AddPeer(uuid, ref), timeout=self._timeout)
            except pykka.Timeout:  # it is queued all the same: the peer is known soon
                log.warning("the Scheduler took over %s s to add peer %r", self._timeout, uuid)
            except pykka.ActorDeadError:  # the node stops (stop waits for this call)
                self._check_running()
                raise
            done.append(uuid)
        if failed:
            errors = list(failed.values())
            for extra in errors[1:]:
                log.error("could not connect a peer either: %s", extra)
            raise errors[0]
        return done

    def remove_peer(self, uuid: bytes) -> None:
        """Close the connection to ``uuid``. What the Scheduler held for it,
        what the connection held, and any plan still on its way to it fail
        with ``NoPeerError``: their Concerns' policies decide, as for
        anything sent to the peer from now on (a request is not failed for
        it: a peer added again in time may still get it)."""
        _check_key("peer uuid", uuid)
        with self._connect_lock:  # not while connect_peers makes its connection
            self._remove_peer(uuid)

    def _remove_peer(self, uuid: bytes) -> None:
        """``remove_peer``, its lock held."""
        self._peers.pop(uuid, None)
        ref = self._connections.pop(uuid, None)
        # Asked, not told: the Scheduler hands the connection no plan once
        # it answers, so few are on their way when the connection stops
        # (those are given back by its teardown, see PeerConnection).
        _ask(self.scheduler, RemovePeer(uuid), self._timeout)
        if ref is not None:
            removed = NoPeerError(f"peer {uuid!r} was removed", peer=uuid)
            _ask(ref, Shutdown(removed), self._timeout)
            stop_actor(ref, self._timeout)

    def connections(self) -> dict[bytes, Any]:
        """Every connected peer's PeerConnection ref."""
        return dict(self._connections)

    # -- concerns ------------------------------------------------------------

    def add_concern(self, concern: type[Concern] | Any, *args: Any, **kwargs: Any) -> Any:
        """Register a Concern for its ``command``; a class is started first
        (with ``scheduler`` and ``clock`` passed in). Returns its ref.

        Raises ConfigurationError when the command already has a Concern.
        """
        self._check_running()
        if isinstance(concern, type):
            if not issubclass(concern, Concern):
                raise ConfigurationError(f"{concern!r} is not a Concern subclass")
            command = concern.command
            self._check_command(command, concern)
            kwargs.setdefault("scheduler", self.scheduler)
            kwargs.setdefault("clock", self.clock)
            kwargs.setdefault("observer", self.concerns.observer)
            kwargs.setdefault("intake", self.intake)
            try:
                ref = concern.start(*args, **kwargs)
            except TypeError as exc:
                refused = _kwargs_refused(concern, exc)
                if refused is None:
                    raise
                raise refused from exc
            try:  # its on_start runs in its own thread: that it did not raise is heard here
                ref.ask(FLUSH, timeout=self._timeout)
            except pykka.ActorDeadError:
                raise ConfigurationError(
                    f"{concern.__name__} stopped as it started (its on_start raised: see the "
                    "log); it is not added"
                ) from None
            except pykka.Timeout:  # still starting: added all the same
                log.warning(
                    "%r: %s took over %.1f s to start", self, concern.__name__, self._timeout
                )
        elif isinstance(concern, pykka.ActorRef):
            ref = concern
            named: object = getattr(ref.actor_class, "command", None)
            self._check_command(named, ref.actor_class)
            command = cast(bytes, named)  # (checked)
        else:
            raise ConfigurationError(
                f"add a Concern subclass or the ref of a started Concern, not {concern!r}"
            )
        try:
            self.concerns.add(command, ref)
        except ConfigurationError:
            if isinstance(concern, type):
                ref.stop()
            raise
        return ref

    def _check_command(self, command: object, owner: object) -> None:
        if type(command) is not bytes or not command:
            raise ConfigurationError(f"{owner!r}.command must be non-empty bytes, not {command!r}")
        if command in self.concerns:
            raise ConfigurationError(f"command {command!r} already has a Concern")

    def remove_concern(self, command: bytes) -> None:
        """Unregister and stop the Concern of ``command``: the outcomes of its
        messages then go to the default Concern, and messages received for
        the command are counted as ``unknown_command``. One still busy in a
        handler after ``timeout`` is named in a warning and stops once the
        handler returns."""
        _check_key("command", command)
        ref = self.concerns.remove(command)
        if ref is not None:
            stop_actor(ref, self._timeout)

    # -- work ------------------------------------------------------------------

    def enqueue(self, messages: Messages, priority: Priority | int = Priority.MEDIUM) -> None:
        """Queue one message or several on the lane ``priority`` names (as in p2p0mq).

        Raises ConfigurationError for an unknown priority.
        """
        lane = _priority(priority)
        self._put(_on_lane(messages, lane))

    def send_one(self, message: Message) -> None:
        """Queue one message on the lane its priority names, by the shortest
        way: a fast message for an idle peer goes straight to its connection
        (one actor hop, see ``express.py``); anything else waits in the intake
        (one lock), which the Scheduler drains in batches."""
        if self._stopped:
            raise ConfigurationError(f"{self!r} is stopped")
        self.intake.submit(message)

    def enqueue_many(self, messages: Iterable[Message]) -> None:
        """Queue messages each on the lane its own priority names, in one
        batch. Fast messages all for one idle peer go straight to its socket
        (``Intake.express_many``); if any did, the rest is queued without
        waiting for room, as a batch put in an empty intake is (or, if the
        node stopped meanwhile, reported dropped, ``"stopped"``).

        Raises:
            IntakeFullError: nothing was sent, and no room came in time.
            ConfigurationError: the node is stopped.
        """
        batch = _checked(messages)
        self._check_running()
        taken = self.intake.express_many(batch)
        if not taken:
            if batch:
                self.intake.put(batch)
        elif taken < len(batch) and not self.intake.put_now(batch[taken:]):
            # Some went out already: the rest is queued at once, room or not
            # (as a whole batch is in an empty intake), never refused midway;
            # the node stopped meanwhile: dropped, as what it held was.
            report_dropped(self.concerns, [(m, "stopped") for m in batch[taken:]])

    def enqueue_fast(self, messages: Messages) -> None:
        """Queue on the fast lane: everything, every round."""
        self.enqueue(messages, Priority.FAST)

    def enqueue_medium(self, messages: Messages) -> None:
        """Queue on the medium lane: each peer's oldest, every round."""
        self.enqueue(messages, Priority.MEDIUM)

    def enqueue_slow(self, messages: Messages) -> None:
        """Queue on the slow lane: the single oldest, every round."""
        self.enqueue(messages, Priority.SLOW)

    def enqueue_all(
        self,
        requests: Mapping[Priority | int, Iterable[Message]] | None = None,
        replies: Mapping[Priority | int, Iterable[Message]] | None = None,
        routed: Iterable[Message] | None = None,
    ) -> None:
        """Queue p2p0mq-style batches in one go: ``requests`` and ``replies``
        map a priority to a list; ``routed`` messages go on the fast lane."""
        batch: list[Message] = []
        for by_lane in (requests or {}, replies or {}):
            for priority, messages in by_lane.items():
                batch.extend(_on_lane(messages, _priority(priority)))
        batch.extend(_on_lane(routed or (), Priority.FAST))
        self._put(batch)

    def _put(self, batch: list[Message]) -> None:
        self._check_running()
        if batch:
            self.intake.put(batch)

    def _wake_scheduler(self) -> None:
        # While stopping the Scheduler may be gone: its intake is closed then,
        # and what was in it reported dropped ("stopped").
        with contextlib.suppress(pykka.ActorDeadError):
            self.scheduler.tell(TAKE_INTAKE)

    def _check_running(self) -> None:
        if self._stopped:
            raise ConfigurationError(f"{self!r} is stopped")

    # -- stopping --------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every actor has handled what it was told before this call."""
        _ask(self.scheduler, FLUSH, self._timeout)
        for ref in [*self._connections.values(), *self.concerns.refs()]:
            _ask(ref, FLUSH, self._timeout)

    def stop(self) -> None:
        """Stop every actor; what is still queued is dropped with reason
        ``"stopped"`` (the Concerns hear of it before they stop). Idempotent.

        Each actor gets ``timeout`` seconds. A thread cannot be stopped from
        outside: an actor still busy in a handler by then is named in a
        warning and left to stop by itself once the handler returns (what it
        sends then is dropped, ``"stopped"``); the others stop all the same.
        """
        if self._stopped:
            return
        self._stopped = True
        # A connect_peers under way ends first (its connection is then one
        # of those stopped here); the next one finds the sender stopped.
        with self._connect_lock:
            self._stop()

    def _stop(self) -> None:
        """``stop``, once, ``connect_peers``' lock held."""
        _ask(self.scheduler, SHUTDOWN, self._timeout)
        for ref in self._connections.values():
            _ask(ref, SHUTDOWN, self._timeout)
        for ref in self.concerns.refs():
            _ask(ref, FLUSH, self._timeout)
        _ask(self.scheduler, FLUSH, self._timeout)  # retries told meanwhile: dropped
        for ref in [self.scheduler, *self._connections.values(), *self.concerns.refs()]:
            stop_actor(ref, self._timeout)
        if self._own_clock and isinstance(self.clock, MonotonicClock):
            self.clock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<Sender {self.uuid!r} {state} peers={len(self._connections)}>"


def _priority(value: object) -> Priority:
    try:
        return Priority(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"unknown priority {value!r}: use Priority.FAST, Priority.MEDIUM or Priority.SLOW"
        ) from None


def _checked(messages: Messages) -> list[Message]:
    if isinstance(messages, Message):
        items = [messages]
    else:
        try:
            items = list(messages)
        except TypeError:  # not iterable
            raise ConfigurationError(
                f"queue a Message or an iterable of them, not {messages!r}"
            ) from None
    for m in items:
        if not isinstance(m, Message):
            raise ConfigurationError(f"only Message objects can be queued, not {m!r}")
    return items


def _check_key(name: str, value: object) -> None:
    if type(value) is not bytes:
        raise ConfigurationError(f"a {name} is bytes, not {value!r}")


def _on_lane(messages: Messages, lane: Priority) -> list[Message]:
    return [m if m.priority is lane else replace(m, priority=lane) for m in _checked(messages)]


def _kwargs_refused(concern: type[Concern], exc: TypeError) -> ConfigurationError | None:
    """A ConfigurationError that says how to fix it, if ``concern``'s
    ``__init__`` refused a keyword the node passes (else None)."""
    text = str(exc)
    passed = ("scheduler", "clock", "observer", "intake", "policy")
    if f"{concern.__name__}.__init__() got an unexpected keyword argument" not in text or not any(
        f"'{n}'" in text for n in passed
    ):
        return None  # (a TypeError of its own)
    return ConfigurationError(
        f"{concern.__name__}.__init__ must accept **kwargs and pass them on with "
        f"super().__init__(**kwargs): the node passes {', '.join(passed[:-1])} (and "
        f"policy, when it has one). It said: {text}"
    )


def stop_actor(ref: Any, timeout: float) -> None:
    """Stop ``ref``'s actor, waiting up to ``timeout`` seconds; if it is still
    busy then, say so and go on: it stops once its handler returns. Called
    from that actor's own thread (a handler stopping the node), it only
    asks: it stops once the handler returns."""
    if in_own_thread(ref):
        ref.stop(block=False)
        return
    try:
        ref.stop(timeout=timeout)
    except pykka.Timeout:
        log.warning(
            "%s did not stop within %.1f s (a handler still running); "
            "it stops when the handler returns",
            ref,
            timeout,
        )


def _ask(ref: Any, message: object, timeout: float) -> None:
    if in_own_thread(ref):
        return  # it would wait for itself: what it was told before comes first anyway
    try:
        ref.ask(message, timeout=timeout)
    except pykka.ActorDeadError:
        pass
    except pykka.Timeout:
        log.warning("%s did not answer %r within %.1f s", ref, message, timeout)
