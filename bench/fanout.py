"""Scenario 7: fan-out to 1,000 peers (100 with --quick).

The sinks are raw CURVE ROUTERs in the sink process, one endpoint each (the
node's DEALERs all carry the node's uuid as identity). The sending side runs
in a fresh child process per run, so that its RSS is its own:

- ours: a Node (``max_sockets`` = 3 per peer: DEALER + monitor pair) calls
  ``add_peer`` for every sink, then ``send``s one message to each;
- raw: one CURVE DEALER per sink in one context, one message each.

Figures: (7a) seconds from the first ``add_peer`` (raw: the first socket) to
the moment every sink has its first message; (7b) milliseconds to deliver one
more message to each; (7c) (RSS after - RSS before) / peers, from VmRSS.
"""

from __future__ import annotations

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
    raise_nofile,
    ratio,
    rss_kib,
    serve,
)
from .flow import SOURCE, Rig, six_frames

FAN = b"fan"


def fanout_client(conn: Any, deadline: float, kind: str, peers: int, keys: dict[str, Any]) -> None:
    """Child main: the sending side of one fan-out run (ours or raw)."""
    limit = raise_nofile()
    node: Node | None = None
    ctx: zmq.Context[Any] | None = None
    socks: list[zmq.Socket[Any]] = []
    uuids = [f"sink-{i}".encode() for i in range(peers)]

    def prepare() -> tuple[str, int, int]:
        nonlocal node, ctx
        if kind == "ours":
            node = Node(SOURCE, keys=KeyStore(keys["store"]), max_sockets=3 * peers + 64)
        else:
            ctx = zmq.Context()
            ctx.MAX_SOCKETS = peers + 64
        return ("ready", rss_kib(), limit)

    def send_each(i: int) -> None:
        if node is not None:
            for uuid in uuids:
                node.send(uuid, FAN, {"i": i}, priority=Priority.FAST)
        else:
            frames = six_frames(i)
            for sock in socks:
                for part in frames[:-1]:
                    sock.send(part, MORE)
                sock.send(frames[-1], LAST)

    def connect(endpoints: list[str]) -> tuple[str, float, float, float]:
        t0 = time.monotonic()
        if node is not None:
            for uuid, endpoint, key in zip(uuids, endpoints, keys["servers"], strict=True):
                node.add_peer(uuid, endpoint, public_key=key, wire="0.1.1")
        else:
            assert ctx is not None
            for endpoint, key in zip(endpoints, keys["servers"], strict=True):
                socks.append(curve_dealer(ctx, endpoint, keys["client"], key))
        t_added = time.monotonic()
        send_each(0)
        return ("sent", t0, t_added, time.monotonic())

    def again() -> tuple[str, float, float]:
        t0 = time.monotonic()
        send_each(1)
        return ("sent", t0, time.monotonic())

    def states() -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}
        if node is not None:
            for peer in node.stats()["peers"].values():
                counts[peer["state"]] = counts.get(peer["state"], 0) + 1
        return ("states", counts)

    try:
        serve(
            conn,
            deadline,
            {
                "prepare": prepare,
                "connect": connect,
                "again": again,
                "rss": lambda: ("rss", rss_kib()),
                "states": states,
            },
        )
    finally:
        if node is not None:
            node.stop()
        for sock in socks:
            sock.close(linger=0)
        if ctx is not None:
            ctx.term()


def _one_run(
    params: Params, rig: Rig, kind: str, peers: int, endpoints: list[str], keys: dict[str, Any]
) -> tuple[float, float, float, str]:
    """(connect s, deliver ms, KiB per peer, note) of one run in a fresh process."""
    server, left = rig.server, params.left
    with Child(fanout_client, params.deadline, kind, peers, keys) as client:
        _, rss0, limit = client.ask(left(60), "prepare")
        server.arm("fan", left(10), goal=1)
        _, t0, t_added, t_sent = client.ask(left(120), "connect", endpoints)
        first = server.wait("fan", left(120))
        server.arm("fan", left(10), goal=1)
        _, t1, _ = client.ask(left(60), "again")
        second = server.wait("fan", left(60))
        _, rss1 = client.ask(left(30), "rss")
        _, counts = client.ask(left(60), "states")
    note = (
        f"{kind}: add {t_added - t0:.2f} s, first sends queued +{t_sent - t_added:.2f} s"
        + (f", peer states {counts}" if counts else "")
        + f", RLIMIT_NOFILE {limit}"
    )
    return (
        first["t_last"] - t0,
        (second["t_last"] - t1) * 1e3,
        (rss1 - rss0) / peers,
        note,
    )


def scenario_7(params: Params) -> dict[str, Result]:
    peers = params.size(1_000, 100)
    raise_nofile()
    rig = Rig(params, sinks=0, node_sinks=False)
    pairs = [curve_pair() for _ in range(peers)]  # a peer's key is its own
    keys = {
        "store": rig.store_path,
        "servers": [public for public, _ in pairs],
        "client": rig.client_pair,
    }
    targets = (("s", "< 10 s"), ("ms", "(reported)"), ("KiB", "<= 200 KiB/peer"))
    runs: dict[str, list[tuple[float, float, float, str]]] = {"raw": [], "ours": []}
    try:
        endpoints = rig.server.start_raw("fan", peers, rig.certificates, pairs, params.left(120))
        order = ["raw"] + ["ours", "raw"] * params.repeat
        for kind in order:
            runs[kind].append(_one_run(params, rig, kind, peers, endpoints, keys))
    except (BenchTimeout, BenchFailure) as exc:
        why = f"{type(exc).__name__} after {len(runs['ours'])} runs of ours: {exc}"
        keys_out = ("7a_fanout_connect", "7b_fanout_deliver", "7c_fanout_rss_per_peer")
        return {
            key: Result(None, None, None, unit, target, why)
            for key, (unit, target) in zip(keys_out, targets, strict=True)
        }
    finally:
        rig.close()
    ours, raw = runs["ours"], runs["raw"]

    connect, raw_connect = median([r[0] for r in ours]), median([r[0] for r in raw])
    deliver, raw_deliver = median([r[1] for r in ours]), median([r[1] for r in raw])
    rss, raw_rss = median([r[2] for r in ours]), median([r[2] for r in raw])
    what = f"{peers:,} peers, raw CURVE ROUTER sinks in another process"
    detail = f"last runs: {ours[-1][3]}; {raw[-1][3]}"
    kind_note = "(one 0.1.1 request each; ratio: lower is better)"
    return {
        "7a_fanout_connect": Result(
            connect, raw_connect, ratio(connect, raw_connect), "s", "< 10 s",
            f"{what}; first add_peer to every sink's first message {kind_note} [{detail}]",
            connect < 10.0,
        ),
        "7b_fanout_deliver": Result(
            deliver, raw_deliver, ratio(deliver, raw_deliver), "ms", "(reported)",
            f"{what}; one more message to each, until every sink has it",
        ),
        "7c_fanout_rss_per_peer": Result(
            rss, raw_rss, ratio(rss, raw_rss), "KiB", "<= 200 KiB/peer",
            f"{what}; (VmRSS after - before) / peers in the sending process, "
            "ours from after Node start",
            rss <= 200.0,
        ),
    }  # fmt: skip
