"""What every scenario shares: results, deadlines, child processes, raw CURVE
sockets, key folders and small statistics.

Rules kept here so that scenarios cannot forget them:
- every wait is bounded (``Params.left`` gives what remains of the scenario's
  hard deadline; ``BenchTimeout`` is raised when it is gone);
- child processes are started with the "spawn" context and always joined;
- raw baselines use CURVE and ZAP too: a raw ROUTER is a CURVE server guarded
  by one ``ThreadAuthenticator`` per context (``configure_curve`` with a folder
  of allowed client certificates), a raw DEALER is a CURVE client.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SPAWN = multiprocessing.get_context("spawn")
DATA = b"x" * 32  # the 32 bytes of every small payload
MORE = int(zmq.SNDMORE)  # plain ints, computed once (trap 6 of PERFORMANCE.md)
LAST = 0
NOBLOCK = int(zmq.NOBLOCK)
KIND_REQUEST = b"\x01"
SEND_TIMEOUT_MS = 5_000  # a raw blocking send never waits longer than this
RAW_SNDHWM = 10_000  # a raw DEALER's high-water mark: our connections' (CurveDealerFactory's)


class BenchTimeout(Exception):
    """A scenario ran out of its time: reported, never hung on."""


class BenchFailure(Exception):
    """Something a scenario depends on failed; the message says what."""


@dataclass
class Result:
    """One row of the report (and one key of the JSON output)."""

    ours: float | None
    baseline: float | None
    ratio: float | None
    unit: str
    target: str
    note: str = ""
    met: bool | None = None  # shown in the table only
    skipped: bool = False  # not measured by choice (what it needs was not run): no failure

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["met"], out["skipped"]
        return out


def failed(unit: str, target: str, why: str) -> Result:
    """The row of a sub-scenario that produced no figure."""
    return Result(None, None, None, unit, target, why)


@dataclass
class Params:
    """What a scenario process is told by the runner."""

    quick: bool
    repeat: int
    deadline: float  # time.monotonic() value: the scenario's hard deadline
    scratch: str  # a folder of its own (key stores, certificates)
    prior: dict[str, dict[str, Any]] = field(default_factory=dict)  # earlier results

    def left(self, cap: float | None = None) -> float:
        """Seconds left before the deadline (at most ``cap``); raises when none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BenchTimeout("the scenario's deadline passed")
        return left if cap is None else min(left, cap)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


# -- statistics -----------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline <= 0:
        return None
    return ours / baseline


def throughput_result(
    ours: Sequence[float],
    raw: Sequence[float],
    unit: str,
    target: str,
    note: str,
    sender: Sequence[float] = (),
) -> Result:
    """A row from interleaved runs: medians of ours and of raw, and their ratio.

    ``sender``: our rates up to the sender's last ``on_sent`` (where the
    sending side alone would put the figure), shown in the note.
    """
    o, b = median(ours), median(raw)
    runs = "runs: ours " + "/".join(f"{v:,.0f}" for v in ours)
    runs += "; raw " + "/".join(f"{v:,.0f}" for v in raw)
    if sender:
        runs += f"; ours sender-side (to last on_sent) {median(sender):,.0f} {unit}"
    return Result(o, b, ratio(o, b), unit, target, f"{note} [{runs}]".strip())


def interleave(
    raw: Callable[[], float], ours: Sequence[Callable[[], float]], repeat: int
) -> tuple[list[float], list[list[float]]]:
    """raw, ours..., raw, ours..., ..., raw: the baseline before and after each run of ours."""
    raws = [raw()]
    mine: list[list[float]] = [[] for _ in ours]
    for _ in range(repeat):
        for i, run in enumerate(ours):
            mine[i].append(run())
        raws.append(raw())
    return raws, mine


# -- processes ------------------------------------------------------------


SWITCH_INTERVAL_ENV = "P2P0MQ_BENCH_SWITCH_INTERVAL"
"""How ``--switch-interval`` reaches every process of a run (they inherit it)."""


def apply_switch_interval() -> None:
    """Set this process's GIL switch interval as ``--switch-interval`` asked
    (``sys.setswitchinterval``); Python's default (5 ms) when it did not."""
    value = os.environ.get(SWITCH_INTERVAL_ENV)
    if value:
        sys.setswitchinterval(float(value))


PIN_ENV = "P2P0MQ_BENCH_PIN"
"""How ``--pin`` reaches every process of a run: ``"LOCAL,PEER"``, the CPU
of the processes that run our sending side and the raw baseline's (the
scenario and its clients), and the CPU of the peer process (the sinks and
echoes, ours and raw)."""


def pin_cpus() -> tuple[int, int] | None:
    """``--pin``'s two CPUs: the first two this process may use; None if it
    may use only one."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def apply_process_settings(role: str = "local") -> None:
    """A process of the run takes the run's settings: the switch interval
    (``--switch-interval``) and, with ``--pin``, its CPU: the peer CPU for
    the ``"peer"`` process, the local one for every other. Threads started
    afterwards (actors, zmq's I/O threads) inherit the CPU."""
    apply_switch_interval()
    value = os.environ.get(PIN_ENV)
    if value:
        local, peer = (int(cpu) for cpu in value.split(","))
        os.sched_setaffinity(0, {peer if role == "peer" else local})


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchFailure("no VmRSS line in /proc/self/status")


class Child:
    """A spawned child process that takes commands on a pipe and answers each.

    ``target(conn, deadline, *args)`` must answer every command it gets, exit on
    ``("quit",)`` or when the pipe closes, and never outlive ``deadline``. The
    child takes the run's settings first (``apply_process_settings(role)``).
    """

    def __init__(
        self, target: Callable[..., None], deadline: float, *args: Any, role: str = "local"
    ) -> None:
        self.conn, theirs = SPAWN.Pipe()
        self.proc = SPAWN.Process(
            target=_child_main, args=(target, role, theirs, deadline, *args), daemon=False
        )
        self.proc.start()
        theirs.close()

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    def recv(self, timeout: float) -> Any:
        """The child's next answer; BenchTimeout after ``timeout`` seconds."""
        if not self.conn.poll(max(0.0, timeout)):
            raise BenchTimeout(f"no answer from child {self.proc.pid} within {timeout:.1f} s")
        try:
            answer = self.conn.recv()
        except EOFError:
            raise BenchFailure(
                f"child {self.proc.pid} exited (code {self.proc.exitcode})"
            ) from None
        if isinstance(answer, tuple) and answer and answer[0] == "error":
            raise BenchFailure(f"child {self.proc.pid} failed: {answer[1]}")
        return answer

    def ask(self, timeout: float, *command: Any) -> Any:
        self.send(*command)
        return self.recv(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to quit, then join it (terminate, then kill, if it does not)."""
        with contextlib.suppress(OSError, EOFError, BrokenPipeError):
            self.conn.send(("quit",))
            if self.conn.poll(timeout):
                self.conn.recv()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)
        if self.proc.exitcode != 0:
            print(
                f"bench: child process {self.proc.pid} ended with code {self.proc.exitcode}",
                file=sys.stderr,
            )
        self.conn.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child_main(target: Callable[..., None], role: str, *args: Any) -> None:
    """A child's entry: the run's settings for its ``role``, then ``target``."""
    apply_process_settings(role)
    target(*args)


def serve(conn: Any, deadline: float, handlers: dict[str, Callable[..., Any]]) -> None:
    """A child's command loop: each command's handler answers it (or its
    error is sent back); ends on ``quit``, a closed pipe or the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            if not conn.poll(min(left, 1.0)):
                continue
            command = conn.recv()
        except (EOFError, OSError):
            return
        name, args = command[0], command[1:]
        if name == "quit":
            with contextlib.suppress(OSError):
                conn.send(("bye",))
            return
        try:
            answer = handlers[name](*args)
        except Exception as exc:
            answer = ("error", f"{exc!r}\n{traceback.format_exc(limit=8)}")
        try:
            conn.send(answer)
        except (OSError, BrokenPipeError):
            return


# -- keys -----------------------------------------------------------------


def scratch_dir() -> str:
    """A private folder on tmpfs when there is one (key files are fsync'd)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="p2p0mq-bench-", dir=base)


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def curve_pair() -> tuple[bytes, bytes]:
    """A new CURVE key pair (public, secret), Z85."""
    public, secret = zmq.curve_keypair()
    return public, secret


def write_certificates(folder: str | Path, keys: Iterable[bytes]) -> str:
    """Write one public certificate per key into ``folder`` (for configure_curve)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        text = f'metadata\ncurve\n    public-key = "{key.decode("ascii")}"\n'
        (path / f"client-{i}.key").write_text(text, encoding="ascii")
    return str(path)


# -- raw CURVE sockets ----------------------------------------------------


def start_authenticator(ctx: zmq.Context[Any], certificates: str) -> ThreadAuthenticator:
    """ZAP for every socket of ``ctx``: only the keys in ``certificates`` get in."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=certificates)
    return auth


def curve_router(ctx: zmq.Context[Any], public: bytes, secret: bytes) -> zmq.Socket[Any]:
    """A ROUTER as CURVE server (ZAP comes from the context's authenticator)."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    return sock


def bind_local(sock: zmq.Socket[Any]) -> str:
    """Bind to an ephemeral port on 127.0.0.1; returns the real endpoint."""
    sock.bind("tcp://127.0.0.1:*")
    endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return endpoint


def curve_dealer(
    ctx: zmq.Context[Any],
    endpoint: str,
    pair: tuple[bytes, bytes],
    server_key: bytes,
    *,
    identity: bytes | None = None,
) -> zmq.Socket[Any]:
    """A DEALER as CURVE client, connected; blocking sends time out after 5 s."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, RAW_SNDHWM)
    sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    sock.setsockopt(zmq.RCVTIMEO, SEND_TIMEOUT_MS)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, pair[0])
    sock.setsockopt(zmq.CURVE_SECRETKEY, pair[1])
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
    sock.connect(endpoint)
    return sock


def recv_message(sock: zmq.Socket[Any], flags: int = 0) -> list[Any]:
    """One whole message as zmq.Frames: recv(copy=False) following ``.more``."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames


def close_all(ctx: zmq.Context[Any], socks: Iterable[zmq.Socket[Any]], auth: Any = None) -> None:
    for sock in socks:
        sock.close(linger=0)
    if auth is not None:
        auth.stop()
    ctx.term()
