"""One-way message flow, ours against raw pyzmq, between two processes.

A ``Rig`` holds a scenario's keys (a shared key store for the nodes, a raw
server pair and a raw client pair, certificates for the raw sinks' ZAP) and
its ``SinkServer`` child. A ``Flow`` is one sub-scenario: a set of sinks per
side (raw ROUTERs, receiving Nodes) and the senders (raw DEALERs, our Node),
set up once and warmed (one message per sink), then run as often as asked:
each run arms the sinks' tally, sends, and returns messages per second from
the sender's first send to the receiver's last receive.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import zmq

from p2p0mq_actors import Concern, KeyStore, Message, Node, P2P0MQError, Priority
from p2p0mq_actors.core.codec import Encoder, WireShape
from p2p0mq_actors.core.message import DEFAULT_TTL, Kind, new_messages
from p2p0mq_actors.core.native import batch_frame
from p2p0mq_actors.runtime.bulk import FRAME_MESSAGES

from .common import (
    DATA,
    KIND_REQUEST,
    LAST,
    MORE,
    BenchFailure,
    BenchTimeout,
    Params,
    curve_dealer,
    curve_pair,
    write_certificates,
)
from .sinks import BATCH_HEAD, SINK, SinkServer, Tally, raw_sink_uuid

SOURCE = b"bench-src"
REQUEST = Kind.REQUEST
CODEC_SOURCE = b"bench-codec"
"""The codec ceiling's sender when it sends to our receiving nodes (a
routing id of its own: a ROUTER refuses a second connection with SOURCE's)."""
packb = msgpack.packb


class Outbox(Concern):
    """The sender's Concern for the sinks' command: counts what left the sockets."""

    command = SINK

    def __init__(self, *, tally: Tally, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tally = tally

    def on_sent(self, messages: Sequence[Message]) -> None:
        self.tally.hit(0, len(messages))


class Rig:
    """Keys, certificates and the sink server of one scenario."""

    def __init__(self, params: Params, sinks: int, *, node_sinks: bool = True) -> None:
        self.params = params
        scratch = Path(params.scratch)
        self.store_path = str(scratch / "store")
        store = KeyStore(self.store_path)
        self.sink_uuids = [f"sink-{i}".encode() for i in range(sinks)]
        for uuid in (SOURCE, *((CODEC_SOURCE, *self.sink_uuids) if node_sinks else ())):
            store.ensure(uuid)
        self.server_pair = curve_pair()
        self.client_pair = curve_pair()
        self.certificates = write_certificates(
            scratch / "certs", [self.client_pair[0], store.public_key(SOURCE)]
        )
        self.server = SinkServer(params.deadline)

    def close(self) -> None:
        self.server.close()


def share(j: int, k: int, start: int, end: int) -> list[dict[str, Any]]:
    """The payloads of messages ``start`` to ``end`` (excluded) that go to
    peer ``j`` of ``k`` round-robin (messages j, j + k, ...)."""
    return [{"seq": i, "data": DATA} for i in range(start + (j - start) % k, end, k)]


def six_frames(i: int) -> list[bytes]:
    """What p2p0mq 0.1.1 sends for a small request: source, destination, kind,
    command, message id, payload (empty ends: the direct peer)."""
    return [b"", b"", KIND_REQUEST, SINK, packb(i), packb({"seq": i, "data": DATA})]


def one_frame(i: int) -> list[bytes]:
    return [packb({"seq": i, "data": DATA})]


class Flow:
    """Raw and our senders and sinks for one sub-scenario, warmed and ready to run."""

    def __init__(
        self,
        rig: Rig,
        name: str,
        *,
        sinks: int,
        wire: str,
        lane: Priority = Priority.FAST,
        ours_to_raw: bool = False,
        ceiling: bool = False,
    ) -> None:
        self.rig = rig
        self.ours_to_raw = ours_to_raw
        self.with_ceiling = ceiling
        # our node's peers for the raw sinks (when ours_to_raw)
        self.raw_peers = [raw_sink_uuid(i) for i in range(sinks)]
        self.params = rig.params
        self.name = name
        self.lane = lane
        self.peers = rig.sink_uuids[:sinks]
        self.native = wire == "native"
        self._ctx: zmq.Context[Any] | None = None
        self._socks: list[zmq.Socket[Any]] = []
        self._ceiling_socks: list[zmq.Socket[Any]] = []
        self._codec_socks: list[zmq.Socket[Any]] = []  # the ceiling's, to our nodes
        self.node: Node | None = None
        self.outbox = Tally(1)
        # ours per mode, up to the last on_sent report at the sender
        self.sender_rates: dict[str, list[float]] = {}
        self._started: list[str] = []
        try:
            self._setup(wire)
        except BaseException:
            self.close()
            raise

    def _setup(self, wire: str) -> None:
        rig, left = self.rig, self.params.left
        pairs = [curve_pair() for _ in self.peers]  # a peer's key is its own
        raw_endpoints = rig.server.start_raw(
            self.raw_set, len(self.peers), rig.certificates, pairs, left(30)
        )
        raw_keys = [public for public, _ in pairs]
        self._started.append(self.raw_set)
        node_endpoints = rig.server.start_nodes(
            self.node_set, self.peers, rig.store_path, left(60)
        )
        self._started.append(self.node_set)
        self._ctx = zmq.Context()
        self._socks = [
            curve_dealer(self._ctx, ep, rig.client_pair, key)
            for ep, key in zip(raw_endpoints, raw_keys, strict=True)
        ]
        if self.with_ceiling:  # DEALERs whose routing id decodes as our node's uuid
            self._ceiling_socks = [
                curve_dealer(self._ctx, ep, rig.client_pair, key, identity=SOURCE)
                for ep, key in zip(raw_endpoints, raw_keys, strict=True)
            ]
            store = KeyStore(rig.store_path)
            pair = store.load(CODEC_SOURCE)
            self._codec_socks = [
                curve_dealer(
                    self._ctx,
                    ep,
                    (pair.public, pair.secret),
                    store.public_key(peer),
                    identity=CODEC_SOURCE,
                )
                for peer, ep in zip(self.peers, node_endpoints, strict=True)
            ]
        self.node = Node(SOURCE, keys=KeyStore(rig.store_path))
        self.node.add_concern(Outbox, tally=self.outbox)
        for peer, endpoint in zip(self.peers, node_endpoints, strict=True):
            self.node.add_peer(peer, endpoint, wire=wire)
        if self.ours_to_raw:
            for peer, endpoint, key in zip(self.raw_peers, raw_endpoints, raw_keys, strict=True):
                self.node.add_peer(peer, endpoint, public_key=key, wire=wire)
        # Warm both sides: the CURVE handshakes are not part of any figure.
        rig.server.arm(self.raw_set, left(10), goal=1)
        frame = one_frame if self.native else six_frames
        for sock in self._socks:
            _send_all(sock, frame(0))
        rig.server.wait(self.raw_set, left(30))
        if self.with_ceiling:
            warm = (
                (self.raw_set, self._ceiling_socks, SOURCE, self.raw_peers),
                (self.node_set, self._codec_socks, CODEC_SOURCE, self.peers),
            )
            for name, socks, source, peers in warm:
                rig.server.arm(name, left(10), goal=1, decode=name == self.raw_set)
                for sock, peer in zip(socks, peers, strict=True):
                    now = time.monotonic()
                    message = Message.create(source, peer, SINK, {"warm": 1}, now=now)
                    _send_all(sock, Encoder(self.shape)(message, now))
                rig.server.wait(name, left(30))
        if self.ours_to_raw:
            rig.server.arm(self.raw_set, left(10), goal=1)
            for peer in self.raw_peers:
                self.node.send(peer, SINK, {"warm": 1}, priority=Priority.FAST)
            rig.server.wait(self.raw_set, left(30))
        rig.server.arm(self.node_set, left(10), goal=1)
        for peer in self.peers:
            self.node.send(peer, SINK, {"warm": 1}, priority=Priority.FAST)
        rig.server.wait(self.node_set, left(30))

    @property
    def shape(self) -> WireShape:
        return WireShape.NATIVE if self.native else WireShape.V011

    @property
    def raw_set(self) -> str:
        return f"{self.name}-raw"

    @property
    def node_set(self) -> str:
        return f"{self.name}-nodes"

    # -- runs ---------------------------------------------------------------

    def raw(
        self, count: int, *, backlog: bool = False, multipart: bool = False, batched: int = 0
    ) -> float:
        """Raw DEALERs send ``count`` messages round-robin; msg/s. With
        ``multipart`` the raw sinks read them with ``recv_multipart``. With
        ``batched`` (native only) ``batched`` payloads go in each frame,
        packed in one call as our batch frames are, and the sinks count a
        frame as the payloads it carries: equal wire work for our batching."""
        if batched:
            return self._raw_batched(count, batched)
        sends = [sock.send for sock in self._socks]
        k = len(sends)
        # A backlog's payloads are built first, as ours builds its messages
        # first; packing them is timed on both sides, as our encoding is.
        payloads = [{"seq": i, "data": DATA} for i in range(count)] if backlog else None
        self.rig.server.arm(self.raw_set, self.params.left(10), total=count, multipart=multipart)
        t0 = time.monotonic()
        try:
            if self.native:
                if payloads is None:
                    for i in range(count):
                        sends[i % k](packb({"seq": i, "data": DATA}), LAST)
                else:
                    for i, payload in enumerate(payloads):
                        sends[i % k](packb(payload), LAST)
            else:
                for i in range(count):
                    send = sends[i % k]
                    send(b"", MORE)
                    send(b"", MORE)
                    send(KIND_REQUEST, MORE)
                    send(SINK, MORE)
                    send(packb(i), MORE)
                    send(
                        packb({"seq": i, "data": DATA} if payloads is None else payloads[i]), LAST
                    )
        except zmq.Again:
            raise BenchTimeout("a raw send blocked for 5 s") from None
        return self._rate(self.raw_set, count, t0)

    def _raw_batched(self, count: int, size: int) -> float:
        sends = [sock.send for sock in self._socks]
        k = len(sends)
        self.rig.server.arm(self.raw_set, self.params.left(10), total=count, batches=True)
        t0 = time.monotonic()
        try:
            for n, start in enumerate(range(0, count, size)):
                chunk = [{"seq": i, "data": DATA} for i in range(start, min(count, start + size))]
                sends[n % k](BATCH_HEAD + packb(chunk), LAST)
        except zmq.Again:
            raise BenchTimeout("a raw send blocked for 5 s") from None
        return self._rate(self.raw_set, count, t0)

    def ours(
        self, count: int, mode: str = "send", chunk: int = 1000, *, to_raw: bool = False
    ) -> float:
        """Our node sends ``count`` messages round-robin over its peers; msg/s.

        ``mode``: ``send`` (one ``node.send`` each), ``send_many`` (messages
        built in the loop with ``node.messages``, a list per peer, queued
        ``chunk`` at a time), ``send_many_each`` (the same, each message
        built with ``node.message``) or ``backlog`` (built first, untimed,
        then queued with one ``send_many``). ``to_raw``: to the
        raw sinks instead of the Node sinks (the flow needs ``ours_to_raw``),
        which measures our sending side alone.
        """
        node = self.node
        assert node is not None
        assert self.ours_to_raw or not to_raw
        peers = self.raw_peers if to_raw else self.peers
        sink_set = self.raw_set if to_raw else self.node_set
        lane, k = self.lane, len(peers)
        prebuilt: list[Message] = []
        if mode == "backlog":
            prebuilt = [
                node.message(peers[i % k], SINK, {"seq": i, "data": DATA}, priority=lane)
                for i in range(count)
            ]
        self.rig.server.arm(sink_set, self.params.left(10), total=count, batches=to_raw)
        self.outbox.arm(total=count)
        t0 = time.monotonic()
        if mode == "send":
            send = node.send
            for i in range(count):
                send(peers[i % k], SINK, {"seq": i, "data": DATA}, priority=lane)
        elif mode == "send_many":
            messages = node.messages
            for start in range(0, count, chunk):
                end = min(start + chunk, count)
                for j, peer in enumerate(peers):
                    payloads = share(j, k, start, end)
                    if payloads:
                        node.send_many(messages(peer, SINK, payloads, priority=lane))
        elif mode == "send_many_each":
            message = node.message
            for start in range(0, count, chunk):
                node.send_many(
                    [
                        message(peers[i % k], SINK, {"seq": i, "data": DATA}, priority=lane)
                        for i in range(start, min(start + chunk, count))
                    ]
                )
        else:
            node.send_many(prebuilt)
        rate = self._rate(sink_set, count, t0)
        if self.outbox.done.wait(self.params.left(10)):
            rates = self.sender_rates.setdefault(mode + ("-raw" if to_raw else ""), [])
            rates.append(count / max(self.outbox.t_last - t0, 1e-9))
        return rate

    def ceiling(self, count: int, chunk: int = 1000, *, to_nodes: bool = False) -> float:
        """The codec ceiling: our per-message work between raw sockets, with
        no actor, queue or tell; msg/s.

        The sender builds each message with ``Message.create`` and encodes it
        with our ``Encoder`` (p2p0mq's six frames sent with int flags; or, on
        the native wire, ``chunk`` messages a round built per sink with
        ``new_messages`` as 2b builds them, their bodies in batch frames as
        our connection batches a ``send_many``); the raw sinks
        decode every message with ``codec.decode_many`` into validated
        ``Message`` objects. No design built on this codec and message
        model can pass this figure on this wire.

        ``to_nodes``: send to our receiving nodes instead (their Sink
        Concerns count), in native frames of ``FRAME_MESSAGES`` as our
        connection sends them: the receiving side alone, behind a sender
        that costs nothing but the codec.
        """
        assert self.with_ceiling, "the flow was made without ceiling=True"
        if to_nodes:
            socks, peers, source = self._codec_socks, self.peers, CODEC_SOURCE
            sink_set, frame_size = self.node_set, FRAME_MESSAGES
        else:
            socks, peers, source = self._ceiling_socks, self.raw_peers, SOURCE
            sink_set, frame_size = self.raw_set, chunk
        sends = [sock.send for sock in socks]
        k = len(socks)
        create, clock, lane = Message.create, time.monotonic, self.lane
        encoder = Encoder(self.shape)
        self.rig.server.arm(sink_set, self.params.left(10), total=count, decode=not to_nodes)
        t0 = clock()
        try:
            if self.native:  # built as 2b builds them: new_messages, a list per peer
                body = encoder.body
                for start in range(0, count, chunk):
                    now = clock()
                    end = min(start + chunk, count)
                    for j, send in enumerate(sends):
                        payloads = share(j, k, start, end)
                        batch: list[bytes] = []
                        for message in new_messages(
                            source, peers[j], SINK, payloads, now, DEFAULT_TTL, REQUEST, lane
                        ):
                            batch.append(body(message, now))
                            if len(batch) == frame_size:
                                send(batch_frame(batch), LAST)
                                batch.clear()
                        if batch:
                            send(batch_frame(batch), LAST)
            else:
                for i in range(count):
                    j = i % k
                    payload = {"seq": i, "data": DATA}
                    message = create(source, peers[j], SINK, payload, now=clock(), priority=lane)
                    send = sends[j]
                    *head, last = encoder(message)
                    for part in head:
                        send(part, MORE)
                    send(last, LAST)
        except zmq.Again:
            raise BenchTimeout("a codec-ceiling send blocked for 5 s") from None
        return self._rate(sink_set, count, t0)

    def _rate(self, name: str, count: int, t0: float) -> float:
        snap = self.rig.server.wait(name, self.params.left())
        t_last: float = snap["t_last"]
        return count / max(t_last - t0, 1e-9)

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        for sock in (*self._socks, *self._ceiling_socks, *self._codec_socks):
            sock.close(linger=0)
        self._socks, self._ceiling_socks, self._codec_socks = [], [], []
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        for name in self._started:
            with contextlib.suppress(Exception):
                self.rig.server.stop_set(name)
        self._started = []


def _send_all(sock: zmq.Socket[Any], frames: list[bytes]) -> None:
    try:
        for part in frames[:-1]:
            sock.send(part, MORE)
        sock.send(frames[-1], LAST)
    except zmq.Again:
        raise BenchTimeout("a raw warm-up send blocked for 5 s") from None


def run_flow(
    rig: Rig,
    name: str,
    *,
    sinks: int,
    wire: str,
    runs: Callable[[Flow], tuple[list[float], list[list[float]]]],
    lane: Priority = Priority.FAST,
    ours_to_raw: bool = False,
    ceiling: bool = False,
) -> tuple[list[float], list[list[float]], dict[str, list[float]]]:
    """Set a flow up, hand it to ``runs`` (which interleaves raw and ours), tear
    it down; returns raw rates, our rates per run kind, and our sender-side
    rates (to the last ``on_sent``) per mode."""
    try:
        flow = Flow(
            rig, name, sinks=sinks, wire=wire, lane=lane, ours_to_raw=ours_to_raw, ceiling=ceiling
        )
        try:
            raws, mine = runs(flow)
            return raws, mine, flow.sender_rates
        finally:
            flow.close()
    except P2P0MQError as exc:  # e.g. IntakeFullError: reported, not a traceback
        raise BenchFailure(f"the library raised {exc!r}") from exc
