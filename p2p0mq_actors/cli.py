"""The ``p2p0mq-actors`` command.

``p2p0mq-actors`` (or ``p2p0mq-actors demo``) runs the demo;
``p2p0mq-actors bench [options]`` runs the benchmark suite, with the options
of ``python -m bench`` (``p2p0mq-actors bench --help`` lists them). Output
piped into a reader that stops early (``| head -1``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import demo

USAGE = """usage: p2p0mq-actors [demo | bench [options]]

  demo    two nodes over real CURVE sockets on 127.0.0.1 (the default)
  bench   the benchmark suite against raw pyzmq (bench --help for its options)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named by ``argv`` (``sys.argv[1:]`` by default); its exit code."""
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a closed pipe shows here, not at exit as a traceback
    except BrokenPipeError:
        demo.discard_output(sys.stdout)
        return 1  # what Python itself exits with on EPIPE
    return code


def _run(args: list[str]) -> int:
    command = args.pop(0) if args else "demo"
    if command == "demo":
        parser = argparse.ArgumentParser(prog="p2p0mq-actors demo", description=demo.__doc__)
        parser.parse_args(args)  # --help, or no arguments at all
        return _demo()
    if command == "bench":
        return _bench(args)
    if command in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sys.stderr.write(USAGE)
    sys.stderr.write(f"p2p0mq-actors: unknown command {' '.join([command, *args])!r}\n")
    return 2


def _demo() -> int:
    logging.basicConfig(
        handlers=[demo.LogLines(sys.stdout)],
        level=logging.WARNING,
        format="  (log) %(levelname)s %(name)s: %(message)s",
    )
    return demo.main()


def _bench(args: list[str]) -> int:
    # Imported by name: the suite ships as p2p0mq_actors.bench (bench/ in a
    # checkout), which is no part of the library's typed surface.
    try:
        entry = importlib.import_module("p2p0mq_actors.bench.__main__")
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"p2p0mq-actors: the benchmark suite is not installed ({exc})\n")
        return 2
    code: int = entry.run(entry.parse(args))
    return code
