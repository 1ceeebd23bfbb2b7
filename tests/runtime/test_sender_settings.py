"""What the send path is given: settings, and Concerns to start with its keywords."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from p2p0mq_actors.concerns.base import Concern
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
