"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs to the
end and writes every scenario's row. No speed is asserted here: figures are
read by people, next to their targets (see bench/README.md).

Deselect with ``-m "not bench"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIO_KEYS = (
    "1_fast_6frame_send",
    "1_ceiling_codec",
    "1_receiving_side_alone",
    "1_vs_raw_recv_multipart",
    "2a_native_send",
    "2b_native_send_many",
    "2b_native_send_many_each",
    "2c_native_vs_6frame",
    "2_ceiling_codec",
    "2_receiving_side_alone",
    "3a_medium_one_peer",
    "3b_medium_ten_peers",
    "3c_medium_ten_peers_native",
    "4_slow_backlog",
    "5a_rtt_p50",
    "5a_rtt_p99",
    "5a_rtt_p50_told",
    "5a_ceiling_codec",
    "5b_pipelined_100",
    "6a_fairness_rounds",
    "6b_fairness_latency",
    "7a_fanout_connect",
    "7b_fanout_deliver",
    "7c_fanout_rss_per_peer",
    "8_idle_cpu",
)


@pytest.mark.bench
@pytest.mark.timeout(240)
def test_quick_bench_runs_and_reports_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(SCENARIO_KEYS) <= set(results), sorted(set(SCENARIO_KEYS) - set(results))
    for key in SCENARIO_KEYS:
        row = results[key]
        assert isinstance(row["ours"], (int, float)), (key, row)
        assert isinstance(row["unit"], str) and row["unit"], (key, row)
        assert {"baseline", "ratio", "target", "note"} <= set(row), (key, row)
    assert "1_fast_6frame_send" in done.stdout  # the table went to stdout
