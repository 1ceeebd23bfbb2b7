"""The runner: one spawned process per scenario, under a hard deadline.

Each scenario runs in a process of its own (its own process group, so that
the runner can end it and every child it started, by that group's id, when
the deadline passes), gets a scratch folder, and sends back its rows. A
scenario that overruns, crashes or raises is reported as such; the others
still run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .common import (
    PIN_ENV,
    SPAWN,
    SWITCH_INTERVAL_ENV,
    BenchFailure,
    BenchTimeout,
    Params,
    Result,
    apply_process_settings,
    remove_dir,
    scratch_dir,
)


@dataclass(frozen=True)
class Spec:
    number: str
    alias: str
    module: str
    function: str
    keys: tuple[str, ...]
    units: tuple[tuple[str, str], ...]  # (unit, target) per key, for rows that failed


SPECS = (
    Spec("1", "fast", ".throughput", "scenario_1",
         ("1_fast_6frame_send", "1_ceiling_codec", "1_receiving_side_alone",
          "1_vs_raw_recv_multipart"),
         (("msg/s", ">= 0.8x raw"), ("msg/s", "(bound)"), ("msg/s", "(bound)"),
          ("msg/s", "(reported)"))),
    Spec("2", "native", ".throughput", "scenario_2",
         ("2a_native_send", "2b_native_send_many", "2b_native_send_many_each",
          "2c_native_vs_6frame", "2_ceiling_codec", "2_receiving_side_alone",
          "2b_vs_raw_batched"),
         (("msg/s", ">= 0.5x raw"), ("msg/s", ">= 0.8x raw"), ("msg/s", "(reported)"),
          ("x", ">= 2x scenario 1"), ("msg/s", "(bound)"), ("msg/s", "(bound)"),
          ("msg/s", "(reported)"))),
    Spec("3", "medium", ".lanes", "scenario_3",
         ("3a_medium_one_peer", "3b_medium_ten_peers", "3b_medium_ten_peers_raw_sinks",
          "3c_medium_ten_peers_native", "3c_medium_ten_peers_native_raw_sinks"),
         (("msg/s", ">= 40,000 msg/s"), ("msg/s", ">= 50,000 msg/s"),
          ("msg/s", ">= 50,000 msg/s"), ("msg/s", ">= 100,000 msg/s"),
          ("msg/s", ">= 100,000 msg/s"))),
    Spec("4", "slow", ".lanes", "scenario_4",
         ("4_slow_backlog",), (("msg/s", ">= 40,000 msg/s"),)),
    Spec("5", "reqrep", ".reqrep", "scenario_5",
         ("5a_rtt_p50", "5a_rtt_p99", "5a_rtt_p50_told", "5a_ceiling_codec",
          "5b_pipelined_100"),
         (("us", "<= 2x raw"), ("us", "(reported)"), ("us", "(reported)"), ("us", "(bound)"),
          ("req/s", ">= 20,000 req/s"))),
    Spec("6", "fairness", ".fairness", "scenario_6",
         ("6a_fairness_rounds", "6b_fairness_latency"),
         (("X msgs", "<= 2 (1 round)"), ("ms", "< 5 ms"))),
    Spec("7", "fanout", ".fanout", "scenario_7",
         ("7a_fanout_connect", "7b_fanout_deliver", "7c_fanout_rss_per_peer"),
         (("s", "< 10 s"), ("ms", "(reported)"), ("KiB", "<= 200 KiB/peer"))),
    Spec("8", "idle", ".idle", "scenario_8",
         ("8_idle_cpu",), (("% core", "< 2 % of one core"),)),
)  # fmt: skip


def select(only: str | None) -> list[Spec]:
    """The scenarios ``--only`` names (numbers or aliases, comma-separated);
    every one when ``only`` is None.

    Raises:
        ValueError: a name no scenario has, or none at all.
    """
    if only is None:
        return list(SPECS)
    wanted = {name.strip().lower() for name in only.split(",") if name.strip()}
    names = ", ".join(f"{s.number}/{s.alias}" for s in SPECS)
    if not wanted:
        raise ValueError(f"--only {only!r} names no scenario; choose from {names}")
    chosen = [s for s in SPECS if s.number in wanted or s.alias in wanted]
    unknown = wanted - {s.number for s in chosen} - {s.alias for s in chosen}
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {names}")
    return chosen


def _scenario_main(spec: Spec, params: Params, conn: Any) -> None:
    """A scenario process: its own process group, its rows sent back."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    apply_process_settings()
    try:
        module = importlib.import_module(spec.module, __package__)
        rows = getattr(module, spec.function)(params)
        conn.send(("ok", rows))
    except (BenchTimeout, BenchFailure) as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    except BaseException as exc:
        where = traceback.extract_tb(exc.__traceback__)[-3:]
        trail = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(where))
        conn.send(("failed", f"{type(exc).__name__}: {exc} (at {trail})"))
    finally:
        conn.close()


def run_scenario(
    spec: Spec, *, quick: bool, repeat: int, budget: float, prior: dict[str, Any]
) -> tuple[dict[str, Result], float]:
    """Run one scenario in its own process; its rows and its wall time."""
    started = time.monotonic()
    scratch = scratch_dir()
    params = Params(quick, repeat, started + budget, scratch, prior)
    ours, theirs = SPAWN.Pipe(duplex=False)
    proc = SPAWN.Process(target=_scenario_main, args=(spec, params, theirs), daemon=False)
    proc.start()
    theirs.close()
    answer: tuple[str, Any] = ("failed", f"timeout: no result within {budget:.0f} s")
    grace = 20.0  # for the scenario's own clean-up after its deadline
    answered = False
    try:
        if ours.poll(max(0.0, params.deadline + grace - time.monotonic())):
            answer = ours.recv()
            answered = True
    except EOFError:
        proc.join(5.0)
        answer = ("failed", f"the scenario process died (exit code {proc.exitcode})")
    finally:
        if answered:
            proc.join(15.0)  # it closes its children and exits
        if proc.is_alive() or not answered:
            _end_group(proc.pid)  # the scenario process and what it started
            proc.join(5.0)
        ours.close()
        remove_dir(scratch)
    status, payload = answer
    if status == "ok":
        rows: dict[str, Result] = payload
    else:
        why = str(payload).strip()
        rows = {
            key: Result(None, None, None, unit, target, why)
            for key, (unit, target) in zip(spec.keys, spec.units, strict=True)
        }
    for key, (unit, target) in zip(spec.keys, spec.units, strict=True):
        rows.setdefault(key, Result(None, None, None, unit, target, "no row produced"))
    return rows, time.monotonic() - started


def _end_group(pid: int | None) -> None:
    """Kill a scenario process and every process it started (its group)."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- output ---------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(rows: dict[str, Result]) -> str:
    head = ("scenario", "ours", "baseline", "ratio", "unit", "target", "met")
    lines = [head]
    for key, r in rows.items():
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        if r.ours is None:
            met = "not run" if r.skipped else "FAIL"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append((key, _num(r.ours), _num(r.baseline), ratio, r.unit, r.target, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i in (0, 4, 5) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def notes(rows: dict[str, Result]) -> str:
    return "\n".join(f"  {key}: {r.note}" for key, r in rows.items() if r.note)


def header(
    quick: bool,
    repeat: int,
    switch_interval: float | None = None,
    pin: tuple[int, int] | None = None,
) -> str:
    switch = (
        f"GIL switch interval {switch_interval * 1000:g} ms (--switch-interval)"
        if switch_interval
        else "Python's GIL switch interval (5 ms)"
    )
    pinned = (
        f"; each process on one CPU: senders (ours and raw) on CPU {pin[0]}, "
        f"peers (ours and raw) on CPU {pin[1]} (--pin)"
        if pin
        else ""
    )
    return (
        f"p2p0mq-actors bench: {'quick' if quick else 'full'} sizes, median of {repeat} "
        f"(raw baseline measured before and after ours); Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()}), {os.cpu_count()} CPUs; "
        f"127.0.0.1, CURVE + ZAP everywhere; {switch}{pinned}"
    )


def main(
    *,
    quick: bool,
    repeat: int,
    only: str | None,
    json_path: str | None,
    deadline: float | None,
    switch_interval: float | None = None,
    pin: tuple[int, int] | None = None,
) -> int:
    specs = select(only)
    if switch_interval:  # every process of the run inherits it
        os.environ[SWITCH_INTERVAL_ENV] = repr(switch_interval)
    else:
        os.environ.pop(SWITCH_INTERVAL_ENV, None)
    if pin:  # the same way
        os.environ[PIN_ENV] = f"{pin[0]},{pin[1]}"
    else:
        os.environ.pop(PIN_ENV, None)
    budget = deadline if deadline is not None else (45.0 if quick else 900.0)
    print(header(quick, repeat, switch_interval, pin), flush=True)
    started = time.monotonic()
    rows: dict[str, Result] = {}
    for spec in specs:
        prior = {key: r.to_json() for key, r in rows.items()}
        got, took = run_scenario(spec, quick=quick, repeat=repeat, budget=budget, prior=prior)
        rows.update(got)
        print(
            f"  scenario {spec.number} ({spec.alias}): {took:.1f} s", file=sys.stderr, flush=True
        )
    print()
    print(table(rows))
    print()
    print("notes:")
    print(notes(rows))
    print(f"\nwall time {time.monotonic() - started:.1f} s")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump({key: r.to_json() for key, r in rows.items()}, out, indent=2)
            out.write("\n")
    return 1 if any(r.ours is None and not r.skipped for r in rows.values()) else 0
