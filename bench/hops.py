"""Where a round trip's time goes: ``python -m bench.hops``.

A diagnostic, not a scenario: it asserts nothing and prints the median
time of each segment of sequential ``node.request(...).get()`` round trips
between two Nodes in two processes (the client here, an echo Concern in a
spawned child), from timestamps taken on both sides. ``time.monotonic()``
is one clock for every process on Linux, so the two sides' marks subtract.

Marks are taken by wrapping library methods in each process (the same
technique scenario 6 uses to count at the sockets): ``Message.create`` is
not wrapped, the request's start is taken by the caller. The wrappers cost
well under a microsecond each, against segments of several.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from p2p0mq_actors import Concern, KeyStore, Message, Node, Priority
from p2p0mq_actors.core.codec import Encoder, p2p0mq_reader
from p2p0mq_actors.runtime import receiver as receiver_module
from p2p0mq_actors.runtime.future import ReplyFuture
from p2p0mq_actors.runtime.receiver import Receiver
from p2p0mq_actors.runtime.requests import PendingRequests
from p2p0mq_actors.transport.router import CurveRouter
from p2p0mq_actors.transport.sockets import CurveDealerSocket

from .common import SPAWN, remove_dir, scratch_dir

Marks = dict[str, list[float]]
ECHO_COMMAND = b"echo"
CLIENT, SERVER = b"hops-client", b"hops-server"
WARM = 200


def instrument(marks: Marks) -> Callable[[], None]:
    """Wrap the methods on a round trip's path so each call appends
    ``time.monotonic()`` to its marks; returns what undoes it."""
    clock = time.monotonic
    undo: list[Callable[[], None]] = []

    def around(owner: Any, name: str, before: str, after: str | None) -> None:
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault(before, []).append(clock())
            result = original(*args, **kwargs)
            if after is not None:
                marks.setdefault(after, []).append(clock())
            return result

        setattr(owner, name, wrapped)
        undo.append(lambda: setattr(owner, name, original))

    original_poll = CurveRouter.poll

    def poll(self: CurveRouter, timeout: float) -> bool:
        ready = original_poll(self, timeout)
        if ready:
            marks.setdefault("poll", []).append(clock())
        return ready

    CurveRouter.poll = poll  # type: ignore[method-assign]
    undo.append(lambda: setattr(CurveRouter, "poll", original_poll))
    around(PendingRequests, "register", "register", "registered")
    around(Encoder, "__call__", "encode", "encoded")
    around(Encoder, "body", "encode", "encoded")  # the connection's native batches
    around(Encoder, "many", "encode", "encoded")  # a p2p0mq plan's fast messages
    around(CurveDealerSocket, "send_frames", "send", "sent")
    around(CurveDealerSocket, "send_each", "send", "sent")
    around(Receiver, "_handle", "handle", "handled")
    around(receiver_module, "decode_p2p0mq", "decode", "decoded")

    def reader(*args: Any) -> Any:  # the readers it makes, marked as ``around`` marks
        read = p2p0mq_reader(*args)
        if read is None:
            return None

        def timed(*frames: bytes) -> Any:
            started = clock()
            result = read(*frames)
            if result is not None:  # (one it leaves is marked by decode_p2p0mq)
                marks.setdefault("decode", []).append(started)
                marks.setdefault("decoded", []).append(clock())
            return result

        return timed

    setattr(receiver_module, "p2p0mq_reader", reader)  # noqa: B010 - not exported there
    undo.append(lambda: setattr(receiver_module, "p2p0mq_reader", p2p0mq_reader))
    around(receiver_module, "decode_many", "decode", "decoded")
    around(Receiver, "_tell", "tell", "told")
    around(ReplyFuture, "set", "set", "was_set")

    def restore() -> None:
        for step in reversed(undo):
            step()

    return restore


class _Echo(Concern):
    command = ECHO_COMMAND

    def __init__(self, *, marks: Marks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marks = marks

    def on_request(self, message: Message) -> dict[str, Any]:
        self.marks.setdefault("concern", []).append(time.monotonic())
        return dict(message.payload)


def _server(conn: Any, store: str, wire: str) -> None:
    """Child main: an echo node, instrumented; sends its marks when told."""
    marks: Marks = {}
    instrument(marks)
    node = Node(SERVER, keys=KeyStore(store))
    try:
        node.add_concern(_Echo, marks=marks)
        conn.send(node.endpoint)
        node.add_peer(CLIENT, conn.recv(), wire=wire)
        if conn.poll(600):
            conn.recv()
            conn.send(marks)
    finally:
        node.stop()
        conn.close()


# (label, first mark, second mark, side of each: c = client, s = server)
Segment = tuple[str, str, str, str]


def segments_for(wire: str) -> tuple[Segment, ...]:
    """The segments of a round trip on ``wire``: on p2p0mq's, a message is
    decoded as its frames are read (``codec.p2p0mq_reader``), before the
    Receiver handles the drain; a native frame, after."""
    if wire == "native":
        server_receiving: tuple[Segment, ...] = (
            ("server: receiving the frames", "poll", "handle", "ss"),
            ("server: handle -> decoding", "handle", "decode", "ss"),
            ("server: decoding", "decode", "decoded", "ss"),
            ("server: decoded -> tell (dispatch)", "decoded", "tell", "ss"),
        )
        client_receiving = ("client: receiving the frames", "poll", "handle", "cc")
    else:
        server_receiving = (
            ("server: receiving the frames", "poll", "decode", "ss"),
            ("server: decoding", "decode", "decoded", "ss"),
            ("server: decoded -> handling the drain", "decoded", "handle", "ss"),
            ("server: handle -> tell (dispatch)", "handle", "tell", "ss"),
        )
        client_receiving = ("client: receiving the frames", "poll", "decode", "cc")
    return (
        ("client: start -> registering the future", "start", "register", "cc"),
        ("client: registering the future", "register", "registered", "cc"),
        ("client: registered -> encoding (the lane)", "registered", "encode", "cc"),
        ("client: encoding", "encode", "encoded", "cc"),
        ("client: sending the frames", "send", "sent", "cc"),
        ("network -> server poll returns", "sent", "poll", "cs"),
        *server_receiving,
        ("server: the tell (waking the Concern)", "tell", "told", "ss"),
        ("server: told -> the Concern runs", "told", "concern", "ss"),
        ("server: Concern -> encoding the reply", "concern", "encode", "ss"),
        ("server: encoding", "encode", "encoded", "ss"),
        ("server: sending the frames", "send", "sent", "ss"),
        ("network -> client poll returns", "sent", "poll", "sc"),
        client_receiving,
        ("client: decoding", "decode", "decoded", "cc"),
        ("client: decoded -> setting the future", "decoded", "set", "cc"),
        ("client: setting the future (waking the caller)", "set", "was_set", "cc"),
        ("client: future set -> the caller runs", "was_set", "done", "cc"),
        ("round trip", "start", "done", "cc"),
    )


def segments(
    client: Marks, server: Marks, count: int, wire: str = "0.1.1"
) -> list[tuple[str, float | None]]:
    """Each segment's median in microseconds on ``wire``, over the last
    ``count`` marks of each kind (None where a side has fewer: the path
    went another way)."""
    out: list[tuple[str, float | None]] = []
    for label, first, second, sides in segments_for(wire):
        a = (client if sides[0] == "c" else server).get(first, [])[-count:]
        b = (client if sides[1] == "c" else server).get(second, [])[-count:]
        if len(a) < count or len(b) < count:
            out.append((label, None))
            continue
        out.append((label, statistics.median((y - x) * 1e6 for x, y in zip(a, b, strict=True))))
    return out


def run(count: int, wire: str) -> list[tuple[str, float | None]]:
    """``count`` sequential round trips (after a warm-up); the segments."""
    scratch = scratch_dir()
    marks: Marks = {}
    restore = instrument(marks)
    ours, theirs = SPAWN.Pipe()
    store = str(Path(scratch) / "store")
    keys = KeyStore(store)
    for uuid in (CLIENT, SERVER):
        keys.ensure(uuid)
    child = SPAWN.Process(target=_server, args=(theirs, store, wire), daemon=True)
    child.start()
    node: Node | None = None
    try:
        if not ours.poll(60):
            raise RuntimeError("the echo node did not start")
        server_endpoint = ours.recv()
        node = Node(CLIENT, keys=KeyStore(store))
        ours.send(node.endpoint)
        node.add_peer(SERVER, server_endpoint, wire=wire)
        payload = {"data": "x" * 32}
        for _ in range(WARM):
            node.request(SERVER, ECHO_COMMAND, payload, timeout=10).get(timeout=15)
        for kept in marks.values():
            kept.clear()
        starts, dones = marks.setdefault("start", []), marks.setdefault("done", [])
        clock = time.monotonic
        for _ in range(count):
            starts.append(clock())
            future = node.request(
                SERVER, ECHO_COMMAND, payload, timeout=10, priority=Priority.FAST
            )
            future.get(timeout=15)
            dones.append(clock())
        ours.send("marks")
        if not ours.poll(60):
            raise RuntimeError("the echo node sent no marks")
        server_marks: Marks = ours.recv()
    finally:
        if node is not None:
            node.stop()
        child.join(30)
        if child.is_alive():
            child.kill()
        restore()
        remove_dir(scratch)
    return segments(marks, server_marks, count, wire)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hops",
        description="Median time of each segment of sequential round trips (µs).",
    )
    parser.add_argument("--count", type=int, default=2000, help="round trips (default 2000)")
    parser.add_argument("--wire", choices=("0.1.1", "native"), default="0.1.1")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")
    rows = run(args.count, args.wire)
    print(f"{args.count:,} sequential round trips, {args.wire} wire, medians in µs")
    for label, value in rows:
        shown = "n/a" if value is None else f"{value:8.1f}"
        print(f"  {label:48} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
