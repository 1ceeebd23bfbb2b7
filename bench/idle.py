"""Scenario 8: an idle node's CPU.

A node with 10 connected peers (raw CURVE ROUTER sinks in the sink process)
sends nothing for 10 s (3 s in all with --quick); its own process measures
the CPU it used (``getrusage``: user + system, every thread) and its context
switches. The baseline is a process holding 10 connected raw CURVE DEALERs,
measured at the same time. There is no heart-beat yet: an idle node's cost
is its Receiver's poll loop (one wake-up per ``poll_interval``, 50 ms by
default) and whatever timers run.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import zmq

from p2p0mq_actors import KeyStore, Node, Priority

from .common import (
    LAST,
    MORE,
    BenchFailure,
    BenchTimeout,
    Child,
    Params,
    Result,
    curve_dealer,
    curve_pair,
    median,
    serve,
)
from .flow import SOURCE, Rig, six_frames

PEERS = 10


def _usage() -> tuple[float, int]:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime, use.ru_nvcsw + use.ru_nivcsw


def idle_client(conn: Any, deadline: float, kind: str, keys: dict[str, Any]) -> None:
    """Child main: 10 peers (ours) or 10 DEALERs (raw), connected, then idle."""
    node: Node | None = None
    ctx: zmq.Context[Any] | None = None
    socks: list[zmq.Socket[Any]] = []

    def connect(endpoints: list[str]) -> tuple[str]:
        nonlocal node, ctx
        if kind == "ours":
            node = Node(SOURCE, keys=KeyStore(keys["store"]))
            for i, (endpoint, key) in enumerate(endpoints):
                uuid = f"sink-{i}".encode()
                node.add_peer(uuid, endpoint, public_key=key, wire="0.1.1")
                node.send(uuid, b"idle", {"hello": i}, priority=Priority.FAST)
        else:
            ctx = zmq.Context()
            frames = six_frames(0)
            for endpoint, key in endpoints:
                sock = curve_dealer(ctx, endpoint, keys["client"], key)
                socks.append(sock)
                for part in frames[:-1]:
                    sock.send(part, MORE)
                sock.send(frames[-1], LAST)
        return ("connected",)

    def measure(window: float, repeat: int) -> tuple[str, list[tuple[float, float]]]:
        out = []
        for _ in range(repeat):
            cpu0, switches0 = _usage()
            t0 = time.monotonic()
            time.sleep(window)
            cpu1, switches1 = _usage()
            took = time.monotonic() - t0
            out.append((100.0 * (cpu1 - cpu0) / took, (switches1 - switches0) / took))
        return ("measured", out)

    try:
        serve(conn, deadline, {"connect": connect, "measure": measure})
    finally:
        if node is not None:
            node.stop()
        for sock in socks:
            sock.close(linger=0)
        if ctx is not None:
            ctx.term()


def scenario_8(params: Params) -> dict[str, Result]:
    window = 10.0 if not params.quick else 3.0 / params.repeat
    rig = Rig(params, sinks=0, node_sinks=False)
    keys = {"store": rig.store_path, "client": rig.client_pair}
    pairs = [curve_pair() for _ in range(2 * PEERS)]  # a peer's key is its own
    target = "< 2 % of one core"
    clients: list[Child] = []
    try:
        bound = rig.server.start_raw("idle", 2 * PEERS, rig.certificates, pairs, params.left(30))
        endpoints = [(ep, public) for ep, (public, _) in zip(bound, pairs, strict=True)]
        clients = [
            Child(idle_client, params.deadline, "ours", keys),
            Child(idle_client, params.deadline, "raw", keys),
        ]
        rig.server.arm("idle", params.left(10), goal=1)
        clients[0].send("connect", endpoints[:PEERS])
        clients[1].send("connect", endpoints[PEERS:])
        for client in clients:
            client.recv(params.left(60))
        rig.server.wait("idle", params.left(60))
        time.sleep(0.2)  # let the first sends' reports settle
        for client in clients:
            client.send("measure", window, params.repeat)
        span = window * params.repeat + 30
        (_, ours), (_, raw) = (client.recv(params.left(span)) for client in clients)
    except (BenchTimeout, BenchFailure) as exc:
        return {"8_idle_cpu": Result(None, None, None, "% core", target, f"{exc}")}
    finally:
        for client in clients:
            client.close()
        rig.close()
    cpu, raw_cpu = median([r[0] for r in ours]), median([r[0] for r in raw])
    wakes, raw_wakes = median([r[1] for r in ours]), median([r[1] for r in raw])
    return {
        "8_idle_cpu": Result(
            cpu,
            raw_cpu,
            None,
            "% core",
            target,
            f"{PEERS} connected peers, no traffic, {window:g} s windows, node in its own "
            f"process; {wakes:.0f} context switches/s (raw {raw_wakes:.0f}/s); no heart-beats "
            "exist yet, so this is the Receiver's poll loop and timers only; baseline: 10 "
            "connected raw DEALERs, for scale (no ratio) "
            f"[runs: ours {'/'.join(f'{r[0]:.3f}' for r in ours)} %]",
            cpu < 2.0,
        )
    }
