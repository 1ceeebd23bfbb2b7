"""CurveDealerSocket against a real CURVE ROUTER guarded by ZAP, on 127.0.0.1.

Each test gets its own zmq context and ZAP authenticator (one per context:
trap 9), binds an ephemeral port, and terminates everything in teardown.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from gc_kit import cyclic_garbage
from zmq.auth.thread import ThreadAuthenticator

from p2p0mq_actors.core.errors import (
    ConfigurationError,
    TransportError,
    UnexpectedSendError,
    WouldBlock,
)
from p2p0mq_actors.core.ports import KeyPair, PeerAddress, SocketEvent
from p2p0mq_actors.transport import (
    CurveDealerFactory,
    CurveDealerSocket,
    SocketClosedError,
    generate_keypair,
)
from p2p0mq_actors.transport.sockets import CLIENT_MAX_FRAME, SEND_HWM, check_send_hwm

pytestmark = pytest.mark.integration

FRAMES = [b"", b"\x01", b"hello", b"\x00" * 3, b"p" * 1000, b"last"]
CONNECTED = SocketEvent.CONNECTED
DISCONNECTED = SocketEvent.DISCONNECTED
SUCCEEDED = SocketEvent.HANDSHAKE_SUCCEEDED
FAILED = SocketEvent.HANDSHAKE_FAILED

Context = zmq.Context[Any]
Socket = zmq.Socket[Any]


@dataclass
class Server:
    """A CURVE ROUTER whose ZAP handler admits the keys in ``allowed_dir``."""

    router: Socket
    endpoint: str
    keys: KeyPair
    client_keys: KeyPair
    stranger_keys: KeyPair
    auth: ThreadAuthenticator
    allowed_dir: Path
    stranger_cert: Path

    def admit_stranger(self) -> None:
        shutil.copy(self.stranger_cert, self.allowed_dir / "stranger.key")
        self.auth.configure_curve(domain="*", location=str(self.allowed_dir))


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert [t for t in threading.enumerate() if t not in before] == []


@pytest.fixture
def ctx() -> Iterator[Context]:
    context: Context = zmq.Context()
    yield context
    if not context.closed:
        assert terminates(context, within=5.0), "a socket was left open"


@pytest.fixture
def server(ctx: Context, tmp_path: Path) -> Iterator[Server]:
    allowed, strangers = tmp_path / "allowed", tmp_path / "strangers"
    allowed.mkdir()
    strangers.mkdir()
    client_keys = _certificate(allowed, "client")
    stranger_keys = _certificate(strangers, "stranger")
    keys = generate_keypair()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    router: Socket = ctx.socket(zmq.ROUTER)
    try:
        auth.configure_curve(domain="*", location=str(allowed))
        router.linger = 0
        router.curve_server = True
        router.curve_publickey = keys.public
        router.curve_secretkey = keys.secret
        router.bind("tcp://127.0.0.1:*")
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        yield Server(
            router,
            endpoint,
            keys,
            client_keys,
            stranger_keys,
            auth,
            allowed,
            strangers / "stranger.key",
        )
    finally:
        router.close(linger=0)
        auth.stop()


def _certificate(folder: Path, name: str) -> KeyPair:
    _, secret_file = zmq.auth.create_certificates(folder, name)
    public, secret = zmq.auth.load_certificate(secret_file)
    assert secret is not None
    return KeyPair(public=public, secret=secret)


def terminates(context: Context, within: float) -> bool:
    """Terminate ``context`` in a helper thread; True if it finished in time."""
    thread = threading.Thread(target=context.term, name="ctx-term")
    thread.start()
    thread.join(within)
    if thread.is_alive():  # let teardown report the failure without hanging
        for sock in list(context._sockets):
            sock.close(linger=0)
        thread.join(5.0)
        return False
    return True


def events_until(
    sock: CurveDealerSocket, done: Callable[[list[SocketEvent]], bool], timeout: float = 5.0
) -> list[SocketEvent]:
    """Collect ``sock.events()`` until ``done(collected)`` or ``timeout``."""
    seen: list[SocketEvent] = []
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        seen += sock.events()
        if done(seen) or time.monotonic() >= deadline:
            return seen
        pause.wait(0.005)


def connect(
    ctx: Context, server: Server, *, keys: KeyPair | None = None, server_key: bytes = b""
) -> CurveDealerSocket:
    factory = CurveDealerFactory(ctx, b"client-1", keys or server.client_keys)
    return factory.connect(
        PeerAddress(b"server-1", server.endpoint, server_key or server.keys.public)
    )


@pytest.fixture
def closing() -> Iterator[list[CurveDealerSocket]]:
    """Sockets to close in teardown, before the context terminates."""
    sockets: list[CurveDealerSocket] = []
    yield sockets
    for sock in sockets:
        sock.close()


# -- (a) the handshake window, then whole messages ------------------------------


def test_sends_would_block_until_the_handshake_then_arrive_whole(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)

    assert sock.writable() is False  # the probe agrees with the send
    with pytest.raises(WouldBlock) as info:
        sock.send_frames(FRAMES)
    assert (info.value.peer, info.value.retryable) == (b"server-1", True)

    assert sock.wait_writable(5.0) is True
    assert sock.writable() is True
    sock.send_frames(FRAMES)

    assert server.router.poll(5000) == zmq.POLLIN
    assert server.router.recv_multipart() == [b"client-1", *FRAMES]
    assert server.router.poll(100) == 0  # the refused first send left no trace
    assert events_until(sock, lambda seen: SUCCEEDED in seen) == [CONNECTED, SUCCEEDED]
    assert sock.events() == []


def test_a_single_frame_message_arrives(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)
    assert sock.wait_writable(5.0)

    sock.send_frames((b"only",))

    assert server.router.poll(5000) == zmq.POLLIN
    assert server.router.recv_multipart() == [b"client-1", b"only"]


def test_an_empty_message_is_refused_before_zmq_sees_it(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)

    with pytest.raises(ValueError, match="needs at least one frame"):
        sock.send_frames([])


def _one_message_deep(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> CurveDealerSocket:
    """A writable socket whose high-water marks, both ends, are one message."""
    factory = CurveDealerFactory(ctx, b"client-1", server.client_keys, sndhwm=1)
    sock = factory.connect(PeerAddress(b"server-1", server.endpoint, server.keys.public))
    closing.append(sock)
    server.router.rcvhwm = 1
    assert sock.wait_writable(5.0)
    return sock


def test_a_full_high_water_mark_is_would_block_and_clears_when_the_peer_reads(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = _one_message_deep(ctx, server, closing)
    big = [b"h", b"x" * 1_000_000]  # loopback buffers hold a few MB at most

    sent = 0
    with pytest.raises(WouldBlock):
        for _ in range(1000):
            sock.send_frames(big)
            sent += 1

    assert sent < 1000
    assert server.router.poll(5000) == zmq.POLLIN
    for _ in range(sent):  # drain everything that was accepted
        assert server.router.poll(5000) == zmq.POLLIN
        assert server.router.recv_multipart() == [b"client-1", *big]
    assert sock.wait_writable(5.0) is True


def test_send_each_sends_messages_whole_in_order_and_counts_them(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)
    taken, error = sock.send_each([FRAMES])  # before the handshake: would block
    assert (taken, type(error)) == (0, WouldBlock)
    assert sock.wait_writable(5.0)
    messages = [[b"m%d" % n, *FRAMES[: n % 3 + 1]] for n in range(20)]

    assert sock.send_each(messages) == (20, None)
    assert sock.send_each([]) == (0, None)

    got = []
    for _ in messages:
        assert server.router.poll(5000) == zmq.POLLIN
        got.append(server.router.recv_multipart())
    assert got == [[b"client-1", *frames] for frames in messages]
    assert server.router.poll(100) == 0  # the one refused before the handshake left no trace


@pytest.mark.parametrize("each", [False, True])
def test_an_interrupt_between_two_frames_ends_that_message_and_the_next_arrives_whole(
    ctx: Context, server: Server, closing: list[CurveDealerSocket], each: bool
) -> None:
    # The part sent used to take the next message's frames in as its rest.
    sock = connect(ctx, server)
    closing.append(sock)
    assert sock.wait_writable(5.0)
    send, sent, fired = sock._send, [], []

    def interrupted(frame: bytes, flags: int) -> None:
        if len(sent) == 2 and not fired:  # once, before the third frame
            fired.append(True)
            raise KeyboardInterrupt
        sent.append(frame)
        send(frame, flags)

    sock._send = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        if each:
            sock.send_each([FRAMES, FRAMES])
        else:
            sock.send_frames(FRAMES)
    sock._send = send  # type: ignore[method-assign]
    sock.send_frames(FRAMES)
    assert server.router.poll(5000) == zmq.POLLIN
    assert server.router.recv_multipart() == [b"client-1", *FRAMES[:2], b""]  # ended, refused
    assert server.router.poll(5000) == zmq.POLLIN
    assert server.router.recv_multipart() == [b"client-1", *FRAMES]


def test_a_would_block_from_send_each_is_freed_at_once_and_keeps_no_frames(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    # It goes up the stack at every blocked send, and may be kept (a
    # request's cause): zmq's error, its cause, carries no traceback, whose
    # frames would hold the plan being sent, in a cycle with send_each's.
    sock = _one_message_deep(ctx, server, closing)
    big = [b"h", b"x" * 1_000_000]  # loopback buffers hold a few MB at most
    with cyclic_garbage() as garbage:  # what the collector finds meanwhile
        sent, error = sock.send_each([big] * 1000)
        assert 0 < sent < 1000 and type(error) is WouldBlock
        assert type(error.__cause__) is zmq.Again
        assert error.__cause__.__traceback__ is None
        del error
        gc.collect()
        assert not [o for o in garbage if isinstance(o, (WouldBlock, zmq.ZMQError))]


def test_send_each_stops_at_the_high_water_mark_and_at_a_message_of_no_frames(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = _one_message_deep(ctx, server, closing)
    big = [b"h", b"x" * 1_000_000]  # loopback buffers hold a few MB at most

    sent, error = sock.send_each([big] * 1000)
    assert 0 < sent < 1000 and type(error) is WouldBlock
    assert isinstance(error.__cause__, zmq.Again)
    for _ in range(sent):  # exactly the messages counted, each whole
        assert server.router.poll(5000) == zmq.POLLIN
        assert server.router.recv_multipart() == [b"client-1", *big]
    assert sock.wait_writable(5.0)
    taken, error = sock.send_each([[b"a"], [], [b"b"]])
    assert (taken, type(error), str(error)) == (
        1,
        UnexpectedSendError,
        "a message to peer b'server-1' needs at least one frame",
    )
    assert server.router.poll(5000) == zmq.POLLIN
    assert server.router.recv_multipart() == [b"client-1", b"a"]


def test_send_each_on_a_closed_socket_sends_nothing_and_returns_what_send_frames_raises(
    ctx: Context, server: Server
) -> None:
    sock = connect(ctx, server)
    assert sock.wait_writable(5.0)
    sock.close()
    taken, error = sock.send_each([FRAMES, FRAMES])
    assert (taken, type(error)) == (0, SocketClosedError)
    with pytest.raises(SocketClosedError):
        sock.send_frames(FRAMES)


def test_send_each_returns_a_zmq_failure_translated_as_send_frames_raises_it(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)
    assert sock.wait_writable(5.0)
    sock._sock.close(linger=0)  # gone underneath, as when zmq fails (ENOTSOCK)

    taken, error = sock.send_each([FRAMES])
    assert (taken, type(error)) == (0, SocketClosedError)
    assert isinstance(error, SocketClosedError) and error.errno == errno.ENOTSOCK
    assert isinstance(error.__cause__, zmq.ZMQError)


# -- (b) handshakes that fail ------------------------------------------------------


def test_a_wrong_server_key_never_becomes_writable_and_fails_every_reconnect(
    ctx: Context,
    server: Server,
    closing: list[CurveDealerSocket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p2p0mq_actors.transport")
    sock = connect(ctx, server, server_key=generate_keypair().public)
    closing.append(sock)

    started = time.monotonic()
    assert sock.wait_writable(0.5) is False
    assert time.monotonic() - started >= 0.45
    with pytest.raises(WouldBlock):
        sock.send_frames(FRAMES)
    assert server.router.poll(200) == 0

    # libzmq 4.3.5: the server drops the connection it cannot decrypt, the
    # client sees a handshake failure without detail, and reconnects every
    # 100-200 ms, failing the same way each time.
    events = sock.events()
    cycle = [CONNECTED, FAILED, DISCONNECTED]
    assert len(events) >= 2 * len(cycle)
    assert events == (cycle * len(events))[: len(events)]
    failures = [r.getMessage() for r in caplog.records if "handshake" in r.getMessage()]
    assert failures
    assert all("failed: HANDSHAKE_FAILED_NO_DETAIL" in text for text in failures)


def test_a_client_key_refused_by_zap_fails_once_and_is_never_retried(
    ctx: Context,
    server: Server,
    closing: list[CurveDealerSocket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p2p0mq_actors.transport")
    sock = connect(ctx, server, keys=server.stranger_keys)
    closing.append(sock)

    assert sock.wait_writable(0.5) is False
    assert server.router.poll(100) == 0
    assert sock.events() == [CONNECTED, FAILED, DISCONNECTED]
    assert [r.getMessage() for r in caplog.records if "handshake" in r.getMessage()] == [
        f"CURVE handshake with peer b'server-1' at {server.endpoint} failed: "
        "HANDSHAKE_FAILED_AUTH (value 400)"
    ]

    # libzmq does not reconnect after a ZAP refusal, even once the key is admitted ...
    server.admit_stranger()
    assert sock.wait_writable(0.5) is False
    assert sock.events() == []

    # ... only a new socket tries again.
    fresh = connect(ctx, server, keys=server.stranger_keys)
    closing.append(fresh)
    assert fresh.wait_writable(5.0) is True


def test_nobody_listening_reports_no_event_and_never_becomes_writable(
    ctx: Context, tmp_path: Path, closing: list[CurveDealerSocket]
) -> None:
    # ipc, not a closed tcp port: libzmq's tcp retries may self-connect to a
    # free ephemeral port (TCP simultaneous open) and report a handshake.
    endpoint = f"ipc://{tmp_path / 'nobody'}"
    factory = CurveDealerFactory(ctx, b"client-1", generate_keypair())
    sock = factory.connect(PeerAddress(b"server-1", endpoint, generate_keypair().public))
    closing.append(sock)

    assert sock.wait_writable(0.3) is False
    assert sock.events() == []


# -- (c) configuration errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("nonsense", "zmq refused the endpoint: Invalid argument (errno "),
        ("tcp://127.0.0.1", "zmq refused the endpoint: Invalid argument (errno "),
        ("foo://bar", "zmq refused the endpoint: Protocol not supported (errno "),
        # refused before zmq, which would take them bent:
        ("tcp://127.0.0.1:99999", "a TCP port is from 1 to 65535"),
        ("tcp://127.0.0.1:0", "a TCP port is from 1 to 65535"),
        ("tcp://127.0.0.1:5555\x00junk", "an endpoint has no NUL character"),
    ],
)
def test_a_bad_endpoint_is_a_configuration_error_and_leaks_no_socket(
    ctx: Context, endpoint: str, reason: str
) -> None:
    factory = CurveDealerFactory(ctx, b"client-1", generate_keypair())

    with pytest.raises(ConfigurationError) as info:
        factory.connect(PeerAddress(b"server-1", endpoint, generate_keypair().public))

    assert str(info.value).startswith(
        f"cannot connect to peer b'server-1' at {endpoint!r}: {reason}"
    )
    by_zmq = isinstance(info.value.__cause__, zmq.ZMQError)
    assert by_zmq is reason.startswith("zmq refused")
    assert terminates(ctx, within=2.0)  # the traceback is alive: nothing kept a socket open


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (b"short", "a CURVE public key must be 40 bytes of Z85, got 5 bytes"),
        (b"\x01" * 32, "a CURVE public key must be 40 bytes of Z85, got 32 bytes"),
        (b"#" * 40, "a CURVE public key must be valid Z85 text; these 40 bytes are not"),
    ],
)
def test_a_bad_peer_key_is_a_configuration_error_and_leaks_no_socket(
    ctx: Context, key: bytes, problem: str
) -> None:
    factory = CurveDealerFactory(ctx, b"client-1", generate_keypair())

    with pytest.raises(ConfigurationError) as info:
        factory.connect(PeerAddress(b"server-1", "tcp://127.0.0.1:5555", key))

    assert str(info.value) == (
        f"cannot connect to peer b'server-1' at 'tcp://127.0.0.1:5555': {problem}"
    )
    assert terminates(ctx, within=2.0)


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (b"", "identity must be 1..255 bytes, got b''"),
        (b"x" * 256, f"identity must be 1..255 bytes, got {b'x' * 256!r}"),
        ("client", "identity must be 1..255 bytes, got 'client'"),
        (b"\x00abc", "identity b'\\x00abc' must not start with a zero byte (zmq reserves it)"),
    ],
)
def test_a_bad_identity_is_a_configuration_error(
    ctx: Context, identity: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        CurveDealerFactory(ctx, identity, generate_keypair())

    assert str(info.value) == message


@pytest.mark.parametrize("sndhwm", [-1, 1.5, True, 2**31])
def test_a_bad_high_water_mark_is_a_configuration_error(ctx: Context, sndhwm: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        CurveDealerFactory(ctx, b"client-1", generate_keypair(), sndhwm=sndhwm)

    assert (
        str(info.value) == f"sndhwm must be an int from 0 (no limit) to 2**31 - 1, got {sndhwm!r}"
    )


def test_the_factorys_high_water_mark_reaches_each_socket(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    default = CurveDealerFactory(ctx, b"client-1", server.client_keys)
    low = CurveDealerFactory(ctx, b"client-2", server.client_keys, sndhwm=7)
    assert (default.sndhwm, low.sndhwm) == (SEND_HWM, 7) == (10_000, 7)
    for factory in (default, low):
        sock = factory.connect(PeerAddress(b"server-1", server.endpoint, server.keys.public))
        closing.append(sock)
        assert sock._sock.getsockopt(zmq.SNDHWM) == factory.sndhwm


@pytest.mark.parametrize("good", [1, 16, 2**31 - 1])
def test_a_nodes_send_hwm_is_a_positive_c_int(good: int) -> None:
    assert check_send_hwm(good) == good


@pytest.mark.parametrize("bad", [0, -1, 2**31, True, 1.5, "16", None])
def test_a_nodes_send_hwm_of_no_limit_or_no_int_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"send_hwm must be an int from 1 to 2\*\*31 - 1"):
        check_send_hwm(bad)


def test_a_mismatched_key_pair_is_refused_by_the_factory(ctx: Context) -> None:
    mine, other = generate_keypair(), generate_keypair()

    with pytest.raises(ConfigurationError, match="the key pair does not match"):
        CurveDealerFactory(ctx, b"client-1", KeyPair(public=mine.public, secret=other.secret))


def test_the_factory_repr_shows_its_settings_but_not_the_secret(ctx: Context) -> None:
    keys = generate_keypair()

    factory = CurveDealerFactory(ctx, b"client-1", keys, sndhwm=5, monitor=False)

    assert repr(factory) == (
        f"<CurveDealerFactory identity=b'client-1' public_key={keys.public!r} "
        "sndhwm=5 monitor=False>"
    )


def test_running_out_of_context_sockets_says_so_and_leaks_nothing(ctx: Context) -> None:
    ctx.MAX_SOCKETS = 6  # a monitored peer costs 3 sockets: room for 2
    factory = CurveDealerFactory(ctx, b"client-1", generate_keypair())
    peers = [
        PeerAddress(b"p%d" % i, "tcp://127.0.0.1:1", generate_keypair().public) for i in range(3)
    ]
    sockets = [factory.connect(peer) for peer in peers[:2]]

    try:
        with pytest.raises(TransportError) as info:
            factory.connect(peers[2])
    finally:
        for sock in sockets:
            sock.close()

    assert str(info.value) == (
        f"zmq error with peer b'p2': Too many open files (errno {errno.EMFILE}); "
        "a zmq context holds at most ctx.MAX_SOCKETS sockets (1,023 by default) and each "
        "monitored peer uses 3: raise ctx.MAX_SOCKETS and RLIMIT_NOFILE, or connect to "
        "fewer peers"
    )
    assert terminates(ctx, within=2.0)


def test_connecting_on_a_terminated_context_is_a_socket_closed_error(ctx: Context) -> None:
    factory = CurveDealerFactory(ctx, b"client-1", generate_keypair())
    ctx.term()

    with pytest.raises(SocketClosedError) as info:
        factory.connect(PeerAddress(b"server-1", "tcp://127.0.0.1:1", generate_keypair().public))

    assert (info.value.errno, info.value.retryable) == (zmq.ETERM, False)


# -- (d) closing -------------------------------------------------------------------


def test_close_is_idempotent_and_the_context_then_terminates_at_once(
    ctx: Context, server: Server
) -> None:
    sock = connect(ctx, server)
    assert sock.wait_writable(5.0)
    for _ in range(1000):  # leave messages queued: linger 0 must drop them
        try:
            sock.send_frames(FRAMES)
        except WouldBlock:
            break

    sock.close()
    sock.close()

    assert sock.closed
    server.router.close(linger=0)
    server.auth.stop()
    started = time.monotonic()
    assert terminates(ctx, within=2.0)
    assert time.monotonic() - started < 1.0


def test_a_closed_socket_refuses_sends_and_reports_nothing(ctx: Context, server: Server) -> None:
    sock = connect(ctx, server)
    assert sock.wait_writable(5.0)
    events_until(sock, lambda seen: SUCCEEDED in seen)

    sock.close()

    with pytest.raises(SocketClosedError) as info:
        sock.send_frames(FRAMES)
    assert (info.value.retryable, info.value.reason) == (False, "stopped")
    assert sock.wait_writable(1.0) is False
    assert sock.events() == []
    assert repr(sock) == (
        f"<CurveDealerSocket b'server-1' {server.endpoint} closed last_event=handshake-succeeded>"
    )


def test_the_repr_shows_peer_endpoint_and_state(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    closing.append(sock)

    assert repr(sock) == f"<CurveDealerSocket b'server-1' {server.endpoint} open last_event=none>"


def test_close_is_safe_after_the_context_was_destroyed(ctx: Context, server: Server) -> None:
    sock = connect(ctx, server)
    server.auth.stop()

    ctx.destroy(linger=0)

    sock.close()
    sock.close()
    assert sock.closed


def test_close_lets_a_context_termination_already_waiting_finish(
    ctx: Context, server: Server
) -> None:
    sock = connect(ctx, server)
    assert sock.wait_writable(5.0)
    server.router.close(linger=0)
    server.auth.stop()
    terminating = threading.Thread(target=ctx.term, name="ctx-term")
    terminating.start()
    try:
        with pytest.raises(SocketClosedError):  # the terminating context refuses sends
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                with contextlib.suppress(WouldBlock):
                    sock.send_frames(FRAMES)
    finally:
        sock.close()
        terminating.join(2.0)
    assert not terminating.is_alive()


def test_without_a_monitor_events_are_always_empty(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    factory = CurveDealerFactory(ctx, b"client-1", server.client_keys, monitor=False)
    sock = factory.connect(PeerAddress(b"server-1", server.endpoint, server.keys.public))
    closing.append(sock)

    assert sock.wait_writable(5.0) is True
    sock.send_frames(FRAMES)
    assert server.router.poll(5000) == zmq.POLLIN
    assert sock.events() == []


def test_a_closed_socket_s_probe_raises_as_its_send_would(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    sock = connect(ctx, server)
    sock.close()
    with pytest.raises(SocketClosedError):
        sock.writable()


# -- what a peer may send back ------------------------------------------------------


def test_a_frame_sent_back_longer_than_the_client_limit_drops_the_connection(
    ctx: Context, server: Server, closing: list[CurveDealerSocket]
) -> None:
    # Our connecting sockets never read: a peer's frame may be at most
    # CLIENT_MAX_FRAME long, the limit checked on the frame as it came
    # encrypted off the wire (CURVE_OVERHEAD more), to the byte.
    sock = connect(ctx, server)
    closing.append(sock)
    assert sock.wait_writable(5.0)
    sock.send_frames([b"hi"])
    assert server.router.poll(5000) == zmq.POLLIN
    routing_id = server.router.recv_multipart()[0]
    server.router.send_multipart([routing_id, b"x" * CLIENT_MAX_FRAME])
    assert sock._sock.poll(5000) == zmq.POLLIN
    assert len(sock._sock.recv()) == CLIENT_MAX_FRAME
    assert DISCONNECTED not in sock.events()
    server.router.send_multipart([routing_id, b"x" * (CLIENT_MAX_FRAME + 1)])
    seen = events_until(sock, lambda seen: DISCONNECTED in seen)
    assert DISCONNECTED in seen
    assert sock._sock.poll(0) == 0  # never read
