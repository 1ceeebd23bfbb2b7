"""The ``p2p0mq-actors`` command.

``p2p0mq-actors`` (or ``p2p0mq-actors demo``) runs the demo;
``p2p0mq-actors bench [options]`` runs the benchmark suite, with the options
of ``python -m bench`` (``p2p0mq-actors bench --help`` lists them).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from .demo import main as demo_main

USAGE = """usage: p2p0mq-actors [demo | bench [options]]

  demo    two nodes over real CURVE sockets on 127.0.0.1 (the default)
  bench   the benchmark suite against raw pyzmq (bench --help for its options)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named by ``argv`` (``sys.argv[1:]`` by default); its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else "demo"
    if command == "demo" and not args:
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
        stream=sys.stdout,
        level=logging.WARNING,
        format="  (log) %(levelname)s %(name)s: %(message)s",
    )
    return demo_main()


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
