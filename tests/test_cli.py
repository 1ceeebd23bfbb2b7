"""The ``p2p0mq-actors`` command: its dispatch, and the packaging it relies on."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from p2p0mq_actors import cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "bench" in out


def test_an_unknown_command_is_refused_with_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["launch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: p2p0mq-actors")
    assert "unknown command 'launch'" in err


def test_demo_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--fast"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "usage: p2p0mq-actors demo [-h]\n"
        "p2p0mq-actors demo: error: unrecognized arguments: --fast\n"
    )


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_demo_help_describes_the_demo_and_exits_0(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", option])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "usage: p2p0mq-actors demo [-h]\n\nA small demonstration: two nodes over real CURVE"
    )


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_output_into_a_reader_that_stops_after_one_line_ends_without_a_traceback() -> None:
    # p2p0mq-actors | head -1: the demo goes on writing, from several threads,
    # into a pipe nobody reads any more.
    demo = subprocess.Popen(
        [sys.executable, "-m", "p2p0mq_actors"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        demo.stdout.close()
        _, err = demo.communicate(timeout=50)
    finally:
        demo.kill()
        demo.wait(timeout=10)
    assert first.startswith("alice listens on tcp://127.0.0.1:")
    assert (err, demo.returncode) == ("", 0)


def test_bench_options_are_the_suites_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: p2p0mq-actors bench")
    for option in (
        "--quick",
        "--repeat",
        "--only",
        "--json",
        "--deadline",
        "--switch-interval",
        "--pin",
    ):
        assert option in out


def test_bench_refuses_a_bad_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--repeat", "0"])
    assert exit_.value.code == 2
    assert "--repeat must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-0.001", "2"])
def test_bench_refuses_a_switch_interval_out_of_range(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--switch-interval", value])
    assert exit_.value.code == 2
    assert "--switch-interval must be in (0, 1] seconds" in capsys.readouterr().err


def test_a_switch_interval_reaches_the_processes_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    common = importlib.import_module("p2p0mq_actors.bench.common")
    runner = importlib.import_module("p2p0mq_actors.bench.runner")
    before = sys.getswitchinterval()
    try:
        monkeypatch.delenv(common.SWITCH_INTERVAL_ENV, raising=False)
        common.apply_switch_interval()  # not asked: Python's own stays
        assert sys.getswitchinterval() == before
        monkeypatch.setenv(common.SWITCH_INTERVAL_ENV, "0.0005")
        common.apply_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)
    assert "GIL switch interval 0.5 ms (--switch-interval)" in runner.header(False, 3, 0.0005)
    assert "Python's GIL switch interval (5 ms)" in runner.header(False, 3)


def test_bench_pin_takes_the_first_two_cpus_or_refuses_with_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = importlib.import_module("p2p0mq_actors.bench.__main__")
    common = importlib.import_module("p2p0mq_actors.bench.common")
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda _pid: {3, 1, 7})
    assert entry.parse(["--pin"]).pin == (1, 3)
    assert entry.parse([]).pin is None
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda _pid: {2})
    with pytest.raises(SystemExit) as exit_:
        entry.parse(["--pin"])
    assert exit_.value.code == 2
    assert "--pin needs two CPUs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--only", ""], "names no scenario"),
        (["--only", ","], "names no scenario"),
        (["--only", "99"], "unknown scenario(s) ['99']"),
        (["--deadline", "0"], "--deadline must be"),
        (["--deadline", "-5"], "--deadline must be"),
        (["--json", "/nonexistent/dir/out.json"], "cannot write there"),
    ],
)
def test_bench_options_that_cannot_work_are_refused_before_the_run(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An unwritable --json path used to fail after the whole run, the
    figures lost; an empty --only ran every scenario at full size."""
    entry = importlib.import_module("p2p0mq_actors.bench.__main__")
    with pytest.raises(SystemExit) as exit_:
        entry.parse(argv)
    assert exit_.value.code == 2
    assert why in capsys.readouterr().err
    assert entry.parse(["--json", str(tmp_path / "out.json"), "--only", "1,idle"]).only


def test_pinning_reaches_each_process_by_its_role(monkeypatch: pytest.MonkeyPatch) -> None:
    # Applied in a thread of its own: on Linux a thread's affinity is its own,
    # so the test process keeps every CPU it had.
    common = importlib.import_module("p2p0mq_actors.bench.common")
    runner = importlib.import_module("p2p0mq_actors.bench.runner")
    cpus = sorted(os.sched_getaffinity(0))
    local, peer = cpus[0], cpus[-1]
    monkeypatch.setenv(common.PIN_ENV, f"{local},{peer}")
    seen: dict[str, set[int]] = {}

    def apply(role: str) -> None:
        common.apply_process_settings(role)
        seen[role] = os.sched_getaffinity(0)

    for role in ("local", "peer"):
        thread = threading.Thread(target=apply, args=(role,))
        thread.start()
        thread.join(10)
    assert seen == {"local": {local}, "peer": {peer}}
    assert sorted(os.sched_getaffinity(0)) == cpus
    monkeypatch.delenv(common.PIN_ENV)
    thread = threading.Thread(target=apply, args=("peer",))
    thread.start()
    thread.join(10)
    assert sorted(seen["peer"]) == cpus  # not asked: every CPU stays
    assert "senders (ours and raw) on CPU 0, peers (ours and raw) on CPU 1 (--pin)" in (
        runner.header(False, 3, None, (0, 1))
    )
    assert "--pin" not in runner.header(False, 3)


@pytest.mark.bench
@pytest.mark.timeout(60)
def test_the_bench_command_runs_a_scenario_outside_the_checkout(tmp_path: Path) -> None:
    # From another folder, with no PYTHONPATH: the suite comes with the install.
    out = tmp_path / "idle.json"
    done = subprocess.run(
        [sys.executable, "-m", "p2p0mq_actors", "bench", "--quick", "--repeat", "1",
         "--only", "idle", "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    row = json.loads(out.read_text(encoding="utf-8"))["8_idle_cpu"]
    assert row["unit"] == "% core"
    assert row["ours"] > 0


def test_every_subpackage_is_listed_for_installation() -> None:
    # pyproject lists the packages by hand (the bench is mapped in from
    # bench/): a new subpackage must be listed too, or installs miss it.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "p2p0mq_actors").rglob("__init__.py")
    }
    assert found | {"p2p0mq_actors.bench"} == listed
    assert config["tool"]["setuptools"]["package-dir"] == {"p2p0mq_actors.bench": "bench"}
    assert config["project"]["scripts"] == {"p2p0mq-actors": "p2p0mq_actors.cli:main"}
