"""The receiving side, run in a child process: raw CURVE ROUTER sinks and
p2p0mq-actors node sinks, counted the same way.

A ``SinkServer`` (parent side) drives ``sink_server`` (child side) over a
pipe. The child holds named sink sets: ``start`` one (raw ROUTERs, or Nodes
with a counting or an echoing Concern), ``arm`` its tally (a total to reach,
or a number of new messages every sink must get), ``wait`` for it, ``stop`` it.
Times are ``time.monotonic()``, which Linux shares between processes, so the
parent can subtract its own start time from the child's last receive time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import zmq

from p2p0mq_actors import Concern, KeyStore, Message, Node
from p2p0mq_actors.core.codec import Encoder, decode_many

from .common import (
    LAST,
    MORE,
    NOBLOCK,
    BenchFailure,
    BenchTimeout,
    Child,
    bind_local,
    close_all,
    curve_router,
    raise_nofile,
    serve,
    start_authenticator,
)

SINK = b"sink"
BATCH_HEAD = b"\x92\x01"  # a native batch frame: [1, [envelope, ...]] (native.py)
ECHO = b"echo"
ECHO_INLINE = b"echo-inline"


def raw_sink_uuid(index: int) -> bytes:
    """The uuid of raw sink ``index``: what our node calls it, and what it
    decodes as in the codec ceiling."""
    return b"raw-sink-%d" % index


class Tally:
    """Counts what sinks receive; ``done`` is set when the armed condition holds.

    Thread-safe: raw sinks count from their thread, node sinks from their
    Concerns' threads.
    """

    def __init__(self, sinks: int) -> None:
        self._lock = threading.Lock()
        self.per = [0] * sinks
        self._base = [0] * sinks
        self.done = threading.Event()
        self.total = 0
        self.target = 0
        self.goal = 0
        self.reached = 0
        self.t_first = 0.0
        self.t_last = 0.0
        self.batches = False
        self.decode = False
        self.multipart = False

    def arm(
        self,
        total: int = 0,
        goal: int = 0,
        batches: bool = False,
        decode: bool = False,
        multipart: bool = False,
    ) -> None:
        """Wait for ``total`` messages in all, or ``goal`` new ones at every
        sink; with ``batches`` a native batch frame counts as the messages
        it carries (raw sinks of our node; never for the raw baseline); with
        ``decode`` raw sinks decode what they get with our codec and count
        the messages it gives (the codec ceiling); with ``multipart`` raw
        sinks read each message with pyzmq's ``recv_multipart``."""
        with self._lock:
            self.batches = batches
            self.decode = decode
            self.multipart = multipart
            self.total, self.target, self.goal, self.reached = 0, total, goal, 0
            self._base = list(self.per)
            self.t_first = self.t_last = 0.0
            self.done.clear()

    def hit(self, sink: int, count: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            if self.total == 0:
                self.t_first = now
            before = self.per[sink] - self._base[sink]
            self.per[sink] += count
            self.total += count
            if self.done.is_set():
                return
            if self.target and self.total >= self.target:
                self.t_last = now
                self.done.set()
            elif self.goal and before < self.goal <= before + count:
                self.reached += 1
                if self.reached == len(self.per):
                    self.t_last = now
                    self.done.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            new = [p - b for p, b in zip(self.per, self._base, strict=True)]
            return {
                "done": self.done.is_set(),
                "total": self.total,
                "t_first": self.t_first,
                "t_last": self.t_last,
                "min_new": min(new) if new else 0,
                "reached": self.reached,
                "sinks": len(self.per),
                "target": self.target,
                "goal": self.goal,
            }


class Sink(Concern):
    """Counts the requests it gets; never replies.

    It adds to the tally once per batch the Receiver hands it (after the
    batch), as the raw sinks do once per drain: the tally's lock and clock
    cost 0.5 µs, which per message would be charged to our side only.
    """

    command = SINK

    def __init__(self, *, tally: Tally, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tally = tally
        self.index = index
        self._uncounted = 0

    def on_receive(self, message: Any) -> Any:
        answer = super().on_receive(message)  # a batch: on_request for each
        if self._uncounted:
            self.tally.hit(self.index, self._uncounted)
            self._uncounted = 0
        return answer

    def on_request(self, message: Message) -> None:
        self._uncounted += 1


class Echo(Sink):
    """Counts like a Sink, and replies to every request with its payload."""

    command = ECHO

    def on_request(self, message: Message) -> Mapping[str, Any]:  # type: ignore[override]
        super().on_request(message)
        return dict(message.payload)


class InlineEcho(Concern):
    """Replies to every request with its payload; ``inline``: while it is
    idle, the Receiver runs it in its own thread (what a latency-minded
    application would declare for a handler this short)."""

    command = ECHO_INLINE
    inline = True

    def __init__(self, *, tally: Tally, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # (round trips are timed by the client)

    def on_request(self, message: Message) -> Mapping[str, Any]:
        return dict(message.payload)


class RawSinks:
    """``count`` CURVE ROUTERs in one context (one ZAP authenticator), served
    by one thread that owns them: it counts whole messages, or echoes them."""

    def __init__(
        self,
        count: int,
        certificates: str,
        pairs: Sequence[tuple[bytes, bytes]],
        echo: bool,
        deadline: float,
    ) -> None:
        if len(pairs) != count:
            raise BenchFailure(f"{count} raw sinks need {count} key pairs, not {len(pairs)}")
        self.tally = Tally(count)
        self._count = count
        self._certificates = certificates
        self._pairs = list(pairs)  # one each: a node gives each peer a key of its own
        self._echo = echo
        self._deadline = deadline
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: str | None = None
        self.endpoints: list[str] = []
        self._thread = threading.Thread(target=self._run, name="raw-sinks", daemon=True)
        self._thread.start()
        if not self._ready.wait(30.0) or self._error:
            self.stop()
            raise BenchFailure(f"raw sinks did not start: {self._error or 'timeout'}")

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        ctx.MAX_SOCKETS = max(1023, 2 * self._count + 64)
        socks: list[zmq.Socket[Any]] = []
        auth = None
        try:
            auth = start_authenticator(ctx, self._certificates)
            for pair in self._pairs:
                socks.append(curve_router(ctx, *pair))
            self.endpoints = [bind_local(s) for s in socks]
        except Exception as exc:
            self._error = repr(exc)
            self._ready.set()
            close_all(ctx, socks, auth)
            return
        self._ready.set()
        try:
            self._loop(socks)
        finally:
            close_all(ctx, socks, auth)

    def _loop(self, socks: list[zmq.Socket[Any]]) -> None:
        poller = zmq.Poller()
        index = {}
        for i, sock in enumerate(socks):
            poller.register(sock, zmq.POLLIN)
            index[sock] = i
        tally = self.tally
        hit = tally.hit
        encoder = Encoder()  # this thread's, for the codec ceiling's echo
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for sock, _ in poller.poll(50):
                if self._echo:
                    got = (
                        _echo_decoded(sock, raw_sink_uuid(index[sock]), encoder)
                        if tally.decode
                        else _echo(sock)
                    )
                elif tally.decode:
                    got = _drain_decoded(sock, raw_sink_uuid(index[sock]))
                elif tally.batches:
                    got = _drain_batches(sock)
                elif tally.multipart:
                    got = _drain_multipart(sock)
                else:
                    got = _drain(sock)
                if got:
                    hit(index[sock], got)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)


def _drain(sock: zmq.Socket[Any], limit: int = 1024) -> int:
    """Receive up to ``limit`` whole messages without blocking; returns how many."""
    recv = sock.recv
    got = 0
    while got < limit:
        try:
            frame = recv(NOBLOCK, copy=False)
        except zmq.Again:
            break
        while frame.more:
            frame = recv(NOBLOCK, copy=False)
        got += 1
    return got


def _drain_multipart(sock: zmq.Socket[Any], limit: int = 1024) -> int:
    """``_drain`` with pyzmq's own idiom, ``recv_multipart`` (copies, and
    one ``RCVMORE`` query a frame); returns how many messages."""
    recv_multipart = sock.recv_multipart
    got = 0
    while got < limit:
        try:
            recv_multipart(NOBLOCK)
        except zmq.Again:
            break
        got += 1
    return got


def _read_decoded(
    sock: zmq.Socket[Any], local_uuid: bytes, who: str
) -> tuple[bytes, list[Message], float] | None:
    """One waiting message's frames read as our Receiver reads them
    (``bytes``) and decoded by our codec into validated ``Message``
    objects (a native batch frame into all it carries): the routing id,
    the messages and the time they were decoded at; None if none waits."""
    recv = sock.recv
    try:
        routing_id = recv(NOBLOCK)
    except zmq.Again:
        return None
    frame = recv(NOBLOCK, copy=False)
    frames = [routing_id, frame.bytes]
    while frame.more:
        frame = recv(NOBLOCK, copy=False)
        frames.append(frame.bytes)
    now = time.monotonic()
    messages, errors = decode_many(frames, local_uuid, now=now)
    if errors:
        raise BenchFailure(f"the codec ceiling's {who} refused a message: {errors[0]}")
    return routing_id, messages, now


def _drain_decoded(sock: zmq.Socket[Any], local_uuid: bytes, limit: int = 1024) -> int:
    """``_drain`` through ``_read_decoded``; returns how many messages.
    The receiving half of the codec ceiling: our per-message work, no actors."""
    got = 0
    for _ in range(limit):
        read = _read_decoded(sock, local_uuid, "sink")
        if read is None:
            break
        got += len(read[1])
    return got


def _drain_batches(sock: zmq.Socket[Any], limit: int = 1024) -> int:
    """``_drain``, counting a native batch frame (identity, then ``[1, [...]]``)
    as the messages it carries; returns how many messages."""
    recv = sock.recv
    got = frames = 0
    while frames < limit:
        try:
            recv(NOBLOCK, copy=False)  # the identity
        except zmq.Again:
            break
        frame = recv(NOBLOCK, copy=False)
        frames += 1
        if frame.more:
            while frame.more:
                frame = recv(NOBLOCK, copy=False)
            got += 1
            continue
        head = frame.buffer[:5]
        if head[:2] != BATCH_HEAD:
            got += 1
        elif head[2] & 0xF0 == 0x90:  # fixarray
            got += head[2] & 0x0F
        else:  # array 16
            got += int.from_bytes(head[3:5], "big")
    return got


def _echo(sock: zmq.Socket[Any], limit: int = 1024) -> int:
    """Send back every waiting message (identity frame first) as it came."""
    recv, send = sock.recv, sock.send
    got = 0
    while got < limit:
        try:
            frame = recv(NOBLOCK, copy=False)
        except zmq.Again:
            break
        frames = [frame]
        while frame.more:
            frame = recv(NOBLOCK, copy=False)
            frames.append(frame)
        for part in frames[:-1]:
            send(part, MORE, copy=False)
        send(frames[-1], LAST, copy=False)
        got += 1
    return got


def _echo_decoded(
    sock: zmq.Socket[Any], local_uuid: bytes, encoder: Encoder, limit: int = 1024
) -> int:
    """``_echo`` as an ``Echo`` Concern answers, with our codec and no actors:
    each request decoded (``_read_decoded``), its reply built with
    ``Message.reply`` and encoded (p2p0mq 0.1.1 frames), sent back on the
    connection it came on. The serving half of the round trip's codec
    ceiling."""
    send = sock.send
    got = 0
    while got < limit:
        read = _read_decoded(sock, local_uuid, "echo")
        if read is None:
            break
        routing_id, messages, now = read
        for message in messages:
            *head, last = encoder(message.reply(dict(message.payload), now=now))
            send(routing_id, MORE)
            for part in head:
                send(part, MORE)
            send(last, LAST)
        got += 1
    return got


class NodeSinks:
    """One Node per uuid, each with a ``Sink``, or an ``Echo`` and an
    ``InlineEcho``, Concern sharing a tally."""

    def __init__(
        self,
        uuids: Sequence[bytes],
        store: str,
        concern: str,
        peers: Sequence[tuple[bytes, str, str]],
    ) -> None:
        self.tally = Tally(len(uuids))
        self.nodes: list[Node] = []
        kind = Echo if concern == "echo" else Sink
        try:
            for i, uuid in enumerate(uuids):
                node = Node(uuid, keys=KeyStore(store))
                self.nodes.append(node)
                node.add_concern(kind, tally=self.tally, index=i)
                if kind is Echo:
                    node.add_concern(InlineEcho, tally=self.tally, index=i)
                for peer, endpoint, wire in peers:
                    node.add_peer(peer, endpoint, wire=wire)
        except BaseException:
            self.stop()
            raise
        self.endpoints = [node.endpoint for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def sink_server(conn: Any, deadline: float) -> None:
    """Child main: serves ``SinkServer`` commands until told to quit."""
    raise_nofile()
    sets: dict[str, RawSinks | NodeSinks] = {}

    def start(name: str, kind: str, *args: Any) -> tuple[str, list[str]]:
        if kind == "raw":
            count, certificates, pairs, echo = args
            sets[name] = RawSinks(count, certificates, pairs, echo, deadline)
        else:
            uuids, store, concern, peers = args
            sets[name] = NodeSinks(uuids, store, concern, peers)
        return ("ready", sets[name].endpoints)

    def arm(
        name: str, total: int, goal: int, batches: bool, decode: bool, multipart: bool
    ) -> tuple[str]:
        sets[name].tally.arm(total, goal, batches, decode, multipart)
        return ("armed",)

    def wait(name: str, timeout: float) -> tuple[str, dict[str, Any]]:
        tally = sets[name].tally
        tally.done.wait(max(0.0, min(timeout, deadline - time.monotonic())))
        return ("done" if tally.done.is_set() else "timeout", tally.snapshot())

    def stop(name: str) -> tuple[str]:
        sinks = sets.pop(name, None)
        if sinks is not None:
            sinks.stop()
        return ("stopped",)

    try:
        serve(conn, deadline, {"start": start, "arm": arm, "wait": wait, "stop": stop})
    finally:
        for sinks in sets.values():
            with contextlib.suppress(Exception):
                sinks.stop()


class SinkServer(Child):
    """Parent side of ``sink_server``."""

    def __init__(self, deadline: float) -> None:
        super().__init__(sink_server, deadline, role="peer")

    def start_raw(
        self,
        name: str,
        count: int,
        certificates: str,
        pairs: Sequence[tuple[bytes, bytes]],
        timeout: float,
        *,
        echo: bool = False,
    ) -> list[str]:
        """The endpoints of ``count`` raw sinks, the i-th bound with ``pairs[i]``."""
        answer = self.ask(timeout, "start", name, "raw", count, certificates, list(pairs), echo)
        endpoints: list[str] = answer[1]
        return endpoints

    def start_nodes(
        self,
        name: str,
        uuids: Sequence[bytes],
        store: str,
        timeout: float,
        *,
        concern: str = "sink",
        peers: Sequence[tuple[bytes, str, str]] = (),
    ) -> list[str]:
        answer = self.ask(timeout, "start", name, "nodes", list(uuids), store, concern, peers)
        endpoints: list[str] = answer[1]
        return endpoints

    def arm(
        self,
        name: str,
        timeout: float,
        *,
        total: int = 0,
        goal: int = 0,
        batches: bool = False,
        decode: bool = False,
        multipart: bool = False,
    ) -> None:
        self.ask(timeout, "arm", name, total, goal, batches, decode, multipart)

    def wait(self, name: str, timeout: float) -> dict[str, Any]:
        """The tally once its armed condition holds; BenchTimeout if it does not in time."""
        status, snap = self.ask(timeout + 5.0, "wait", name, timeout)
        if status != "done":
            if snap["target"]:
                got = f"{snap['total']:,} of {snap['target']:,} messages"
            else:
                got = f"{snap['reached']} of {snap['sinks']} sinks got {snap['goal']} new"
            raise BenchTimeout(f"sinks {name!r}: {got} within {timeout:.1f} s")
        result: dict[str, Any] = snap
        return result

    def stop_set(self, name: str, timeout: float = 30.0) -> None:
        self.ask(timeout, "stop", name)
