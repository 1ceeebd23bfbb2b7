"""Scenario 6: fairness under a flood.

One node (this process) has two peers, X and Y, whose sinks are raw CURVE
ROUTERs in the sink process. X gets 100,000 medium messages (one
``send_many``); once X's flood is under way (its first messages were
reported sent) one medium message for Y is queued. Measured, from that
enqueue:

- rounds, as the X messages put on X's socket before Y's message is put on
  Y's (the bench wraps ``CurveDealerSocket.send_frames`` and ``send_each``
  in its own process to count them). X sends one medium message per round, so this
  counts the rounds X took part in before Y's message went out. The
  contract allows two (X finishes the round in flight and sends its share
  of the next one, the round Y goes out in): two or fewer means "within
  one round";
- milliseconds, to the ``on_sent`` report of Y's message;
- in the note: the X messages reported sent between the enqueue and Y's
  report (reports come one per plan, and a plan sent before the enqueue
  may still be reported after it, so this is a loose upper bound), and the
  scheduler epochs started from the one in flight at the enqueue to Y's
  report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from p2p0mq_actors import Concern, KeyStore, Message, Node, P2P0MQError, Priority, SendError
from p2p0mq_actors.transport.sockets import CurveDealerSocket

from .common import DATA, BenchFailure, BenchTimeout, Params, Result, curve_pair, median
from .flow import SOURCE, Rig

FLOOD = b"flood"


class Watch:
    """What the probe Concern saw; read by the scenario thread."""

    def __init__(self, victim: bytes) -> None:
        self.victim = victim
        self.event = threading.Event()
        self.x_sent = 0
        self.x_at_y = 0
        self.t_y = 0.0
        self.epoch_at_y = -1
        self.watching = False  # set just before Y's message is queued
        self.first_report = -1  # size of X's first report after that
        self._lock = threading.Lock()
        self.x_on_socket = 0  # X messages put on X's socket since watching
        self.y_on_socket = False

    def socket_sent(self, uuid: bytes) -> None:
        """A message was put on ``uuid``'s socket (any connection thread)."""
        with self._lock:
            if not self.watching or self.y_on_socket:
                return
            if uuid == self.victim:
                self.y_on_socket = True
            else:
                self.x_on_socket += 1

    def reset(self) -> None:
        self.event.clear()
        self.x_sent = self.x_at_y = 0
        self.t_y = 0.0
        self.epoch_at_y = -1
        with self._lock:
            self.watching = False
            self.x_on_socket = 0
            self.y_on_socket = False
        self.first_report = -1


class Probe(Concern):
    """Owns the flood's command: counts X's sent messages, notes when Y's goes."""

    command = FLOOD

    def __init__(self, *, watch: Watch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watch = watch
        self._epochs: Any = None

    def on_start(self) -> None:
        self._epochs = self.scheduler.proxy()

    def on_sent(self, messages: Sequence[Message]) -> None:
        watch = self.watch
        if messages[0].next_hop != watch.victim:
            watch.x_sent += len(messages)
            if watch.watching and watch.first_report < 0:
                watch.first_report = len(messages)
            return
        watch.t_y = time.monotonic()
        watch.x_at_y = watch.x_sent
        try:
            watch.epoch_at_y = self._epochs.epochs.get(timeout=5)
        finally:
            watch.event.set()


def _count_socket_sends(watch: Watch) -> Callable[[], None]:
    """Tell ``watch`` of every message a connection of this process puts on
    its socket; returns what undoes it."""
    original, original_each = CurveDealerSocket.send_frames, CurveDealerSocket.send_each

    def send_frames(sock: CurveDealerSocket, frames: Sequence[bytes]) -> None:
        original(sock, frames)  # what raises was not sent
        watch.socket_sent(sock.peer.uuid)

    def send_each(
        sock: CurveDealerSocket, messages: Sequence[Sequence[bytes]]
    ) -> tuple[int, SendError | None]:
        sent, error = original_each(sock, messages)  # (a plan's fast messages)
        for _ in range(sent):
            watch.socket_sent(sock.peer.uuid)
        return sent, error

    CurveDealerSocket.send_frames = send_frames  # type: ignore[method-assign, assignment]
    CurveDealerSocket.send_each = send_each  # type: ignore[method-assign, assignment]

    def undo() -> None:
        CurveDealerSocket.send_frames = original  # type: ignore[method-assign]
        CurveDealerSocket.send_each = original_each  # type: ignore[method-assign]

    return undo


def _wait_until(params: Params, check: Any, what: str, cap: float = 60.0) -> None:
    end = time.monotonic() + params.left(cap)
    while not check():
        if time.monotonic() > end:
            raise BenchTimeout(f"waited too long for {what}")
        time.sleep(0.0005)


def scenario_6(params: Params) -> dict[str, Result]:
    flood = params.size(100_000, 10_000)
    head = min(2_000, flood // 10)  # X's messages reported sent before Y's is queued
    rig = Rig(params, sinks=2, node_sinks=False)
    x, y = rig.sink_uuids[:2]
    watch = Watch(victim=y)
    node: Node | None = None
    runs: list[tuple[float, int, int, int, int]] = []
    undo = _count_socket_sends(watch)
    try:
        pairs = [curve_pair() for _ in range(2)]
        endpoints = rig.server.start_raw("flood", 2, rig.certificates, pairs, params.left(30))
        node = Node(SOURCE, keys=KeyStore(rig.store_path))
        node.add_concern(Probe, watch=watch)
        for peer, endpoint, (key, _) in zip((x, y), endpoints, pairs, strict=True):
            node.add_peer(peer, endpoint, public_key=key, wire="0.1.1")
        rig.server.arm("flood", params.left(10), goal=1)
        for peer in (x, y):
            node.send(peer, FLOOD, {"warm": 1}, priority=Priority.FAST)
        rig.server.wait("flood", params.left(30))
        # Both warm messages reported sent before the first reset.
        _wait_until(params, lambda: watch.event.is_set() and watch.x_sent >= 1, "warm reports")
        assert node._sender is not None
        scheduler = node._sender.scheduler.proxy()
        for r in range(params.repeat):
            watch.reset()
            batch = [
                node.message(x, FLOOD, {"seq": i, "data": DATA}, priority=Priority.MEDIUM)
                for i in range(flood)
            ]
            node.send_many(batch)
            _wait_until(params, lambda: watch.x_sent >= head, "the flood to start")
            x0 = watch.x_sent
            watch.watching = True
            t0 = time.monotonic()
            node.send(y, FLOOD, {"probe": r}, priority=Priority.MEDIUM)
            # The Scheduler handles this ask after the enqueue (one inbox, in
            # order): the epoch in flight when Y's message came in.
            e0 = scheduler.epochs.get(timeout=5)
            if not watch.event.wait(params.left(30)):
                raise BenchTimeout(f"Y's message was not reported sent ({watch.x_sent} X sent)")
            runs.append(
                (
                    (watch.t_y - t0) * 1e3,
                    watch.epoch_at_y - e0,
                    watch.x_at_y - x0,
                    watch.x_on_socket,
                    flood - x0,
                )
            )
            _wait_until(params, lambda: watch.x_sent >= flood, "the flood to drain", 120.0)
    except (BenchTimeout, BenchFailure, P2P0MQError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        return {
            "6a_fairness_rounds": Result(None, None, None, "X msgs", "<= 2 (1 round)", why),
            "6b_fairness_latency": Result(None, None, None, "ms", "< 5 ms", why),
        }
    finally:
        undo()
        if node is not None:
            node.stop()
        rig.close()
    latency = median([r[0] for r in runs])
    rounds = median([float(r[3]) for r in runs])
    detail = "; ".join(
        f"{ms:.2f} ms, {xs} X msgs ({upper} reported), {ep} epochs, X backlog {left:,}"
        for ms, ep, upper, xs, left in runs
    )
    what = f"X flooded with {flood:,} medium msgs, one medium msg for Y queued after {head:,}"
    return {
        "6a_fairness_rounds": Result(
            rounds, None, None, "X msgs", "<= 2 (1 round)",
            f"{what}; X messages put on X's socket between Y's enqueue and Y's message "
            f"put on Y's (one per round; <= 2 is within one round), and the X messages "
            f"reported sent between the enqueue and Y's report; per run: [{detail}]",
            rounds <= 2,
        ),
        "6b_fairness_latency": Result(
            latency, None, None, "ms", "< 5 ms",
            f"{what}; enqueue to Y's on_sent report", latency < 5.0,
        ),
    }  # fmt: skip
