"""Scenario 5: request/reply between two processes (p2p0mq 0.1.1 wire).

5a. sequential round trips: ``node.request(...).get()`` to an echo
    Concern in the other process, against a raw CURVE DEALER sending the
    same 6 frames to a raw ROUTER that sends them straight back; p50 and p99.
    The echo is an ``InlineEcho`` (``Concern.inline``: the Receiver runs it
    while it is idle); ``5a_rtt_p50_told`` is the same with an ``Echo``,
    told as any Concern is.
5b. pipelined: 100 requests in flight (a new one as the oldest resolves),
    against the raw pair with 100 messages in flight; requests per second.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

import zmq

from p2p0mq_actors import KeyStore, Node, P2P0MQError, Priority
from p2p0mq_actors.core.codec import Encoder, decode
from p2p0mq_actors.core.message import Message

from .common import (
    DATA,
    LAST,
    MORE,
    BenchFailure,
    BenchTimeout,
    Params,
    Result,
    curve_dealer,
    median,
    percentile,
    ratio,
)
from .flow import SOURCE, Rig, six_frames
from .sinks import ECHO, ECHO_INLINE, raw_sink_uuid

WINDOW = 100
WIRE = "0.1.1"


class EchoPair:
    """A raw DEALER and our node, each talking to an echo in the sink process."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        left = rig.params.left
        self.peer = rig.sink_uuids[0]
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.node: Node | None = None
        self.sock: zmq.Socket[Any] | None = None
        (raw_endpoint,) = rig.server.start_raw(
            "echo-raw", 1, rig.certificates, [rig.server_pair], left(30), echo=True
        )
        self.sock = curve_dealer(self.ctx, raw_endpoint, rig.client_pair, rig.server_pair[0])
        # the codec ceiling's DEALER: a routing id that decodes as our node's uuid
        self.ceiling_sock: zmq.Socket[Any] | None = curve_dealer(
            self.ctx, raw_endpoint, rig.client_pair, rig.server_pair[0], identity=SOURCE
        )
        self.encoder = Encoder()
        self.node = Node(SOURCE, keys=KeyStore(rig.store_path))
        (node_endpoint,) = rig.server.start_nodes(
            "echo-nodes",
            [self.peer],
            rig.store_path,
            left(60),
            concern="echo",
            peers=[(SOURCE, self.node.endpoint, WIRE)],
        )
        self.node.add_peer(self.peer, node_endpoint, wire=WIRE)

    # -- one round trip each ---------------------------------------------------

    def raw_once(self, i: int) -> None:
        sock = self.sock
        assert sock is not None
        try:
            frames = six_frames(i)
            send = sock.send
            for part in frames[:-1]:
                send(part, MORE)
            send(frames[-1], LAST)
            frame = sock.recv(0, copy=False)
            while frame.more:
                frame = sock.recv(0, copy=False)
        except zmq.Again:
            raise BenchTimeout("no raw echo within 5 s") from None

    def ceiling_once(self, i: int) -> None:
        """One round trip of the codec ceiling: the request built with
        ``Message.create`` and encoded by our encoder, sent on a raw DEALER;
        the raw echo decodes it, builds and encodes the reply
        (``_echo_decoded``); the reply decoded here. No actor, no future."""
        sock = self.ceiling_sock
        assert sock is not None
        clock = time.monotonic
        sink = raw_sink_uuid(0)
        message = Message.create(
            SOURCE, sink, ECHO, {"seq": i, "data": DATA}, now=clock(), priority=Priority.FAST
        )
        try:
            *head, last = self.encoder(message)
            send = sock.send
            for part in head:
                send(part, MORE)
            send(last, LAST)
            frame = sock.recv(0, copy=False)
            frames = [sink, frame.bytes]  # a ROUTER would give the routing id first
            while frame.more:
                frame = sock.recv(0, copy=False)
                frames.append(frame.bytes)
        except zmq.Again:
            raise BenchTimeout("no codec-ceiling echo within 5 s") from None
        decode(frames, SOURCE, now=clock())

    def ceiling_rtts(self, count: int) -> list[float]:
        """``rtts`` of ``ceiling_once``, the raw echo decoding meanwhile."""
        left = self.rig.params.left
        self.rig.server.arm("echo-raw", left(10), decode=True)
        try:
            return self.rtts(self.ceiling_once, count)
        finally:
            self.rig.server.arm("echo-raw", left(10), decode=False)

    def ours_request(self, i: int, command: bytes = ECHO) -> Any:
        assert self.node is not None
        return self.node.request(
            self.peer, command, {"seq": i, "data": DATA}, timeout=10, priority=Priority.FAST
        )

    def ours_once(self, i: int) -> None:
        _get(self.ours_request(i, ECHO_INLINE))

    def ours_once_told(self, i: int) -> None:
        _get(self.ours_request(i))

    # -- runs ------------------------------------------------------------------

    def rtts(self, once: Any, count: int) -> list[float]:
        """Round-trip times in microseconds, one request at a time."""
        out = []
        clock = time.perf_counter
        for i in range(count):
            if i % 64 == 0:
                self.rig.params.left()
            t0 = clock()
            once(i)
            out.append((clock() - t0) * 1e6)
        return out

    def raw_pipelined(self, total: int) -> float:
        sock = self.sock
        assert sock is not None
        send, recv = sock.send, sock.recv
        t0 = time.monotonic()
        sent = got = 0
        try:
            while got < total:
                while sent < total and sent - got < WINDOW:
                    frames = six_frames(sent)
                    for part in frames[:-1]:
                        send(part, MORE)
                    send(frames[-1], LAST)
                    sent += 1
                frame = recv(0, copy=False)
                while frame.more:
                    frame = recv(0, copy=False)
                got += 1
        except zmq.Again:
            raise BenchTimeout(f"raw pipelined echo stalled after {got} replies") from None
        return total / (time.monotonic() - t0)

    def ours_pipelined(self, total: int) -> float:
        in_flight: deque[Any] = deque()
        t0 = time.monotonic()
        for i in range(total):
            if len(in_flight) >= WINDOW:
                _get(in_flight.popleft())
            in_flight.append(self.ours_request(i))
        while in_flight:
            _get(in_flight.popleft())
        return total / (time.monotonic() - t0)

    def close(self) -> None:
        if self.node is not None:
            self.node.stop()
        for sock in (self.sock, self.ceiling_sock):
            if sock is not None:
                sock.close(linger=0)
        self.ctx.term()
        for name in ("echo-raw", "echo-nodes"):
            with contextlib.suppress(BenchTimeout, BenchFailure):
                self.rig.server.stop_set(name)


def _get(future: Any) -> Message:
    try:
        reply: Message = future.get(timeout=15)
    except P2P0MQError as exc:
        raise BenchFailure(f"a request failed: {exc!r}") from exc
    except Exception as exc:  # pykka.Timeout
        raise BenchTimeout(f"no reply: {exc!r}") from exc
    return reply


def scenario_5(params: Params) -> dict[str, Result]:
    sequential = params.size(1_000, 200)
    pipelined = params.size(20_000, 2_000)
    rig = Rig(params, sinks=1)
    pair: EchoPair | None = None
    try:
        pair = EchoPair(rig)
        pair.rtts(pair.raw_once, 50)  # warm: handshakes, first allocations
        pair.rtts(pair.ours_once, 50)
        pair.rtts(pair.ours_once_told, 50)
        pair.ceiling_rtts(50)
        raw_runs = [pair.rtts(pair.raw_once, sequential)]
        our_runs, told_runs, ceiling_runs = [], [], []
        for _ in range(params.repeat):
            our_runs.append(pair.rtts(pair.ours_once, sequential))
            told_runs.append(pair.rtts(pair.ours_once_told, sequential))
            ceiling_runs.append(pair.ceiling_rtts(sequential))
            raw_runs.append(pair.rtts(pair.raw_once, sequential))
        raw_rates = [pair.raw_pipelined(pipelined)]
        our_rates = []
        for _ in range(params.repeat):
            our_rates.append(pair.ours_pipelined(pipelined))
            raw_rates.append(pair.raw_pipelined(pipelined))
    finally:
        if pair is not None:
            pair.close()
        rig.close()
    p50 = median([median(r) for r in our_runs])
    raw50 = median([median(r) for r in raw_runs])
    p99 = median([percentile(r, 99) for r in our_runs])
    raw99 = median([percentile(r, 99) for r in raw_runs])
    how = f"{sequential:,} sequential round trips per run, echo Concern vs raw ROUTER echo"
    r50 = ratio(p50, raw50)
    told50 = median([median(r) for r in told_runs])
    c50 = median([median(r) for r in ceiling_runs])
    rate, raw_rate = median(our_rates), median(raw_rates)
    runs = "/".join(f"{v:,.0f}" for v in our_rates)
    raw_runs_text = "/".join(f"{v:,.0f}" for v in raw_rates)
    return {
        "5a_rtt_p50": Result(
            p50, raw50, r50, "us", "<= 2x raw", how + " (ratio: lower is better)",
            r50 is not None and r50 <= 2.0,
        ),
        "5a_rtt_p99": Result(p99, raw99, ratio(p99, raw99), "us", "(reported)", how),
        "5a_rtt_p50_told": Result(
            told50, raw50, ratio(told50, raw50), "us", "(reported)",
            "p50; the same with an Echo Concern that is told (not inline), as every Concern "
            "was before inline Concerns",
        ),
        "5a_ceiling_codec": Result(
            c50, raw50, ratio(c50, raw50), "us", "(bound)",
            f"p50; {sequential:,} sequential round trips per run, raw DEALER and raw ROUTER "
            "echo with our codec (Message.create, encode, decode, Message.reply) on both "
            "ends; no actors, no future",
        ),
        "5b_pipelined_100": Result(
            rate, raw_rate, ratio(rate, raw_rate), "req/s", ">= 20,000 req/s",
            f"{pipelined:,} requests, {WINDOW} in flight [runs: ours {runs}; raw {raw_runs_text}]",
            rate >= 20_000,
        ),
    }  # fmt: skip
