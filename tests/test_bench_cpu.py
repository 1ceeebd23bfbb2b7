"""``python -m bench.cpu``: each thread's CPU a message, ours against raw."""

from __future__ import annotations

import gc
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


def test_thread_switches_names_this_thread_and_counts_its_switches() -> None:
    me = threading.current_thread()
    readings = cpu.thread_switches()
    assert readings[me.native_id][0] == me.name
    assert all(count >= 0 for _, count in readings.values())


def test_switches_in_adds_voluntary_and_involuntary_switches() -> None:
    status = (
        "Name:\tReceiver-3\nState:\tS (sleeping)\n"
        "voluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
    )
    assert cpu.switches_in(status) == 127
    assert cpu.switches_in("Name:\tx\n") == 0


def test_waited_in_reads_the_run_queue_nanoseconds_of_a_schedstat() -> None:
    assert cpu.waited_in("7180000000 2880000000 4096\n") == 2.88


def test_thread_waits_names_this_thread_when_the_kernel_keeps_schedstat() -> None:
    me = threading.current_thread()
    readings = cpu.thread_waits()
    if readings:  # a kernel without schedstat gives nothing, and the report leaves it out
        assert readings[me.native_id][0] == me.name
        assert all(seconds >= 0 for _, seconds in readings.values())


def test_the_gc_clock_times_collections_until_closed() -> None:
    clock = cpu.GcClock()
    try:
        gc.collect(0)
        assert clock.full == 0  # the youngest generation only
        gc.collect()
        seconds, used = clock.seconds, clock.cpu
        assert seconds > 0
        assert 0 < used <= seconds * 1.5 + 0.01  # CPU is no more than wall time (ticks aside)
        assert clock.full == 1
    finally:
        clock.close()
    gc.collect()
    assert (clock.seconds, clock.cpu, clock.full) == (seconds, used, 1)  # the hook is gone
    assert clock._callback not in gc.callbacks


def test_per_step_is_messages_over_steps_and_none_without_a_step() -> None:
    assert cpu._per_step(1000, 4) == 250
    assert cpu._per_step(1000, 0) is None


def test_the_report_puts_each_thread_of_each_side_against_raw() -> None:
    ours, raw = cpu.Run(), cpu.Run()
    ours.add(
        1000,
        0.01,
        cpu.Side(
            {"MainThread": 0.002, "PeerConnection": 0.003},
            {"MainThread": 10.0},
            (0.0004, 0.0003, 2),
            500,
        ),
        cpu.Side(
            {"Receiver": 0.008, "_Counter": 0.0005},
            {"Receiver": 20.0, "_Counter": 5.0},
            (0.0001, 0.00005, 0),
            250,
            {"Receiver": 0.0015, "_Counter": 0.0005},
        ),
    )
    raw.add(
        1000,
        0.005,
        cpu.Side({"MainThread": 0.003}),
        cpu.Side({"raw-sink": 0.004}, waits={"raw-sink": 0.0005}),
    )
    text = cpu.report({"ours": ours, "raw": raw}, 1000, "0.1.1", 1)
    assert text.startswith("1,000 messages a run, 0.1.1 wire, ours by send(), medians of 1")
    many = cpu.report({"ours": ours, "raw": raw}, 1000, "native", 1, send_many=True)
    assert many.startswith("1,000 messages a run, native wire, ours by send_many of 1,000,")
    assert "PeerConnection                       3.00     0.00" in text
    assert "raw-sink                             0.00     4.00" in text
    assert "both processes                        13.50     7.00" in text
    assert "rate ratio (ours / raw): 0.50" in text
    assert "CPU ratio (raw's CPU a message / ours): 0.52" in text
    sending, receiving = text.split("receiving process")
    assert _row(sending, "switches a 1,000 messages") == ["10.0", "0.0"]
    assert _row(sending, "garbage collector") == ["0.40", "0.00"]
    assert _row(sending, "its CPU") == ["0.30", "0.00"]
    assert _row(sending, "its full collections a run") == ["2", "0"]
    assert _row(receiving, "switches a 1,000 messages") == ["25.0", "0.0"]
    assert _row(receiving, "garbage collector") == ["0.10", "0.00"]
    assert _row(receiving, "its CPU") == ["0.05", "0.00"]
    assert _row(receiving, "its full collections a run") == ["0", "0"]
    assert _row(receiving, "waiting for a CPU") == ["2.00", "0.50"]
    assert "waiting for a CPU" not in sending  # raw's sending side has no reading
    # the busiest receiving thread, against the wall time a message (1e6 / rate)
    assert "ours: Receiver ran 8.00 and waited for a CPU 1.50 µs a message, of 10.00" in text
    assert "(95%)" in text
    assert "raw: raw-sink ran 4.00 and waited for a CPU 0.50 µs a message, of 5.00" in text
    assert "ours: messages the Receiver read a step (of up to 256 zmq messages): 250" in text
    assert "ours: messages the Scheduler planned an epoch: 500" in text


def _row(text: str, label: str) -> list[str]:
    """The figures on the report's line that starts with ``label``."""
    (line,) = [line for line in text.splitlines() if line.strip().startswith(label)]
    return line.strip()[len(label) :].split()


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
    # a Receiver step reads at least one message and at most a batch
    assert 1 <= ours.per_step["receiving"][0] <= 256
    assert ours.per_step["sending"][0] >= 1
    assert not raw.per_step["receiving"] and not raw.per_step["sending"]
    for run in (ours, raw):  # both processes switched, and collected, in every run
        assert len(run.switches["sending"]) == len(run.switches["receiving"]) == 1
        assert run.switches["receiving"][0] > 0
        assert len(run.gc["sending"]) == len(run.gc["receiving"]) == 1
        assert len(run.waits["sending"]) == len(run.waits["receiving"]) == 1
    if cpu.thread_waits():  # the kernel keeps schedstat: the busiest thread is named
        assert "ours: Receiver ran" in cpu.report(results, 20_000, "0.1.1", 1)


@pytest.mark.bench
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_short_send_many_run_reads_native_batch_frames() -> None:
    results = cpu.run(20_000, "native", 1, send_many=True)
    ours = results["ours"]
    assert ours.rates[0] > 0 and results["raw"].rates[0] > 0
    assert ours.receiving[0]["Receiver"] > 0
    # batch frames: a Receiver step reads more messages than zmq messages
    assert ours.per_step["receiving"][0] > 256
