"""``python -m bench.cpu``: each thread's CPU a message, ours against raw."""

from __future__ import annotations

import importlib
import threading
from typing import Any

import pytest

cpu: Any = importlib.import_module("p2p0mq_actors.bench.cpu")


def test_used_is_the_cpu_spent_between_readings_summed_by_thread_kind() -> None:
    before = {1: ("Receiver-3", 1.0), 2: ("PeerConnection-4", 0.5), 3: ("ZMQbg/IO/0", 2.0)}
    after = {
        1: ("Receiver-3", 1.25),
        2: ("PeerConnection-4", 0.75),
        3: ("ZMQbg/IO/0", 2.0),  # idle: left out
        4: ("PeerConnection-9", 0.5),  # started after the first reading
        5: ("raw-sink", 0.125),
    }
    assert cpu.used(before, after) == {
        "Receiver": 0.25,
        "PeerConnection": 0.75,
        "raw-sink": 0.125,
    }


def test_only_a_numeric_suffix_is_dropped_from_a_thread_name() -> None:
    assert [cpu._short(n) for n in ("Scheduler-12", "raw-sink", "MainThread", "-7")] == [
        "Scheduler",
        "raw-sink",
        "MainThread",
        "-7",
    ]


def test_thread_cpu_names_this_thread_and_counts_its_time() -> None:
    me = threading.current_thread()
    readings = cpu.thread_cpu()
    assert readings[me.native_id][0] == me.name
    assert all(seconds >= 0 for _, seconds in readings.values())


def test_the_report_puts_each_thread_of_each_side_against_raw() -> None:
    ours, raw = cpu.Run(), cpu.Run()
    ours.add(1000, 0.01, {"MainThread": 0.002, "PeerConnection": 0.003}, {"Receiver": 0.008})
    raw.add(1000, 0.005, {"MainThread": 0.003}, {"raw-sink": 0.004})
    text = cpu.report({"ours": ours, "raw": raw}, 1000, "0.1.1", 1)
    assert "PeerConnection                       3.00     0.00" in text
    assert "raw-sink                             0.00     4.00" in text
    assert "both processes                        13.00     7.00" in text
    assert "rate ratio (ours / raw): 0.50" in text
    assert "CPU ratio (raw's CPU a message / ours): 0.54" in text


@pytest.mark.bench
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_short_run_measures_both_kinds_in_both_processes() -> None:
    # enough messages for every busy thread to pass the kernel's 10 ms tick
    results = cpu.run(20_000, "0.1.1", 1)
    ours, raw = results["ours"], results["raw"]
    assert len(ours.rates) == len(raw.rates) == 1
    assert ours.rates[0] > 0 and raw.rates[0] > 0
    assert ours.sending[0]["MainThread"] > 0 and raw.sending[0]["MainThread"] > 0
    assert ours.receiving[0]["Receiver"] > 0
    assert raw.receiving[0]["raw-sink"] > 0
