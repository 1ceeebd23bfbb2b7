"""What the send path is given: settings, and Concerns to start with its keywords."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pykka
import pytest

from p2p0mq_actors.concerns.base import Concern
from p2p0mq_actors.core.codec import WireShape
from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.runtime.sender import Sender
from p2p0mq_actors.testing import FakeSocketFactory, ManualClock


class Closed(Concern):
    """Forgot ``**kwargs``."""

    command = b"closed"

    def __init__(self, *, name: str) -> None:
        super().__init__()
        self.name = name


class Broken(Concern):
    """Accepts them, and fails for a reason of its own."""

    command = b"broken"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raise TypeError("a bug of its own")


def test_a_concern_whose_init_refuses_the_nodes_keywords_is_told_how_to_fix_it() -> None:
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender:
        with pytest.raises(ConfigurationError, match=r"Closed.__init__ must accept \*\*kwargs"):
            sender.add_concern(Closed, name="x")
        with pytest.raises(TypeError, match="a bug of its own"):
            sender.add_concern(Broken)
        assert b"closed" not in sender.concerns and b"broken" not in sender.concerns


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_rounds", 0),
        ("max_rounds", "3"),
        ("pacing", -1),
        ("unreachable_after", 0),
        ("unreachable_after", float("nan")),
        ("timeout", -1.0),
        ("clock", "x"),
        ("policy", "x"),
        ("shape", "0.2"),
        ("shape", 42),
        ("intake_timeout", float("nan")),
        ("intake_timeout", -1.0),
        ("intake_timeout", "10"),
    ],
)
def test_a_send_path_with_a_wrong_setting_is_a_configuration_error_naming_it(
    option: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Sender(b"me", sockets=FakeSocketFactory(), **{option: value})  # type: ignore[arg-type]


class OwnBug(Concern):
    """Accepts the keywords; its own call refuses one of the same name."""

    command = b"own"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

        def helper(*, name: str) -> None:
            pass

        helper(clock=1)  # type: ignore[call-arg]


def test_a_concerns_own_type_error_naming_a_keyword_is_not_taken_for_a_missing_kwargs() -> None:
    with (
        Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender,
        pytest.raises(TypeError, match="unexpected keyword argument 'clock'"),
    ):
        sender.add_concern(OwnBug)


def test_two_threads_connecting_peers_at_once_start_one_connection_each() -> None:
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender:
        for n in range(20):
            sender.add_peer(f"p{n}".encode(), "tcp://127.0.0.1:1", b"k" * 40)
        threads = [threading.Thread(target=sender.connect_peers) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        started = [r for r in pykka.ActorRegistry.get_by_class_name("PeerConnection")]
        assert len(started) == 20 == len(sender.connections())


def test_a_wire_shape_may_be_named_by_its_value_and_anything_else_is_refused() -> None:
    # A shape that is not a WireShape used to be kept, and sent as 0.1.0
    # (no message id: no reply could ever match its request).
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock(), shape="native") as sender:  # type: ignore[arg-type]
        sender.add_peer(b"a", "tcp://127.0.0.1:1", b"k" * 40)
        sender.add_peer(b"b", "tcp://127.0.0.1:2", b"k" * 40, shape="0.1.1")  # type: ignore[arg-type]
        sender.add_peer(b"c", "tcp://127.0.0.1:3", b"k" * 40, shape=WireShape.V010)
        assert {uuid: shape for uuid, (_, shape) in sender._peers.items()} == {
            b"a": WireShape.NATIVE,
            b"b": WireShape.V011,
            b"c": WireShape.V010,
        }
        for bad in ("0.1", 42, b"native"):
            with pytest.raises(ConfigurationError, match="shape"):
                sender.add_peer(b"d", "tcp://127.0.0.1:4", b"k" * 40, shape=bad)  # type: ignore[arg-type]
        assert b"d" not in sender._peers


@pytest.mark.parametrize("thing", [42, "cmd", None, object()])
def test_a_concern_that_is_neither_a_concern_class_nor_an_actor_ref_is_refused(
    thing: object,
) -> None:
    with (
        Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender,
        pytest.raises(ConfigurationError, match="Concern"),
    ):
        sender.add_concern(thing)


@pytest.mark.parametrize("call", ["remove_peer", "remove_concern"])
@pytest.mark.parametrize("key", [42, "peer", None])
def test_removing_by_something_that_is_not_bytes_is_refused(call: str, key: object) -> None:
    with (
        Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender,
        pytest.raises(ConfigurationError, match="bytes"),
    ):
        getattr(sender, call)(key)


@pytest.mark.parametrize("things", [None, 42])
def test_queueing_what_is_not_messages_is_refused_naming_it(things: object) -> None:
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender:
        for queue in (sender.enqueue_many, sender.enqueue):
            with pytest.raises(ConfigurationError, match="Message"):
                queue(things)  # type: ignore[arg-type]


class StartRaises(Concern):
    command = b"start"

    def on_start(self) -> None:
        raise RuntimeError("a bug of the application's")


def test_a_concern_whose_on_start_raises_is_not_added_and_its_command_stays_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It used to be added dead: its messages dropped, its command taken.
    caplog.set_level(logging.CRITICAL, logger="pykka")
    with Sender(b"me", sockets=FakeSocketFactory(), clock=ManualClock()) as sender:
        with pytest.raises(ConfigurationError, match="StartRaises stopped as it started"):
            sender.add_concern(StartRaises)
        assert b"start" not in sender.concerns


def test_stop_waits_for_a_connection_being_made_and_stops_it_too() -> None:
    """A connection whose start was under way when stop() listed the
    connections used to be registered after, and was left running with its
    socket (and the context waiting for it); the add raised pykka's error."""
    sockets = FakeSocketFactory()
    starting, go_on = threading.Event(), threading.Event()
    connect = sockets.connect

    def slow_connect(peer: Any) -> Any:
        starting.set()
        assert go_on.wait(5)
        return connect(peer)

    sockets.connect = slow_connect  # type: ignore[method-assign]
    sender = Sender(b"me", sockets=sockets, clock=ManualClock())
    sender.add_peer(b"x", "tcp://127.0.0.1:1", b"k" * 40)
    raised: list[BaseException] = []

    def add() -> None:
        try:
            sender.connect_peers()
        except BaseException as exc:
            raised.append(exc)

    class Noted:  # the sender's connect lock, saying when stop() waits for it
        def __init__(self, lock: Any) -> None:
            self.lock, self.stop_waits = lock, threading.Event()

        def __enter__(self) -> None:
            if threading.current_thread() is stopping:
                self.stop_waits.set()
            self.lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    noted = Noted(sender._connect_lock)
    sender._connect_lock = noted  # type: ignore[assignment]
    adding = threading.Thread(target=add)
    stopping = threading.Thread(target=sender.stop)
    adding.start()
    assert starting.wait(5)
    stopping.start()
    for _ in range(500):  # until stop() waits for the connect, or (before) was done
        if noted.stop_waits.wait(0.01) or not stopping.is_alive():
            break
    go_on.set()
    stopping.join(10)
    adding.join(10)
    assert not stopping.is_alive() and not adding.is_alive()
    assert all(isinstance(exc, ConfigurationError) for exc in raised)
    assert [ref for ref in sender.connections().values() if ref.is_alive()] == []
    assert not any(t.name.startswith("PeerConnection") for t in threading.enumerate())
