"""CurveRouter and AllowedKeys on their own, with real sockets in this thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import zmq

from p2p0mq_actors.core.errors import ConfigurationError, TransportError
from p2p0mq_actors.core.ports import KeyPair
from p2p0mq_actors.transport.context import end_context, new_context
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import (
    HANDSHAKE_MS,
    MAX_FRAMES,
    RECEIVE_HWM,
    AllowedKeys,
    CurveRouter,
    describe_handshake_failure,
)

ALICE = generate_keypair()
SERVER = generate_keypair()


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx = new_context()
    yield ctx
    assert end_context(ctx, timeout=5)


@pytest.fixture
def router(context: zmq.Context[Any]) -> Iterator[CurveRouter]:
    r = CurveRouter(context, SERVER, AllowedKeys([ALICE.public]))
    yield r
    r.close()


def test_allowed_keys_admit_added_keys_and_count_refusals() -> None:
    allowed = AllowedKeys([ALICE.public])
    carol = generate_keypair().public
    assert allowed.callback("*", ALICE.public) is True
    assert allowed.callback("*", carol) is False
    allowed.add(carol)
    assert allowed.callback("*", carol) is True
    allowed.discard(carol)
    allowed.discard(carol)  # no error for an unknown key
    assert allowed.callback("*", carol) is False
    assert (len(allowed), allowed.refused, repr(allowed)) == (
        1,
        2,
        "<AllowedKeys keys=1 refused=2>",
    )


def test_allowed_keys_refuse_what_is_not_a_z85_public_key() -> None:
    with pytest.raises(ConfigurationError, match="40 bytes of Z85"):
        AllowedKeys([b"short"])
    with pytest.raises(ConfigurationError, match="40 bytes of Z85"):
        AllowedKeys().add(b"x" * 39)


def test_bind_returns_the_real_endpoint_and_a_taken_port_is_a_configuration_error(
    router: CurveRouter, context: zmq.Context[Any]
) -> None:
    endpoint = router.bind("tcp://127.0.0.1:*")
    assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")
    other_context = new_context()
    other = CurveRouter(other_context, generate_keypair(), AllowedKeys())
    try:
        taken = r"Address already in use \(errno \d+\) \(the port is taken"
        with pytest.raises(ConfigurationError, match=taken):
            other.bind(endpoint)
        assert other.bind("tcp://127.0.0.1:*") != endpoint  # still usable after a failed bind
    finally:
        other.close()
        end_context(other_context)


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ("tcp://127.0.0.1:99999", "a TCP port is from 1 to 65535 \\(or \\* for any free port\\)"),
        ("tcp://127.0.0.1:*\x00x", "no NUL character"),
        ("tcp://10.255.255.1:*", "Cannot assign requested address \\(errno \\d+\\)$"),
        ("bogus://x", "Protocol not supported \\(errno \\d+\\)$"),
    ],
)
def test_an_endpoint_zmq_would_bend_or_refuse_is_named_with_its_own_reason(
    router: CurveRouter, endpoint: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        router.bind(endpoint)
    assert "port is taken" not in str(info.value)
    assert router.endpoint == ""  # nothing was bound


def test_a_router_whose_monitor_cannot_be_made_raises_the_librarys_error() -> None:
    context = new_context()
    context.MAX_SOCKETS = 4  # ZAP's three, the DEALER; not its monitor
    try:
        with pytest.raises(TransportError, match="errno"):
            CurveRouter(context, generate_keypair(), AllowedKeys())
    finally:
        end_context(context)


def test_a_client_that_never_finishes_its_handshake_is_closed_in_seconds(
    router: CurveRouter,
) -> None:
    port = int(router.bind("tcp://127.0.0.1:*").rpartition(":")[2])
    assert router._socket.getsockopt(zmq.HANDSHAKE_IVL) == HANDSHAKE_MS
    closed = False
    # A recv that waits past the timeout raises: the connection must be closed by then.
    with socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_MS / 1000 + 10) as raw:
        for _ in range(100):  # zmq's greeting comes first, then the close
            if not raw.recv(4096):
                closed = True
                break
    assert closed


def test_a_key_has_one_owner() -> None:
    alice, bob = b"alice", b"bob"
    key = generate_keypair().public
    allowed = AllowedKeys(owners={alice: key})
    with pytest.raises(ConfigurationError, match="is peer b'alice''s already"):
        allowed.add(key, bob)
    assert allowed.owner(key) == alice
    allowed.add(key, alice)  # again, for its owner: nothing changes
    allowed.add(key)  # and with no owner named
    assert allowed.owner(key) == alice and allowed.keys_of(alice) == [key]
    with pytest.raises(ConfigurationError, match="belongs to one peer"):
        AllowedKeys(owners={alice: key, bob: key})


def test_a_second_router_on_one_context_is_refused(
    router: CurveRouter, context: zmq.Context[Any]
) -> None:
    with pytest.raises(ConfigurationError, match="already has a ZAP authenticator"):
        CurveRouter(context, generate_keypair(), AllowedKeys())


def test_receive_hwm_is_the_sockets_and_libzmqs_default_unless_given(
    router: CurveRouter,
) -> None:
    assert router.receive_hwm == RECEIVE_HWM == 1000
    ctx = new_context()  # (one ZAP authenticator per context)
    low = CurveRouter(ctx, SERVER, AllowedKeys([ALICE.public]), receive_hwm=7)
    try:
        assert low.receive_hwm == 7
    finally:
        low.close()
        assert end_context(ctx, timeout=5)


@pytest.mark.parametrize("bad", [0, -1, 2**31, True, 1.5, "10", None])
def test_a_receive_hwm_that_is_not_a_positive_c_int_is_refused(
    context: zmq.Context[Any], bad: object
) -> None:
    with pytest.raises(ConfigurationError, match="receive_hwm"):
        CurveRouter(context, SERVER, AllowedKeys(), receive_hwm=bad)  # type: ignore[arg-type]


def test_a_receive_hwm_of_one_is_refused_and_the_least_taken_receives(
    context: zmq.Context[Any],
) -> None:
    """With ZAP, libzmq delivered nothing at all from a connection whose
    high-water mark was 1, while the peer's sends succeeded."""
    with pytest.raises(ConfigurationError, match="at least 2"):
        CurveRouter(context, SERVER, AllowedKeys(), receive_hwm=1)
    router = CurveRouter(context, SERVER, AllowedKeys([ALICE.public]), receive_hwm=2)
    try:
        got = _alice_sends(router, 5, per_read=5)
        assert [frames[-1] for _, frames in got] == [bytes([n]) for n in range(5)]
    finally:
        router.close()


def _alice_sends(
    router: CurveRouter, count: int, *, per_read: int
) -> list[tuple[str | None, Any]]:
    """What ``router`` (bound here) read of ``count`` messages ``[b"x", n]``
    from Alice, reading ``per_read`` at most a time, for up to 10 s."""
    endpoint = router.bind("tcp://127.0.0.1:*")
    ctx = zmq.Context()
    try:
        client = _client(ctx, endpoint, ALICE, b"alice")
        for n in range(count):
            client.send_multipart([b"x", bytes([n])])
        got: list[tuple[str | None, Any]] = []
        for _ in range(100):  # each poll waits up to 0.1 s
            if len(got) >= count:
                break
            if router.poll(0.1):
                got += router.recv_batch(per_read)
        return got
    finally:
        ctx.destroy(linger=0)


def _client(
    ctx: zmq.Context[Any], endpoint: str, keys: KeyPair, identity: bytes | None = None
) -> zmq.Socket[Any]:
    """A CURVE DEALER of ``ctx`` connected to ``endpoint`` with ``keys``."""
    client: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    client.linger = 0
    if identity is not None:
        client.identity = identity
    client.curve_publickey, client.curve_secretkey = keys.public, keys.secret
    client.curve_serverkey = SERVER.public
    client.connect(endpoint)
    return client


def test_poll_waits_its_timeout_and_recv_batch_never_blocks(router: CurveRouter) -> None:
    router.bind("tcp://127.0.0.1:*")
    start = time.monotonic()
    assert router.poll(0.05) is False
    assert time.monotonic() - start >= 0.045
    assert router.recv_batch(10) == []


def test_recv_batch_gives_whole_messages_as_bytes_with_the_user_id(
    router: CurveRouter,
) -> None:
    batch = _alice_sends(router, 3, per_read=2)
    assert batch == [(ALICE.public.decode(), [b"alice", b"x", bytes([n])]) for n in range(3)]
    counts = router.counters()
    assert (counts["accepted"], counts["handshake_succeeded"]) == (1, 1)


def _read_six(*frames: bytes) -> object:
    """A reader of six-frame messages for ``recv_batch``: marks what it read,
    leaves some to the frames, and raises for others."""
    if frames[1].endswith(b"-0") and frames[1][1:2] == b"1":
        return None  # message 1x: left to the frames
    if frames[1][1:2] == b"2":
        raise ValueError("a reader's bug")  # message 2x: the frames, all the same
    return ("read", frames)


@pytest.mark.parametrize(
    ("reader", "owned"), [(None, False), (_read_six, True), (_read_six, False)]
)
def test_every_message_is_read_whole_and_alone_whatever_its_frame_count(
    context: zmq.Context[Any], reader: Any, owned: bool
) -> None:
    """The reader follows each frame's more flag: a message of an unusual
    length (here 2 to 9 frames, from an admitted key) ends where its
    sender ended it, and never takes in frames of the message after it,
    another peer's or its own. A reader that checked the flag only at a
    few frames (cheaper: a copied frame costs less than a ``zmq.Frame``)
    would join a short message to the next one."""
    mallory = generate_keypair()
    keys = [ALICE.public, mallory.public]
    owners = {b"alice": ALICE.public, b"mallory": mallory.public} if owned else None
    router = CurveRouter(context, SERVER, AllowedKeys(keys, owners))
    endpoint = router.bind("tcp://127.0.0.1:*")
    ctx = zmq.Context()
    counts = [3, 1, 5, 2, 8, 4, 6, 7] * 3  # frames after the routing id
    sent: dict[str, list[list[bytes]]] = {ALICE.public.decode(): [], mallory.public.decode(): []}
    try:
        alice = _client(ctx, endpoint, ALICE, b"alice")
        other = _client(ctx, endpoint, mallory, b"mallory")
        for n, count in enumerate(counts):
            honest = [b"a%d-%d" % (n, i) for i in range(6)]  # 0.1.1's six frames
            odd = [b"m%d-%d" % (n, i) for i in range(count)]
            alice.send_multipart(honest)
            other.send_multipart(odd)
            sent[ALICE.public.decode()].append([b"alice", *honest])
            sent[mallory.public.decode()].append([b"mallory", *odd])
        got: dict[str, list[list[bytes]]] = {key: [] for key in sent}
        read: list[list[bytes]] = []
        deadline = time.monotonic() + 10
        while sum(map(len, got.values())) < 2 * len(counts) and time.monotonic() < deadline:
            if router.poll(0.1):
                for user, item in router.recv_batch(256, reader):
                    frames = item
                    if type(item) is tuple:  # what the reader gave for six frames
                        assert item[0] == "read" and len(item[1]) == 7
                        frames = list(item[1])
                        read.append(frames)
                    got[cast(str, user)].append(frames)
        assert got == sent  # each whole, with its own key, in its sender's order
        six = [m for frames in sent.values() for m in frames if len(m) == 7]
        if reader is None or not owned:  # (a key without an owner: its sender checked first)
            assert read == []
        else:  # all those of six frames, but for what the reader left or raised for
            left = (b"1", b"2")  # messages 1x and 2x: see _read_six
            assert sorted(read) == sorted(m for m in six if m[1][1:2] not in left)
            assert 0 < len(read) < len(six)
        assert router.recv_batch(256) == []
    finally:
        ctx.destroy(linger=0)
        router.close()


@pytest.mark.parametrize("count", [MAX_FRAMES + 1, 10_000])
def test_a_message_of_more_frames_than_kept_is_read_to_its_end_and_cut(
    router: CurveRouter, count: int
) -> None:
    """Of a message longer than any valid one, the first ``MAX_FRAMES``
    frames after the sender are kept (what the codec refuses for their
    count); the rest is read, not kept, and the next message comes whole."""
    endpoint = router.bind("tcp://127.0.0.1:*")
    ctx = zmq.Context()
    try:
        client = _client(ctx, endpoint, ALICE, b"alice")
        long = [b"f%d" % n for n in range(count)]
        whole = [b"f%d" % n for n in range(MAX_FRAMES)]
        client.send_multipart(long)
        client.send_multipart(whole)
        batch: list[tuple[str | None, list[bytes]]] = []
        deadline = time.monotonic() + 5
        while len(batch) < 2 and time.monotonic() < deadline:
            if router.poll(0.1):
                batch += router.recv_batch(256)
        user = ALICE.public.decode()
        assert batch == [(user, [b"alice", *whole]), (user, [b"alice", *whole])]
        assert router.recv_batch(256) == []
    finally:
        ctx.destroy(linger=0)


def test_readable_says_whether_a_message_waits_without_waiting(router: CurveRouter) -> None:
    endpoint = router.bind("tcp://127.0.0.1:*")
    assert router.readable() is False
    ctx = zmq.Context()
    try:
        client = _client(ctx, endpoint, ALICE)
        client.send_multipart([b"x", b"1"])
        assert router.poll(5.0)
        assert router.readable() is True
        assert len(router.recv_batch(1)) == 1
        assert router.readable() is False
    finally:
        ctx.destroy(linger=0)


def test_close_is_idempotent_stops_zap_and_refuses_further_use(
    context: zmq.Context[Any],
) -> None:
    before = set(threading.enumerate())
    router = CurveRouter(context, generate_keypair(), AllowedKeys())
    assert len(set(threading.enumerate()) - before) == 1  # the ZAP authenticator
    router.close()
    router.close()
    assert router.closed
    assert set(threading.enumerate()) - before == set()
    assert repr(router) == (
        "<CurveRouter unbound closed accepted=0 handshake_failed=0 zap_refused=0>"
    )
    with pytest.raises(RuntimeError, match="is closed"):
        router.poll(0.0)


@pytest.mark.parametrize(
    ("event", "value", "text"),
    [
        (
            zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            400,
            "ZAP refused the client's key (status 400): not an allowed key",
        ),
        (
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC,
            "handshake protocol error ZMTP_CRYPTOGRAPHIC: the client may be using a wrong "
            "server key",
        ),
        (
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH,
            "handshake protocol error ZMTP_MECHANISM_MISMATCH: the client is not using CURVE "
            "(plaintext?)",
        ),
        (
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            0x7,
            "handshake protocol error 0x00000007: the client broke the ZMTP/CURVE protocol",
        ),
        (
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            32,
            "handshake failed (Broken pipe): the client went away during the handshake",
        ),
    ],
)
def test_each_handshake_failure_is_described_with_its_likely_cause(
    event: int, value: int, text: str
) -> None:
    assert describe_handshake_failure(int(event), int(value)) == text
