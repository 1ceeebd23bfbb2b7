"""Where a stream's CPU goes: ``python -m bench.cpu``.

A diagnostic, not a scenario: it asserts nothing. It runs scenario 1's work
(or 2a's, ``--wire native``; 2b's, ``--wire native --send-many``) between
two processes, ours and the raw baseline alternately, and reads the CPU
time of every thread of both processes over each run (Linux:
``/proc/self/task``). It prints the CPU each thread used per message, each
process's total, the rates, and the ratio the CPU alone predicts on a
machine whose cores are all busy: raw's CPU per message over ours.

- Ours: ``node.send(..., priority=FAST)`` in a loop (or, with
  ``--send-many``, ``node.send_many`` of ``node.messages(...)``, 1,000 at a
  time), from a Node here to a Node in a spawned child whose Concern counts
  what it gets.
- Raw: a DEALER here sends the same frames with ``sock.send(frame,
  int_flags)`` to a ROUTER in the child, read with ``recv(copy=False)`` and
  ``.more`` (scenario 1's raw sink); CURVE and ZAP on both.

Threads are named after their Python thread (pykka names an actor's
thread after its class); zmq's own threads keep their system names
(``ZMQbg/IO/0``; the receiving process has two contexts, the Node's and
the raw sink's, whose I/O threads are summed, the idle one using next to
nothing). A thread that used no CPU in a run is left out. The kernel counts
a thread's CPU in clock ticks (10 ms here): over a run of 100,000 messages
that is 0.1 µs a message per thread.

Each process's rows end with what else could bound it: its threads' context
switches (voluntary: a wait for the GIL, a lock, a poll or an inbox;
involuntary: preempted for another thread) a 1,000 messages, the time its
cyclic garbage collector ran (wall time, during which the collecting thread
holds the GIL; then the CPU it used, which is less where the OS preempted
it meanwhile, and its full collections in the run), and the time its
threads waited for a CPU while they could run (``/proc/.../schedstat``), in
µs a message. Then, for each kind, the receiving process's busiest thread:
what it ran and waited a message against the wall time a message; one that
runs or waits nearly all the time bounds the rate. For ours, the last lines
give the messages the Receiver read a step (a poll and what it drained: up
to 256 zmq messages, each one message on p2p0mq's wire and up to 64 on the
native one) and the Scheduler planned an epoch (from ``node.stats()``): a
Receiver that reads full steps never waits for work.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq
from msgpack import packb

from p2p0mq_actors import Concern, KeyStore, Message, Node, Priority

from .common import (
    KIND_REQUEST,
    LAST,
    MORE,
    SPAWN,
    bind_local,
    close_all,
    curve_dealer,
    curve_pair,
    curve_router,
    remove_dir,
    scratch_dir,
    start_authenticator,
    write_certificates,
)
from .sinks import _drain

SENDER, RECEIVER = b"cpu-sender", b"cpu-receiver"
COMMAND = b"sink"
PAYLOAD_DATA = "x" * 32
WAIT = 120.0  # the longest any step waits for the other process
SEND_MANY_CHUNK = 1000  # messages a send_many with --send-many, as scenario 2b

ThreadCpu = dict[str, float]  # thread name -> CPU seconds (or another count)


def _per_thread(file: str, parse: Callable[[str], float]) -> dict[int, tuple[str, float]]:
    """Each thread of this process: native id -> (name, ``parse`` of its
    ``/proc/self/task/<id>/<file>``); a thread whose file cannot be read
    (it ended meanwhile, or the kernel has no such file) is left out."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/{file}", encoding="utf-8") as f:
                text = f.read()
            with open(f"/proc/self/task/{entry}/comm", encoding="utf-8") as f:
                comm = f.read().strip()
        except OSError:
            continue
        tid = int(entry)
        out[tid] = (names.get(tid, comm), parse(text))
    return out


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Each thread of this process: native id -> (name, CPU seconds so far)."""
    tick = os.sysconf("SC_CLK_TCK")

    def seconds(stat: str) -> float:
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    return _per_thread("stat", seconds)


def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> ThreadCpu:
    """What each thread used between two readings of ``thread_cpu`` (or
    ``thread_switches``, ``thread_waits``), summed by name (pykka's
    ``Receiver-7`` counts as ``Receiver``); threads that used none are left
    out."""
    out: ThreadCpu = {}
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if spent > 0:
            key = _short(name)
            out[key] = out.get(key, 0.0) + spent
    return out


def _short(name: str) -> str:
    base, _, tail = name.rpartition("-")
    return base if base and tail.isdigit() else name


def thread_switches() -> dict[int, tuple[str, float]]:
    """Each thread of this process: native id -> (name, context switches so
    far, voluntary and involuntary together); ``used`` takes two readings."""
    return _per_thread("status", lambda status: float(switches_in(status)))


def thread_waits() -> dict[int, tuple[str, float]]:
    """Each thread of this process: native id -> (name, seconds it has
    waited for a CPU while it could run); empty if the kernel keeps no
    ``schedstat``."""
    return _per_thread("schedstat", waited_in)


def waited_in(schedstat: str) -> float:
    """The seconds a ``/proc/.../schedstat`` text says the thread waited on
    a run queue (its fields: ns on a CPU, ns waiting, time slices)."""
    return int(schedstat.split()[1]) / 1e9


def switches_in(status: str) -> int:
    """The context switches a ``/proc/.../status`` text counts (voluntary
    and involuntary)."""
    total = 0
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            total += int(value)
    return total


OLDEST_GENERATION = 2  # CPython's collector has three generations


class GcClock:
    """The cyclic garbage collector's work in this process since the clock
    was made (``gc.callbacks``; collections never overlap: each holds the
    GIL): ``seconds`` of wall time, ``cpu`` seconds of its thread's CPU
    (less than ``seconds`` where the thread was preempted meanwhile), and
    ``full`` collections (of the oldest generation, which walk every object
    the process tracks). ``close`` removes the hook."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0
        self.full = 0
        self._started = (0.0, 0.0)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
        else:
            self.seconds += time.perf_counter() - self._started[0]
            self.cpu += time.thread_time() - self._started[1]
            self.full += info["generation"] == OLDEST_GENERATION

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class Side:
    """What one process used over one run: CPU, context switches and the
    time spent waiting for a CPU, by thread; garbage collection; and (ours
    only) the messages our actor read or planned a step: the Receiver's a
    poll, the Scheduler's an epoch."""

    def __init__(
        self,
        cpu: ThreadCpu,
        switches: ThreadCpu | None = None,
        gc_work: tuple[float, float, int] = (0.0, 0.0, 0),
        per_step: float | None = None,
        waits: ThreadCpu | None = None,
    ) -> None:
        self.cpu = cpu
        self.switches = switches or {}
        self.gc_seconds, self.gc_cpu, self.gc_full = gc_work
        self.per_step = per_step
        self.waits = waits or {}


class Meter:
    """Readings of this process before a run, and what it used since."""

    def __init__(self, gc_clock: GcClock) -> None:
        self._gc = gc_clock
        self._cpu = thread_cpu()
        self._switches = thread_switches()
        self._waits = thread_waits()
        self._gc_work = (gc_clock.seconds, gc_clock.cpu, gc_clock.full)

    def side(self) -> Side:
        return Side(
            used(self._cpu, thread_cpu()),
            used(self._switches, thread_switches()),
            (
                self._gc.seconds - self._gc_work[0],
                self._gc.cpu - self._gc_work[1],
                self._gc.full - self._gc_work[2],
            ),
            waits=used(self._waits, thread_waits()),
        )


def _per_step(messages: int, steps: int) -> float | None:
    """Messages a step; None if there was no step."""
    return messages / steps if steps > 0 else None


def _received_and_steps(node: Node) -> tuple[int, int]:
    """The messages our Receiver decoded, and the steps it took, so far."""
    stats = node.stats()["receiver"]
    return int(stats["received"]), int(stats["steps"])


def _epochs(node: Node) -> int:
    """The epochs our Scheduler started so far."""
    return int(node.stats()["scheduler"]["epochs"])


class _Counter(Concern):
    """Counts the requests it gets; sets ``done`` at ``goal``."""

    command = COMMAND

    def __init__(self, *, state: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state

    def on_request(self, message: Message) -> None:
        state = self.state
        state["got"] += 1
        if state["got"] == state["goal"]:
            state["last"] = time.monotonic()
            state["done"].set()


def _raw_sink(sock: zmq.Socket[Any], state: dict[str, Any], stop: threading.Event) -> None:
    """Scenario 1's raw sink: counts whole messages read with recv(copy=False)/.more."""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while not stop.is_set():
        if not poller.poll(50):
            continue
        state["got"] += _drain(sock)
        if state["got"] >= state["goal"] and not state["done"].is_set():
            state["last"] = time.monotonic()
            state["done"].set()


def _receiver(conn: Any, store: str, wire: str, raw_pair: tuple[bytes, bytes], certs: str) -> None:
    """Child main: a Node with a counting Concern and a raw CURVE ROUTER
    sink; each ``("arm", kind, goal)`` is answered when ``goal`` messages
    came, with the time of the last and what each thread used meanwhile."""
    states: dict[str, dict[str, Any]] = {
        kind: {"got": 0, "goal": 0, "done": threading.Event()} for kind in ("ours", "raw")
    }
    gc_clock = GcClock()
    ctx: zmq.Context[Any] = zmq.Context()
    auth = start_authenticator(ctx, certs)
    sock = curve_router(ctx, *raw_pair)
    stop = threading.Event()
    sink = threading.Thread(target=_raw_sink, args=(sock, states["raw"], stop), name="raw-sink")
    node = Node(RECEIVER, keys=KeyStore(store))
    try:
        raw_endpoint = bind_local(sock)
        sink.start()
        node.add_concern(_Counter, state=states["ours"])
        conn.send((node.endpoint, raw_endpoint))
        node.add_peer(SENDER, conn.recv(), wire=wire)
        while conn.poll(WAIT):
            command = conn.recv()
            if command[0] != "arm":
                break
            _, kind, goal = command
            state = states[kind]
            state["got"], state["goal"] = 0, goal
            state["done"].clear()
            before = _received_and_steps(node) if kind == "ours" else None
            conn.send("armed")
            meter = Meter(gc_clock)
            if not state["done"].wait(WAIT):
                conn.send(("error", f"{kind}: {state['got']} of {goal} came"))
                break
            side = meter.side()
            if before is not None:
                received, steps = _received_and_steps(node)
                side.per_step = _per_step(received - before[0], steps - before[1])
            conn.send((state["last"], side))
    finally:
        gc_clock.close()
        stop.set()
        if sink.is_alive():
            sink.join(10)
        node.stop()
        close_all(ctx, [sock], auth)
        conn.close()


def _frames(i: int, native: bool) -> list[bytes]:
    payload = packb({"seq": i, "data": PAYLOAD_DATA})
    return [payload] if native else [b"", b"", KIND_REQUEST, COMMAND, packb(i), payload]


class Run:
    """One kind of run: its rates and, a message, each side's CPU and time
    waiting for a CPU by thread (µs), context switches (a 1,000 messages),
    garbage collection (µs) and, ours only, messages a step."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.sending: list[ThreadCpu] = []
        self.receiving: list[ThreadCpu] = []
        self.switches: dict[str, list[float]] = {"sending": [], "receiving": []}
        self.waits: dict[str, list[ThreadCpu]] = {"sending": [], "receiving": []}
        self.gc: dict[str, list[float]] = {"sending": [], "receiving": []}
        self.gc_cpu: dict[str, list[float]] = {"sending": [], "receiving": []}
        self.gc_full: dict[str, list[float]] = {"sending": [], "receiving": []}
        self.per_step: dict[str, list[float]] = {"sending": [], "receiving": []}

    def add(self, count: int, span: float, sending: Side, receiving: Side) -> None:
        """One run: ``count`` messages in ``span`` seconds (the first send to
        the last receive), and what each side used meanwhile."""
        self.rates.append(count / max(span, 1e-9))
        self.sending.append({k: v / count * 1e6 for k, v in sending.cpu.items()})
        self.receiving.append({k: v / count * 1e6 for k, v in receiving.cpu.items()})
        for name, side in (("sending", sending), ("receiving", receiving)):
            self.switches[name].append(sum(side.switches.values()) / count * 1e3)
            self.waits[name].append({k: v / count * 1e6 for k, v in side.waits.items()})
            self.gc[name].append(side.gc_seconds / count * 1e6)
            self.gc_cpu[name].append(side.gc_cpu / count * 1e6)
            self.gc_full[name].append(float(side.gc_full))
            if side.per_step is not None:
                self.per_step[name].append(side.per_step)

    def both(self) -> float:
        """Median over the runs of both processes' CPU a message (µs)."""
        pairs = zip(self.sending, self.receiving, strict=True)
        return statistics.median(sum(s.values()) + sum(r.values()) for s, r in pairs)


def _median_by_thread(runs: list[ThreadCpu]) -> ThreadCpu:
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}


def _total(runs: list[ThreadCpu]) -> float:
    return statistics.median(sum(run.values()) for run in runs)


def run(count: int, wire: str, repeat: int, *, send_many: bool = False) -> dict[str, Run]:
    """``repeat`` runs of ``count`` messages each, ours and raw alternately;
    ``send_many``: ours queues them as scenario 2b does (``node.messages``
    and ``send_many``, ``SEND_MANY_CHUNK`` at a time)."""
    native = wire == "native"
    scratch = scratch_dir()
    store = str(Path(scratch) / "store")
    keys = KeyStore(store)
    for uuid in (SENDER, RECEIVER):
        keys.ensure(uuid)
    raw_server, raw_client = curve_pair(), curve_pair()
    certs = write_certificates(Path(scratch) / "certs", [raw_client[0]])
    ours_conn, theirs = SPAWN.Pipe()
    child = SPAWN.Process(
        target=_receiver, args=(theirs, store, wire, raw_server, certs), daemon=True
    )
    child.start()
    ctx: zmq.Context[Any] = zmq.Context()
    dealer: zmq.Socket[Any] | None = None
    node: Node | None = None
    results = {"ours": Run(), "raw": Run()}
    gc_clock = GcClock()
    try:

        def answer() -> Any:
            if not ours_conn.poll(WAIT):
                raise RuntimeError("the receiving process did not answer")
            got = ours_conn.recv()
            if isinstance(got, tuple) and got and got[0] == "error":
                raise RuntimeError(f"the receiving process failed: {got[1]}")
            return got

        node_endpoint, raw_endpoint = answer()
        node = Node(SENDER, keys=KeyStore(store))
        ours_conn.send(node.endpoint)
        node.add_peer(RECEIVER, node_endpoint, wire=wire)
        dealer = curve_dealer(ctx, raw_endpoint, raw_client, raw_server[0])
        send = dealer.send

        def ours(n: int) -> None:
            node_send, fast = node.send, Priority.FAST
            for i in range(n):
                node_send(RECEIVER, COMMAND, {"seq": i, "data": PAYLOAD_DATA}, priority=fast)

        def ours_many(n: int) -> None:
            messages, fast = node.messages, Priority.FAST
            for start in range(0, n, SEND_MANY_CHUNK):
                payloads = [
                    {"seq": i, "data": PAYLOAD_DATA}
                    for i in range(start, min(start + SEND_MANY_CHUNK, n))
                ]
                node.send_many(messages(RECEIVER, COMMAND, payloads, priority=fast))

        def raw(n: int) -> None:
            for i in range(n):
                *first, payload = _frames(i, native)
                for part in first:
                    send(part, MORE)
                send(payload, LAST)

        senders = {"ours": ours_many if send_many else ours, "raw": raw}
        for kind, sender in senders.items():  # warm both paths: handshakes are not measured
            ours_conn.send(("arm", kind, 10))
            answer()
            sender(10)
            answer()
        for _ in range(repeat):
            for kind, sender in senders.items():
                ours_conn.send(("arm", kind, count))
                answer()
                epochs = _epochs(node) if kind == "ours" else None
                meter = Meter(gc_clock)
                start = time.monotonic()
                sender(count)
                last, receiving = answer()
                sending = meter.side()
                if epochs is not None:
                    sending.per_step = _per_step(count, _epochs(node) - epochs)
                results[kind].add(count, last - start, sending, receiving)
        ours_conn.send(("quit",))
    finally:
        gc_clock.close()
        if dealer is not None:
            close_all(ctx, [dealer])
        else:
            ctx.term()
        if node is not None:
            node.stop()
        child.join(30)
        if child.is_alive():
            child.kill()
        remove_dir(scratch)
    return results


def report(
    results: dict[str, Run], count: int, wire: str, repeat: int, *, send_many: bool = False
) -> str:
    """The table ``main`` prints."""
    ours, raw = results["ours"], results["raw"]
    how = f"ours by send_many of {SEND_MANY_CHUNK:,}" if send_many else "ours by send()"
    lines = [
        f"{count:,} messages a run, {wire} wire, {how}, medians of {repeat} runs each;"
        " CPU in µs a message",
        f"  {'':34} {'ours':>8} {'raw':>8}",
    ]
    for side, label in (("sending", "sending process"), ("receiving", "receiving process")):
        mine: list[ThreadCpu] = getattr(ours, side)
        theirs: list[ThreadCpu] = getattr(raw, side)
        a, b = _median_by_thread(mine), _median_by_thread(theirs)
        lines.append(f"  {label}")
        shown = [n for n in set(a) | set(b) if max(a.get(n, 0.0), b.get(n, 0.0)) >= 0.005]
        for name in sorted(shown, key=lambda n: -max(a.get(n, 0.0), b.get(n, 0.0))):
            lines.append(f"    {name:32} {a.get(name, 0.0):8.2f} {b.get(name, 0.0):8.2f}")
        lines.append(f"    {'(the process)':32} {_total(mine):8.2f} {_total(theirs):8.2f}")
        switches = _median(ours.switches[side]), _median(raw.switches[side])
        lines.append(f"    {'switches a 1,000 messages':32} {switches[0]:8.1f} {switches[1]:8.1f}")
        collected = _median(ours.gc[side]), _median(raw.gc[side])
        lines.append(f"    {'garbage collector':32} {collected[0]:8.2f} {collected[1]:8.2f}")
        collected = _median(ours.gc_cpu[side]), _median(raw.gc_cpu[side])
        lines.append(f"    {'  its CPU':32} {collected[0]:8.2f} {collected[1]:8.2f}")
        full = _median(ours.gc_full[side]), _median(raw.gc_full[side])
        lines.append(f"    {'  its full collections a run':32} {full[0]:8.0f} {full[1]:8.0f}")
        if any(ours.waits[side]) or any(raw.waits[side]):  # none: no schedstat
            waited = _total(ours.waits[side]), _total(raw.waits[side])
            lines.append(f"    {'waiting for a CPU':32} {waited[0]:8.2f} {waited[1]:8.2f}")
    ours_cpu, raw_cpu = ours.both(), raw.both()
    ours_rate, raw_rate = statistics.median(ours.rates), statistics.median(raw.rates)
    lines += [
        f"  {'both processes':34} {ours_cpu:8.2f} {raw_cpu:8.2f}",
        f"  {'rate (msg/s)':34} {ours_rate:8,.0f} {raw_rate:8,.0f}",
        f"  rate ratio (ours / raw): {ours_rate / raw_rate:.2f}",
        f"  CPU ratio (raw's CPU a message / ours): {raw_cpu / ours_cpu:.2f}",
    ]
    for kind, run_ in (("ours", ours), ("raw", raw)):
        lines.extend(_busiest(kind, run_))
    for side, what in (
        ("receiving", "ours: messages the Receiver read a step (of up to 256 zmq messages)"),
        ("sending", "ours: messages the Scheduler planned an epoch"),
    ):
        if ours.per_step[side]:
            lines.append(f"  {what}: {_median(ours.per_step[side]):,.0f}")
    return "\n".join(lines)


def _busiest(kind: str, run_: Run) -> list[str]:
    """The line on ``run_``'s busiest receiving thread: what it ran and
    waited for a CPU a message, against the wall time a message (1 / rate).
    A thread that runs or waits nearly all the time bounds the rate."""
    if not run_.receiving or not any(run_.waits["receiving"]):
        return []
    ran = _median_by_thread(run_.receiving)
    name = max(ran, key=lambda n: ran[n])
    waited = _median_by_thread(run_.waits["receiving"]).get(name, 0.0)
    wall = 1e6 / statistics.median(run_.rates)
    share = (ran[name] + waited) / wall
    return [
        f"  {kind}: {name} ran {ran[name]:.2f} and waited for a CPU {waited:.2f}"
        f" µs a message, of {wall:.2f} µs of wall time ({share:.0%})"
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu",
        description="CPU a message of each thread, ours against raw pyzmq (Linux).",
    )
    parser.add_argument("--count", type=int, default=100_000, help="messages a run (100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (3)")
    parser.add_argument("--wire", choices=("0.1.1", "native"), default="0.1.1")
    parser.add_argument(
        "--send-many",
        action="store_true",
        help=f"ours queues by send_many of node.messages, {SEND_MANY_CHUNK:,} at a time (2b)",
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be >= 1")
    if not os.path.isdir("/proc/self/task"):
        parser.error("needs Linux's /proc/self/task")
    results = run(args.count, args.wire, args.repeat, send_many=args.send_many)
    print(report(results, args.count, args.wire, args.repeat, send_many=args.send_many))
    return 0


if __name__ == "__main__":
    sys.exit(main())
