"""``python -m bench``: run the benchmark suite (see bench/README.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .common import pin_cpus
from .runner import SPECS, main, select


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    names = ", ".join(f"{s.number}={s.alias}" for s in SPECS)
    parser = argparse.ArgumentParser(
        prog="python -m bench" if __package__ == "bench" else "p2p0mq-actors bench",
        description="p2p0mq-actors benchmarks: ratios against raw pyzmq, measured in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a CI smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"run some scenarios: {names}")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="hard deadline per scenario (default 45 quick, 900 full)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="SECONDS",
        help="set sys.setswitchinterval in every process of the run (default: Python's, 5 ms)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run each process on one CPU: the senders (ours and raw) on the first, "
        "the peers (ours and raw) on the second",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.switch_interval is not None and not 0 < args.switch_interval <= 1:
        parser.error("--switch-interval must be in (0, 1] seconds")
    if args.deadline is not None and not args.deadline > 0:
        parser.error("--deadline must be a number of seconds > 0")
    if args.only is not None:
        try:
            select(args.only)
        except ValueError as exc:
            parser.error(str(exc))
    if args.json is not None and not _writable(Path(args.json)):
        parser.error(f"--json {args.json!r}: cannot write there (the figures come after the run)")
    if args.pin:
        args.pin = pin_cpus()
        if args.pin is None:
            parser.error("--pin needs two CPUs, and this process may use only one")
    else:
        args.pin = None
    return args


def _writable(path: Path) -> bool:
    """Whether a file can be written at ``path`` (checked before a run of minutes)."""
    if path.is_dir():
        return False
    if path.exists():
        return os.access(path, os.W_OK)
    folder = path.parent if str(path.parent) else Path()
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def run(args: argparse.Namespace) -> int:
    """Run the suite as ``parse`` read it; the exit code."""
    return main(
        quick=args.quick,
        repeat=args.repeat,
        only=args.only,
        json_path=args.json,
        deadline=args.deadline,
        switch_interval=args.switch_interval,
        pin=args.pin,
    )


if __name__ == "__main__":
    raise SystemExit(run(parse()))
