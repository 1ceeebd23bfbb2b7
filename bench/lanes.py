"""Scenarios 3 and 4: draining a backlog on the medium and the slow lane.

Every message is built first (untimed) and queued with one ``send_many``;
the figure is messages per second from that call to the receiver's last
receive. The raw baseline sends the same prebuilt frames, round-robin over
one DEALER per sink, to raw CURVE ROUTERs in the other process.

3a. medium lane, one peer, 20,000 messages (p2p0mq 0.1.1 wire);
3b. medium lane, ten peers with 2,000 each (p2p0mq 0.1.1 wire);
3c. the same on the native envelope.
    3b and 3c also run our node against the raw sinks (a second row each):
    the receiving process of the Node-sink rows hosts ten Nodes, whose ten
    Receiver threads share one GIL, and that process bounds those rows.
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
    raw_sinks_too: bool = False,
) -> list[Result]:
    """One row (Node sinks); with ``raw_sinks_too`` a second one: the same
    node sending to raw CURVE ROUTER sinks, its sending side alone."""
    count = sinks * per_sink
    target = f">= {floor:,.0f} msg/s"

    def runs(flow: Flow) -> tuple[list[float], list[list[float]]]:
        ours = [lambda: flow.ours(count, "backlog")]
        if raw_sinks_too:
            ours.append(lambda: flow.ours(count, "backlog", to_raw=True))
        return interleave(lambda: flow.raw(count, backlog=True), ours, rig.params.repeat)

    try:
        raws, mine, sender = run_flow(
            rig, name, sinks=sinks, wire=wire, lane=lane, runs=runs, ours_to_raw=raw_sinks_too
        )
    except (BenchTimeout, BenchFailure) as exc:
        return [failed("msg/s", target, f"{type(exc).__name__}: {exc}")] * (1 + raw_sinks_too)
    rows = [throughput_result(mine[0], raws, "msg/s", target, note, sender.get("backlog", []))]
    if raw_sinks_too:
        rows.append(
            throughput_result(
                mine[1],
                raws,
                "msg/s",
                target,
                f"{note}; to raw CURVE ROUTER sinks (counted only, as the baseline's)",
                sender.get("backlog-raw", []),
            )
        )
    for row in rows:
        row.met = row.ours is not None and row.ours >= floor
    return rows


def _one_peer(rig: Rig, name: str, count: int, lane: Priority, floor: float) -> Result:
    """A backlog of ``count`` messages on ``lane`` for one peer, 0.1.1 wire."""
    what = lane.name.lower()
    (row,) = _backlog(
        rig, name, sinks=1, per_sink=count, wire="0.1.1", lane=lane, floor=floor,
        note=f"backlog of {count:,} {what} msgs for one peer, 0.1.1 wire",
    )  # fmt: skip
    return row


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
        a = _one_peer(rig, "s3a", one, Priority.MEDIUM, 40_000)

        def ten_peers(name: str, wire: str, floor: float, what: str) -> list[Result]:
            note = f"10 peers x {each:,} medium msgs, {what}"
            return _backlog(
                rig, name, sinks=10, per_sink=each, wire=wire, lane=Priority.MEDIUM,
                floor=floor, note=note, raw_sinks_too=True,
            )  # fmt: skip

        b, b_raw = ten_peers("s3b", "0.1.1", 50_000, "0.1.1 wire")
        c, c_raw = ten_peers("s3c", "native", 100_000, "native wire; raw: 1 frame")
        return {
            "3a_medium_one_peer": a,
            "3b_medium_ten_peers": b,
            "3b_medium_ten_peers_raw_sinks": b_raw,
            "3c_medium_ten_peers_native": c,
            "3c_medium_ten_peers_native_raw_sinks": c_raw,
        }  # fmt: skip

    return _with_rig(params, 10, body)


def scenario_4(params: Params) -> dict[str, Result]:
    count = params.size(20_000, 2_000)

    def body(rig: Rig) -> dict[str, Result]:
        row = _one_peer(rig, "s4", count, Priority.SLOW, 40_000)
        return {"4_slow_backlog": row}  # fmt: skip

    return _with_rig(params, 1, body)
