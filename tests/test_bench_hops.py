"""``python -m bench.hops``: the round trip's segments, from marks on both sides."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from p2p0mq_actors.core.codec import Encoder, p2p0mq_reader
from p2p0mq_actors.runtime import receiver as receiver_module
from p2p0mq_actors.transport.router import CurveRouter

hops: Any = importlib.import_module("p2p0mq_actors.bench.hops")


def test_segments_are_medians_of_differences_across_the_two_sides() -> None:
    client = {"start": [0.0, 10.0, 20.0], "done": [0.001, 10.003, 20.002]}
    server = {"poll": [1.0, 2.0, 3.0]}
    client["sent"] = [0.5, 1.5, 2.5]
    rows = dict(hops.segments(client, server, 3))
    assert rows["round trip"] == pytest.approx(2000.0)  # µs: median of 1, 3, 2 ms
    assert rows["network -> server poll returns"] == pytest.approx(500_000.0)
    assert rows["server: decoding"] is None  # no marks: that path was not taken


def test_segments_read_the_last_marks_of_each_kind() -> None:
    # warm-up marks before the counted ones are left out
    client = {"start": [5.0, 0.0, 1.0], "done": [0.0, 0.002, 1.004]}
    rows = dict(hops.segments(client, {}, 2))
    assert rows["round trip"] == pytest.approx(3000.0)


def test_instrument_marks_calls_and_undoes_itself() -> None:
    marks: dict[str, list[float]] = {}
    original = Encoder.__call__
    restore = hops.instrument(marks)
    try:
        assert Encoder.__call__ is not original
        assert receiver_module.p2p0mq_reader is not p2p0mq_reader
    finally:
        restore()
    assert Encoder.__call__ is original
    assert receiver_module.p2p0mq_reader is p2p0mq_reader
    assert CurveRouter.poll.__qualname__ == "CurveRouter.poll"


@pytest.mark.bench
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_short_run_times_every_segment_and_leaves_the_library_as_it_was() -> None:
    # A round trip that leaves the express path (the machine busy: a socket
    # not writable at once) passes through marks of another path, and its
    # segments are not all measured; up to three runs, for one that was.
    for _ in range(3):
        rows = dict(hops.run(30, "0.1.1"))
        missing = [label for label, value in rows.items() if value is None]
        if not missing:
            break
    assert list(rows) == [label for label, *_ in hops.segments_for("0.1.1")]
    assert not missing, missing
    assert rows["round trip"] > 0
    assert CurveRouter.poll.__qualname__ == "CurveRouter.poll"
