"""The bench's report: a row not measured by choice is 'not run', not a failure."""

from __future__ import annotations

import importlib
from typing import Any

# The bench ships in the wheel as p2p0mq_actors.bench (pyproject maps it).
common: Any = importlib.import_module("p2p0mq_actors.bench.common")
runner: Any = importlib.import_module("p2p0mq_actors.bench.runner")


def test_a_row_skipped_by_choice_says_not_run_and_a_failed_one_fail() -> None:
    rows = {
        "2c": common.Result(None, None, None, "x", ">= 2x", "needs scenario 1", skipped=True),
        "9z": common.Result(None, None, None, "msg/s", ">= 1", "timeout"),
    }
    lines = runner.table(rows).splitlines()[2:]
    assert lines[0].endswith("not run") and lines[1].endswith("FAIL")
    assert "skipped" not in rows["2c"].to_json()
