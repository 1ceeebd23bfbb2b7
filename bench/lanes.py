"""Scenarios 3 and 4: draining a backlog on the medium and the slow lane.

Every message is built first (untimed) and queued with one ``send_many``;
the figure is messages per second from that call to the receiver's last
receive. The raw baseline sends the same prebuilt frames, round-robin over
one DEALER per sink, to raw CURVE ROUTERs in the other process.

3a. medium lane, one peer, 20,000 messages (p2p0mq 0.1.1 wire);
3b. medium lane, ten peers with 2,000 each (p2p0mq 0.1.1 wire);
3c. the same on the native envelope.
4.  slow lane, one peer, 20,000 messages (p2p0mq 0.1.1 wire).
"""

from __future__ import annotations

from collections.abc import Callable

from p2p0mq_actors import Priority

from .common import (
    BenchFailure,
    BenchTimeout,
    Params,
    Result,
    failed,
    interleave,
    throughput_result,
)
from .flow import Flow, Rig, run_flow


def _backlog(
    rig: Rig,
    name: str,
    *,
    sinks: int,
    per_sink: int,
    wire: str,
    lane: Priority,
    floor: float,
    note: str,
) -> Result:
    count = sinks * per_sink
    target = f">= {floor:,.0f} msg/s"

    def runs(flow: Flow) -> tuple[list[float], list[list[float]]]:
        return interleave(
            lambda: flow.raw(count, backlog=True),
            [lambda: flow.ours(count, "backlog")],
            rig.params.repeat,
        )

    try:
        raws, (ours,), sender = run_flow(rig, name, sinks=sinks, wire=wire, lane=lane, runs=runs)
    except (BenchTimeout, BenchFailure) as exc:
        return failed("msg/s", target, f"{type(exc).__name__}: {exc}")
    result = throughput_result(ours, raws, "msg/s", target, note, sender.get("backlog", []))
    result.met = result.ours is not None and result.ours >= floor
    return result


def _with_rig(
    params: Params, sinks: int, body: Callable[[Rig], dict[str, Result]]
) -> dict[str, Result]:
    rig = Rig(params, sinks=sinks)
    try:
        return body(rig)
    finally:
        rig.close()


def scenario_3(params: Params) -> dict[str, Result]:
    one = params.size(20_000, 2_000)
    each = params.size(2_000, 200)

    def body(rig: Rig) -> dict[str, Result]:
        return {
            "3a_medium_one_peer": _backlog(
                rig, "s3a", sinks=1, per_sink=one, wire="0.1.1", lane=Priority.MEDIUM,
                floor=40_000, note=f"backlog of {one:,} medium msgs for one peer, 0.1.1 wire",
            ),
            "3b_medium_ten_peers": _backlog(
                rig, "s3b", sinks=10, per_sink=each, wire="0.1.1", lane=Priority.MEDIUM,
                floor=50_000, note=f"10 peers x {each:,} medium msgs, 0.1.1 wire",
            ),
            "3c_medium_ten_peers_native": _backlog(
                rig, "s3c", sinks=10, per_sink=each, wire="native", lane=Priority.MEDIUM,
                floor=100_000, note=f"10 peers x {each:,} medium msgs, native wire; raw: 1 frame",
            ),
        }  # fmt: skip

    return _with_rig(params, 10, body)


def scenario_4(params: Params) -> dict[str, Result]:
    count = params.size(20_000, 2_000)

    def body(rig: Rig) -> dict[str, Result]:
        return {
            "4_slow_backlog": _backlog(
                rig, "s4", sinks=1, per_sink=count, wire="0.1.1", lane=Priority.SLOW,
                floor=40_000, note=f"backlog of {count:,} slow msgs for one peer, 0.1.1 wire",
            )
        }  # fmt: skip

    return _with_rig(params, 1, body)
