"""ZAP for a CurveRouter's context: who answers it, and what happens when it
cannot (its context ended by someone else, a credentials provider that
fails, no ZAP thread at all). Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.transport import zap as zap_module
from p2p0mq_actors.transport.context import end_context, new_context
from p2p0mq_actors.transport.errors import SocketClosedError
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import AllowedKeys, CurveRouter
from p2p0mq_actors.transport.zap import MAX_FAILURES, ZAP_DOMAIN, ZapThread

SERVER = generate_keypair()
ALICE = generate_keypair()
BOB = generate_keypair()
WAIT = 5.0
_HANDSHAKE_ENDS: dict[int, str] = {
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): "succeeded",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "failed_auth",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "failed_no_detail",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "failed_protocol",
}


@pytest.fixture
def client_context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _client(ctx: zmq.Context[Any], endpoint: str, keys: KeyPair) -> zmq.Socket[Any]:
    client: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    client.linger = 0
    client.curve_publickey, client.curve_secretkey = keys.public, keys.secret
    client.curve_serverkey = SERVER.public
    client.connect(endpoint)
    return client


def _handshake(ctx: zmq.Context[Any], endpoint: str, keys: KeyPair) -> tuple[str, int]:
    """How a client of ``keys`` ends its first handshake with ``endpoint``,
    as the client's monitor tells it (and the ZAP status, if refused)."""
    client = _client(ctx, endpoint, keys)
    monitor = client.get_monitor_socket()
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if not monitor.poll(100):
                continue
            event = recv_monitor_message(monitor)
            name = _HANDSHAKE_ENDS.get(int(event["event"]))
            if name is not None:
                return name, int(event["value"])
        raise AssertionError(f"no handshake ended within {WAIT} s")
    finally:
        client.disable_monitor()
        monitor.close(linger=0)
        client.close(linger=0)


def _received(router: CurveRouter, count: int) -> list[tuple[str | None, Any]]:
    got: list[tuple[str | None, Any]] = []
    deadline = time.monotonic() + WAIT
    while len(got) < count and time.monotonic() < deadline:
        if router.poll(0.1):
            got += router.recv_batch(16)
    return got


def test_zap_admits_allowed_keys_only_and_names_them_as_user_id(
    client_context: zmq.Context[Any],
) -> None:
    ctx = new_context()
    router = CurveRouter(ctx, SERVER, AllowedKeys([ALICE.public]))
    try:
        endpoint = router.bind("tcp://127.0.0.1:*")
        assert _handshake(client_context, endpoint, BOB) == ("failed_auth", 400)
        alice = _client(client_context, endpoint, ALICE)
        alice.send_multipart([b"a", b"hi"])
        assert _received(router, 1) == [(ALICE.public.decode(), [b"", b"a", b"hi"])]
    finally:
        router.close()
        assert end_context(ctx, timeout=WAIT)


def test_a_context_ended_by_another_thread_ends_zap_and_lets_the_context_end() -> None:
    """pyzmq's ThreadAuthenticator waits in an asyncio loop that never sees
    its context end: ``Context.term`` then waited for its sockets forever."""
    before = set(threading.enumerate())
    ctx = new_context()
    router = CurveRouter(ctx, SERVER, AllowedKeys([ALICE.public]))
    router.bind("tcp://127.0.0.1:*")
    ender = threading.Thread(target=ctx.term, name="test-ender", daemon=True)
    ender.start()
    with pytest.raises(SocketClosedError, match="the listening socket is closed"):
        for _ in range(int(WAIT / 0.05)):
            router.poll(0.05)
    router.close()  # what the Receiver does: no error, nothing left waiting
    ender.join(WAIT)
    assert not ender.is_alive(), "Context.term still waits for a socket"
    assert set(threading.enumerate()) - before == set()


def test_stop_is_idempotent_and_safe_after_the_context_ended() -> None:
    ctx = new_context()
    zap = ZapThread(ctx, AllowedKeys())
    zap.start()
    assert zap.is_alive()
    ender = threading.Thread(target=ctx.term, daemon=True)
    ender.start()
    assert zap.join(WAIT), "the ZAP thread did not see its context end"
    zap.stop()  # closes the stop pipe, the last socket: the context ends
    ender.join(WAIT)
    assert not ender.is_alive(), "Context.term still waits for a socket"
    zap.stop()


def test_a_second_zap_thread_on_one_context_is_refused_and_leaves_nothing() -> None:
    ctx = new_context()
    first = ZapThread(ctx, AllowedKeys())
    first.start()
    before = set(threading.enumerate())
    second = ZapThread(ctx, AllowedKeys())
    try:
        with pytest.raises(zmq.ZMQError) as caught:
            second.start()
        assert caught.value.errno == zmq.EADDRINUSE
        assert not second.is_alive()
        assert set(threading.enumerate()) - before == set()
    finally:
        second.stop()
        first.stop()
        assert end_context(ctx, timeout=WAIT)


class _Provider:
    """Admits ALICE; for BOB fails in the way named."""

    def __init__(self, bob: str) -> None:
        self.bob = bob

    def callback(self, domain: str, key: bytes) -> object:
        if key != BOB.public:
            return key == ALICE.public
        if self.bob == "raise":
            raise RuntimeError("a provider's bug")
        if self.bob == "zmq-error":
            raise zmq.ZMQError(zmq.EINVAL)  # not the ZAP socket's, all the same
        if self.bob == "context-terminated":
            raise zmq.ContextTerminated  # not its context's
        if self.bob == "system-exit":
            raise SystemExit(3)
        if self.bob == "close-raises":
            return _cannot_close()
        return _later()


async def _later() -> bool:
    await asyncio.sleep(0)  # (an event loop's turn: this thread runs none)
    return True


async def _cannot_close() -> bool:
    try:
        await asyncio.sleep(0)
    finally:
        raise RuntimeError("a provider's cleanup bug")


@contextlib.contextmanager
def _served(provider: Any) -> Iterator[tuple[ZapThread, str, zmq.Context[Any]]]:
    """A started ZapThread for ``provider`` and the endpoint of a CURVE
    server that names its domain, on a context of their own (ended after)."""
    ctx = new_context()
    zap = ZapThread(ctx, provider)
    server: zmq.Socket[Any] | None = None
    try:
        zap.start()
        server = ctx.socket(zmq.DEALER)
        server.linger = 0
        server.curve_server = True
        server.curve_secretkey, server.curve_publickey = SERVER.secret, SERVER.public
        server.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        server.bind("tcp://127.0.0.1:*")
        yield zap, server.getsockopt_string(zmq.LAST_ENDPOINT), ctx
    finally:
        if server is not None:
            server.close(linger=0)
        zap.stop()
        assert end_context(ctx, timeout=WAIT)  # nothing of the ZAP thread's left open


@pytest.mark.parametrize(
    "bob",
    ["raise", "zmq-error", "context-terminated", "system-exit", "awaitable", "close-raises"],
)
def test_a_provider_that_fails_or_answers_later_refuses_that_client_only(
    client_context: zmq.Context[Any], bob: str
) -> None:
    with _served(_Provider(bob)) as (zap, endpoint, _):
        assert _handshake(client_context, endpoint, BOB) == ("failed_auth", 500)
        assert zap.is_alive()
        assert _handshake(client_context, endpoint, ALICE) == ("succeeded", 0)


def test_a_request_too_short_to_answer_is_answered_all_the_same(
    client_context: zmq.Context[Any],
) -> None:
    """A REP socket takes no request before it replied to the last one:
    pyzmq does not answer a request of fewer than two frames."""
    with _served(_Provider("raise")) as (_, endpoint, ctx):
        asker: zmq.Socket[Any] = ctx.socket(zmq.REQ)
        asker.linger = 0
        try:
            asker.connect("inproc://zeromq.zap.01")
            asker.send(b"1.0")
            assert asker.poll(WAIT * 1000), "no reply"
            assert asker.recv_multipart()[2] == b"500"
        finally:
            asker.close(linger=0)
        assert _handshake(client_context, endpoint, ALICE) == ("succeeded", 0)


class _Stopping:
    """A provider that stops its own ZapThread, and refuses."""

    zap: ZapThread | None = None

    def callback(self, domain: str, key: bytes) -> bool:
        assert self.zap is not None
        self.zap.stop()
        return False


def test_a_provider_may_stop_its_own_zap_thread(client_context: zmq.Context[Any]) -> None:
    provider = _Stopping()
    with _served(provider) as (zap, endpoint, _):
        provider.zap = zap
        assert _handshake(client_context, endpoint, ALICE) == ("failed_auth", 400)
        assert zap.join(WAIT)


def test_it_starts_once_and_stops_from_any_thread_any_number_of_times() -> None:
    ctx = new_context()
    zap = ZapThread(ctx, AllowedKeys())
    zap.start()
    try:
        with pytest.raises(RuntimeError, match="started already"):
            zap.start()
        assert zap.is_alive()
        stoppers = [threading.Thread(target=zap.stop) for _ in range(4)]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(WAIT)
        assert not any(thread.is_alive() for thread in stoppers)
        assert not zap.is_alive()
    finally:
        zap.stop()
        assert end_context(ctx, timeout=WAIT)


def test_with_no_zap_thread_answering_no_client_gets_in(
    client_context: zmq.Context[Any],
) -> None:
    """libzmq admits every CURVE client when no ZAP handler is bound, unless
    the socket enforces its ZAP domain: a listening socket does, so a ZAP
    thread gone (or never there) shuts clients out rather than in. (The
    client is often not told: it waits out its handshake interval.)"""
    ctx = new_context()
    router = CurveRouter(ctx, SERVER, AllowedKeys([ALICE.public]))
    try:
        endpoint = router.bind("tcp://127.0.0.1:*")
        router._auth.stop()  # as if the ZAP thread had gone
        alice = _client(client_context, endpoint, ALICE)
        alice.send(b"hi")
        deadline = time.monotonic() + WAIT
        counts = router.counters()
        while counts["handshake_failed_no_detail"] == 0 and time.monotonic() < deadline:
            assert not router.poll(0.05), "a message came in"
            counts = router.counters()
        assert counts["handshake_failed_no_detail"] >= 1
        assert counts["handshake_succeeded"] == 0
        assert router.recv_batch(16) == []
    finally:
        router.close()
        assert end_context(ctx, timeout=WAIT)


class _BrokenPoller:
    """A poller whose every poll fails (as on a socket closed under it)."""

    polls = 0

    def register(self, *_args: object) -> None:
        pass

    def poll(self, *_args: object) -> list[Any]:
        _BrokenPoller.polls += 1
        raise zmq.ZMQError(zmq.ENOTSOCK)


def test_a_poll_that_keeps_failing_ends_the_thread_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(zap_module.zmq, "Poller", _BrokenPoller)
    ctx = new_context()
    zap = ZapThread(ctx, AllowedKeys())
    zap.start()
    try:
        assert zap.join(WAIT)
        assert _BrokenPoller.polls == MAX_FAILURES
        assert "it stops answering, and no client gets in" in caplog.text
    finally:
        zap.stop()
        assert end_context(ctx, timeout=WAIT)  # the thread closed its sockets
